from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from modelfactory_artifacts.metadata import (
    COMPLETE_MARKER,
    ArtifactMetadata,
    SourceInfo,
    TargetInfo,
)
from modelfactory_training.errors import SpecError
from modelfactory_training.store import ModelStore, next_version, parse_version

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ({}, 1),
        ({1: True, 2: True}, 3),
        ({1: True, 2: False}, 3),  # 2 may be another run's version being written
        ({1: True, 2: False, 3: True}, 4),
        ({1: False}, 2),
    ],
)
def test_next_version(existing: dict[int, bool], expected: int) -> None:
    assert next_version(existing) == expected


def test_parse_version() -> None:
    assert parse_version("12") == 12
    assert parse_version("012") is None and parse_version("tmp") is None
    assert parse_version("0") is None


def metadata(version: int, run_id: str) -> ArtifactMetadata:
    return ArtifactMetadata(
        version=version,
        createdAt="2026-01-01T00:00:00Z",
        task="binary",
        modelSha256="0" * 64,
        libraries={},
        features=[],
        target=TargetInfo(name="y"),
        estimator="sklearn.linear_model.LogisticRegression",
        metric="accuracy",
        metrics={},
        bestParams={},
        trials=[],
        source=SourceInfo(runId=run_id),
    )


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ModelStore:
    if request.param == "file":
        return ModelStore.open(f"file://{tmp_path}/models")
    return ModelStore.open(f"memory://models-{uuid.uuid4().hex}")


def test_write_then_list_and_find(store: ModelStore) -> None:
    assert store.versions() == {}
    assert store.reserve("run-a") == 1
    store.write(1, b"model", metadata(1, "run-a"))
    assert store.versions() == {1: True}
    assert store.reserve("run-b") == 2
    store.write(2, b"model", metadata(2, "run-b"))
    found = store.find_run("run-a")
    assert found is not None and found.version == 1
    assert store.find_run("run-c") is None
    assert store.version_uri(2) == f"{store.uri}/2"


def test_incomplete_version_is_ignored_and_reused(store: ModelStore) -> None:
    store.write(1, b"model", metadata(1, "run-a"))
    store.fs.makedirs(f"{store.root}/2", exist_ok=True)
    store.fs.pipe_file(f"{store.root}/2/model.skops", b"half")
    store.fs.pipe_file(
        f"{store.root}/2/metadata.json", metadata(2, "run-b").model_dump_json().encode()
    )
    assert store.versions() == {1: True, 2: False}
    # An incomplete version is never reported as a run's result, and never taken over or
    # deleted by another run: it may be a run still writing.
    assert store.find_run("run-b") is None
    assert store.reserve("run-c") == 3
    assert store.fs.cat_file(f"{store.root}/2/model.skops") == b"half"


def test_a_retried_run_resumes_its_own_claim(store: ModelStore) -> None:
    assert store.reserve("run-a") == 1
    assert store.claimant(1) == "run-a"
    assert store.reserve("run-b") == 2
    # run-a died before finishing; its retry gets 1 back, anyone else a new number.
    assert store.reserve("run-a") == 1
    assert store.reserve("run-c") == 3
    store.write(1, b"model", metadata(1, "run-a"))
    assert store.reserve("run-a") == 4  # a finished version is never written twice


def test_a_claimed_number_is_not_claimed_again(store: ModelStore) -> None:
    assert store.claim(5, "run-a")
    assert not store.claim(5, "run-b")
    assert store.claimant(5) == "run-a"


def test_marker_is_written_last(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []
    original = store.fs.pipe_file

    def record(path: str, value: bytes, **kwargs: object) -> None:
        written.append(path.rsplit("/", 1)[-1])
        original(path, value, **kwargs)

    monkeypatch.setattr(store.fs, "pipe_file", record)
    store.write(1, b"model", metadata(1, "run-a"))
    assert written == ["model.skops", "metadata.json", COMPLETE_MARKER]


@pytest.mark.parametrize("uri", ["file:///models/../etc", "/models/a/%2e%2e", "s3://b/../other"])
def test_storage_uri_with_dot_dot_is_refused(uri: str) -> None:
    with pytest.raises(SpecError) as err:
        ModelStore.open(uri)
    assert err.value.reason == "InvalidStorageUri"
    assert "output.storageUri must not contain '..'" in str(err.value)


def _race(uri: str, run_id: str, start: Any) -> int:
    """One contender: wait for the start signal, take a number, write a complete version."""
    store = ModelStore.open(uri)
    start.wait()
    version = store.reserve(run_id)
    store.write(version, run_id.encode(), metadata(version, run_id))
    return version


def check_race_outcome(store: ModelStore, versions: list[int], run_ids: list[str]) -> None:
    assert sorted(versions) == list(range(1, len(run_ids) + 1))
    assert store.versions() == {v: True for v in versions}
    for version, run_id in zip(versions, run_ids, strict=True):
        # Each version holds the model of the run that claimed it: nothing was overwritten.
        assert store.fs.cat_file(f"{store.root}/{version}/model.skops") == run_id.encode()
        assert store.read_metadata(version).source.runId == run_id


def test_concurrent_processes_get_distinct_versions(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/models"
    ModelStore.open(uri).write(1, b"run-0", metadata(1, "run-0"))
    run_ids = [f"run-{i}" for i in range(1, 9)]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Event()
        with context.Pool(len(run_ids)) as pool:
            pending = [pool.apply_async(_race, (uri, r, start)) for r in run_ids]
            time.sleep(1.0)  # every worker is up and waiting
            start.set()
            versions = [p.get(timeout=60) for p in pending]
    check_race_outcome(ModelStore.open(uri), [1, *versions], ["run-0", *run_ids])


def test_concurrent_threads_get_distinct_versions(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/models"
    run_ids = [f"run-{i}" for i in range(16)]
    start = threading.Event()
    with ThreadPoolExecutor(len(run_ids)) as pool:
        futures = [pool.submit(_race, uri, r, start) for r in run_ids]
        start.set()
        versions = [f.result(timeout=60) for f in futures]
    check_race_outcome(ModelStore.open(uri), versions, run_ids)


def test_a_stale_listing_cannot_take_a_claimed_number(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs list the store at the same moment (both see it empty); the second to claim
    must get the next number, and must not touch the first one's directory."""
    other = ModelStore.open(store.uri)
    other.fs = store.fs
    monkeypatch.setattr(store, "versions", lambda: {})  # what it saw before the other wrote
    assert other.reserve("run-b") == 1
    other.fs.pipe_file(f"{other.root}/1/model.skops", b"run-b")
    assert store.reserve("run-a") == 2
    assert store.fs.cat_file(f"{store.root}/1/model.skops") == b"run-b"
    assert store.claimant(1) == "run-b" and store.claimant(2) == "run-a"


def test_a_bare_412_is_a_lost_claim(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """MinIO answers a lost If-None-Match with 412 and no Condition: s3fs raises OSError(EINVAL),
    not FileExistsError; the number is taken, not the run failed."""
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    lost = translate_boto_error(
        ClientError(
            {
                "Error": {"Code": "PreconditionFailed", "Message": "pre-conditions did not hold"},
                "ResponseMetadata": {"HTTPStatusCode": 412},
            },
            "PutObject",
        )
    )
    assert type(lost) is OSError

    def refuse(path: str, mode: str = "rb", **kw: Any) -> Any:
        raise lost

    monkeypatch.setattr(store.fs, "open", refuse)
    assert store.claim(1, "run-a") is False


def test_other_claim_errors_propagate(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: str, mode: str = "rb", **kw: Any) -> Any:
        raise PermissionError("Forbidden")

    monkeypatch.setattr(store.fs, "open", refuse)
    with pytest.raises(PermissionError):
        store.claim(1, "run-a")


def test_storage_failures_become_run_failures() -> None:
    from botocore.exceptions import NoCredentialsError

    from modelfactory_training.errors import StorageAccessError, TransientError
    from modelfactory_training.store import storage_failure

    denied = storage_failure("s3://b/m", PermissionError("Forbidden"), "write", "output")
    assert isinstance(denied, StorageAccessError) and denied.permanent
    assert denied.reason == "StorageAccessDenied"
    assert denied.message.startswith("output: cannot write s3://b/m: the storage refused")
    none = storage_failure("s3://b/m", NoCredentialsError(), "list", "output")
    assert isinstance(none, StorageAccessError) and "no credentials were found" in none.message
    flaky = storage_failure("s3://b/m", ConnectionResetError("reset"), "write", "output")
    assert isinstance(flaky, TransientError) and flaky.reason == "StorageUnavailable"
    assert storage_failure("s3://b/m", KeyError("bug"), "write", "output") is None
