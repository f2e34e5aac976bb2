"""The model server against a real S3 server (MinIO, hack/s3server.py): it loads and verifies
a version from s3:// and predicts over HTTP; with credentials the store refuses it stays up, not
ready, and says StorageAccessDenied (not MissingArtifact), echoing no secret."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import s3fs

from .conftest import Artifact, Server

pytestmark = pytest.mark.e2e


@pytest.fixture
def s3_model(
    s3: Any, s3_env: dict[str, str], artifacts: dict[str, Artifact]
) -> tuple[str, Artifact]:
    """The logistic-regression artifact uploaded to s3://bucket/<id>/1."""
    art = artifacts["lr"]
    key = f"{s3.bucket}/serve-{uuid.uuid4().hex[:8]}/1"
    s3fs.S3FileSystem().put(art.uri.rstrip("/") + "/", key, recursive=True)
    return f"s3://{key}", art


def test_serves_a_version_from_s3(
    start_server: Callable[..., Server], s3_model: tuple[str, Artifact]
) -> None:
    uri, art = s3_model
    server = start_server("m", uri, art.digest)
    rows = art.X[:3].tolist()
    r = httpx.post(server.url + "/v1/models/m:predict", json={"instances": rows}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == art.estimator.predict(art.X[:3]).tolist()
    ready = httpx.get(server.url + "/v2/models/m").json()
    assert ready["name"] == "m"


def test_refused_credentials_are_storage_access_denied(
    assert_not_ready: Callable[..., None],
    start_server: Callable[..., Server],
    s3_model: tuple[str, Artifact],
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri, art = s3_model
    wrong = "wrong-" + uuid.uuid4().hex
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    server = start_server("m", uri, art.digest, wait_ready=False)
    assert_not_ready(server, "StorageAccessDenied", "the storage refused the credentials")
    body = httpx.get(server.url + "/v2/health/ready").json()
    assert uri in body["message"]
    assert wrong not in server.logs() and s3_env["AWS_SECRET_ACCESS_KEY"] not in server.logs()
    assert wrong not in body["message"]


def test_no_credentials_are_storage_access_denied(
    assert_not_ready: Callable[..., None],
    start_server: Callable[..., Server],
    s3_model: tuple[str, Artifact],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri, art = s3_model
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    server = start_server("m", uri, art.digest, wait_ready=False)
    assert_not_ready(server, "StorageAccessDenied", "no credentials were found")
