"""Scoring from and to a real S3 server (MinIO, hack/s3server.py): a prefix of Parquet files
read with their ETags, parts committed under data/ with the manifest written last, a second run
replacing the first, and refused credentials failing with a message that says so.

Each run is a process of its own, as in a pod: its Ray (and the read tasks in Ray's workers)
starts with the process's AWS_* environment."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import s3fs

from modelfactory_artifacts.batch_manifest import read_manifest
from tests.training.batch.conftest import Trained, make_frame, read_json, write_config

pytestmark = pytest.mark.e2e


def main(argv: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-m", "modelfactory_training.batch.main", *argv],
        env={**env, "RAY_USAGE_STATS_ENABLED": "0"},
        timeout=300,
    ).returncode


@pytest.fixture
def prefix(s3: Any, s3_env: dict[str, str]) -> str:
    return f"s3://{s3.bucket}/batch-{uuid.uuid4().hex[:8]}"


def put_parquet(fs: s3fs.S3FileSystem, uri: str, start: int, rows: int) -> None:
    frame = make_frame(rows, seed=start, start=start)
    with fs.open(uri.removeprefix("s3://"), "wb") as fh:
        frame.to_parquet(fh)


def test_a_prefix_on_s3_scored_to_s3_with_etags_and_a_manifest(
    tmp_path: Path, trained: Trained, prefix: str
) -> None:
    fs = s3fs.S3FileSystem()
    for i, start in enumerate((0, 3000)):
        put_parquet(fs, f"{prefix}/in/part-{i}.parquet", start, 3000)
    out = f"{prefix}/scores"
    config = write_config(
        tmp_path / "c.json", trained, f"{prefix}/in/", out, input={"format": "parquet"}
    )
    assert main(["--config", str(config), "--report-file", str(tmp_path / "r.json")]) == 0
    result = read_json(tmp_path / "r.json")
    assert result["succeeded"] and result["rowsWritten"] == 6000
    assert result["manifest"] == f"{out}/manifest.json"
    manifest = read_manifest(out)
    assert manifest is not None and manifest.rows.written == 6000
    assert [f.path for f in manifest.input.files] == [
        f"{prefix}/in/part-0.parquet",
        f"{prefix}/in/part-1.parquet",
    ]
    assert all(f.etag for f in manifest.input.files), manifest.input.files
    ids = [
        i
        for uri in manifest.file_uris()
        for i in pq.read_table(uri.removeprefix("s3://"), filesystem=fs).column("id").to_pylist()
    ]
    assert ids == list(range(6000))
    assert not fs.exists(f"{out.removeprefix('s3://')}/_staging/{manifest.runId}")
    # A second run replaces the first: one data folder, the new manifest.
    again = write_config(
        tmp_path / "c2.json",
        trained,
        f"{prefix}/in/",
        out,
        run_id="run-2",
        input={"format": "parquet"},
    )
    assert main(["--config", str(again), "--report-file", str(tmp_path / "r2.json")]) == 0
    second = read_manifest(out)
    assert second is not None and second.runId == "run-2"
    folders = fs.ls(f"{out.removeprefix('s3://')}/data")
    assert [f.rsplit("/", 1)[-1] for f in folders] == [second.output.folder.rsplit("/", 1)[-1]]


def test_refused_credentials_fail_saying_so(
    tmp_path: Path, trained: Trained, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    s3fs.S3FileSystem.clear_instance_cache()
    config = write_config(
        tmp_path / "c.json",
        trained,
        f"{prefix}/in/",
        f"{prefix}/scores",
        input={"format": "parquet"},
    )
    code = main(["--config", str(config), "--report-file", str(tmp_path / "r.json")])
    result = read_json(tmp_path / "r.json")
    assert code == 2 and result["reason"] == "StorageAccessDenied", result
    assert "credentials" in result["message"].lower() or "denied" in result["message"].lower()
