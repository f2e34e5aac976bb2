"""Writing parts and committing them: rolling parts, the move, the manifest last, clean-up."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from modelfactory_artifacts.batch_manifest import (
    BatchManifest,
    ManifestInput,
    ManifestModel,
    ManifestOutput,
    ManifestRows,
    OutputFile,
    read_manifest,
)
from modelfactory_training.batch.output import OutputStore
from modelfactory_training.errors import SpecError

pytestmark = pytest.mark.unit


def manifest(run_id: str, out: Path, folder: str, files: list[OutputFile]) -> BatchManifest:
    return BatchManifest(
        runId=run_id,
        model=ManifestModel(uri="/m/1", digest="sha256:" + "a" * 64),
        runtime="sklearn",
        input=ManifestInput(uri="/in.csv", format="csv", files=[]),
        output=ManifestOutput(
            uri=str(out), format="parquet", folder=folder, columns=["id"], files=files
        ),
        rows=ManifestRows(read=sum(f.rows for f in files), written=sum(f.rows for f in files)),
        startedAt="t0",
        finishedAt="t1",
        seconds=1.0,
        code={},
    )


def commit(
    out: Path, run_id: str, rows: int, per_part: int = 4, fmt: str = "parquet"
) -> BatchManifest:
    store = OutputStore(str(out), run_id, fmt, rows_per_part=per_part)
    store.begin()
    for start in range(0, rows, 3):
        store.write(pa.table({"id": list(range(start, min(start + 3, rows)))}))
    return store.commit(lambda folder, files: manifest(run_id, out, folder, files))


def test_parts_roll_and_commit_lists_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    m = commit(out, "r1", rows=10)
    assert [(f.path, f.rows) for f in m.output.files] == [
        ("data/r1/part-00000.parquet", 4),
        ("data/r1/part-00001.parquet", 4),
        ("data/r1/part-00002.parquet", 2),
    ]
    assert read_manifest(str(out)) == m
    assert all((out / f.path).stat().st_size == f.bytes for f in m.output.files)
    assert not (out / "_staging").exists()


def test_a_new_run_replaces_old_data_and_staging_leftovers(tmp_path: Path) -> None:
    out = tmp_path / "out"
    commit(out, "r1", rows=5)
    (out / "_staging" / "killed").mkdir(parents=True)
    (out / "_staging" / "killed" / "part-00000.parquet").write_bytes(b"half")
    m = commit(out, "r2", rows=7, fmt="csv")
    assert sorted(p.name for p in (out / "data").iterdir()) == ["r2"]
    assert not (out / "_staging").exists()
    assert m.output.files[0].path == "data/r2/part-00000.csv"


def test_the_same_run_id_again_commits_beside_the_committed_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    commit(out, "r1", rows=5)
    m = commit(out, "r1", rows=6)
    assert m.output.folder == "data/r1-2"
    assert sorted(p.name for p in (out / "data").iterdir()) == ["r1-2"]
    assert sum(f.rows for f in m.output.files) == 6


def test_an_uncommitted_folder_of_the_same_run_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "data" / "r1").mkdir(parents=True)
    (out / "data" / "r1" / "part-00000.parquet").write_bytes(b"moved, never committed")
    m = commit(out, "r1", rows=3)
    assert m.output.folder == "data/r1"
    assert [p.name for p in (out / "data" / "r1").iterdir()] == ["part-00000.parquet"]
    assert (out / "data" / "r1" / "part-00000.parquet").stat().st_size == m.output.files[0].bytes


def test_a_column_changing_type_is_refused(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path), "r", "parquet")
    store.begin()
    store.write(pa.table({"id": [1, 2]}))
    store.write(pa.table({"id": pa.array([None, None], pa.null())}))  # nulls conform
    with pytest.raises(SpecError, match="'id'"):
        store.write(pa.table({"id": ["x"]}))
    store.abort()
