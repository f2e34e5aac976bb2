"""Artifacts that must not be served: the server stays up, not ready, and says why."""

from __future__ import annotations

import json
import operator
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from modelfactory_artifacts.metadata import METADATA_FILENAME, MODEL_FILENAME

from .conftest import Artifact, Server, numeric_data, numeric_features, write_artifact
from .hostile import HOSTILE, write_hostile

pytestmark = pytest.mark.e2e


def tampered(art: Artifact, tmp_path: Path) -> str:
    dest = tmp_path / "tampered" / "1"
    shutil.copytree(art.uri, dest)
    data = bytearray((dest / MODEL_FILENAME).read_bytes())
    data[len(data) // 2] ^= 0x01
    (dest / MODEL_FILENAME).write_bytes(bytes(data))
    return str(dest)


def untrusted(tmp_path: Path) -> Artifact:
    X, y = numeric_data(n_features=2)
    pipe = Pipeline([("neg", FunctionTransformer(operator.neg)), ("lr", LogisticRegression())])
    return write_artifact(tmp_path / "untrusted" / "1", pipe, X, y, numeric_features(2), "binary")


@pytest.mark.parametrize("workers", [1, 2])
def test_missing_artifact(
    assert_not_ready: Callable[..., None],
    start_server: Callable[..., Server],
    tmp_path: Path,
    workers: int,
) -> None:
    server = start_server("m", str(tmp_path / "does-not-exist"), wait_ready=False, workers=workers)
    assert_not_ready(server, "MissingArtifact", "no model version directory")


def test_tampered_artifact(
    assert_not_ready: Callable[..., None],
    start_server: Callable[..., Server],
    artifacts: dict[str, Artifact],
    tmp_path: Path,
) -> None:
    art = artifacts["lr"]
    server = start_server("m", tampered(art, tmp_path), art.digest, wait_ready=False)
    assert_not_ready(server, "DigestMismatch", "model.skops has sha256:")


def test_digest_differs_from_the_one_given(
    assert_not_ready: Callable[..., None],
    start_server: Callable[..., Server],
    artifacts: dict[str, Artifact],
) -> None:
    server = start_server("m", artifacts["lr"].uri, artifacts["rf"].digest, wait_ready=False)
    assert_not_ready(server, "DigestMismatch", artifacts["rf"].digest)


def test_untrusted_artifact(
    assert_not_ready: Callable[..., None], start_server: Callable[..., Server], tmp_path: Path
) -> None:
    art = untrusted(tmp_path)
    server = start_server("m", art.uri, art.digest, wait_ready=False)
    assert_not_ready(server, "UntrustedType", "_operator.neg")


@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_hostile_artifact(
    assert_not_ready: Callable[..., None],
    start_server: Callable[..., Server],
    tmp_path: Path,
    label: str,
) -> None:
    art, type_name = write_hostile(tmp_path / label / "1", label)
    server = start_server("m", art.uri, art.digest, wait_ready=False)
    assert_not_ready(server, "UntrustedType", type_name)


def test_metadata_permuting_the_features(
    assert_not_ready: Callable[..., None],
    start_server: Callable[..., Server],
    artifacts: dict[str, Artifact],
    tmp_path: Path,
) -> None:
    art = artifacts["mixed"]
    dest = tmp_path / "permuted" / "1"
    shutil.copytree(art.uri, dest)
    meta = json.loads((dest / METADATA_FILENAME).read_text())
    meta["features"] = [meta["features"][1], meta["features"][0], meta["features"][2]]
    (dest / METADATA_FILENAME).write_text(json.dumps(meta))
    # No digest given: the metadata itself is what is wrong, and the server says how.
    server = start_server("m", str(dest), None, wait_ready=False)
    assert_not_ready(server, "FeatureMismatch", "['income', 'age', 'city']")
