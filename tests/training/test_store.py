from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from modelfactory_api.artifact import COMPLETE_MARKER, ArtifactMetadata, SourceInfo, TargetInfo
from modelfactory_training.store import ModelStore, next_version, parse_version

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ({}, 1),
        ({1: True, 2: True}, 3),
        ({1: True, 2: False}, 2),  # the half-written 2 is reused
        ({1: True, 2: False, 3: True}, 4),
        ({1: False}, 1),
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
        referenceStats={},
        source=SourceInfo(runId=run_id),
    )


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ModelStore:
    if request.param == "file":
        return ModelStore.open(f"file://{tmp_path}/models")
    return ModelStore.open(f"memory://models-{uuid.uuid4().hex}")


def test_write_then_list_and_find(store: ModelStore) -> None:
    assert store.versions() == {}
    assert store.reserve() == 1
    store.write(1, b"model", metadata(1, "run-a"))
    assert store.versions() == {1: True}
    assert store.reserve() == 2
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
    # An incomplete version is never reported as a run's result.
    assert store.find_run("run-b") is None
    assert store.reserve() == 2
    assert not store.fs.exists(f"{store.root}/2")


def test_marker_is_written_last(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []
    original = store.fs.pipe_file

    def record(path: str, value: bytes, **kwargs: object) -> None:
        written.append(path.rsplit("/", 1)[-1])
        original(path, value, **kwargs)

    monkeypatch.setattr(store.fs, "pipe_file", record)
    store.write(1, b"model", metadata(1, "run-a"))
    assert written == ["model.skops", "metadata.json", COMPLETE_MARKER]
