"""A run killed halfway and run again: exactly the input's rows, once each, nothing left over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from modelfactory_artifacts.batch_manifest import read_manifest
from modelfactory_training.batch.main import main
from tests.training.batch.conftest import Trained, make_frame, write_config, write_csv

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("ray_local")]

ROWS = 400_000


def test_killed_run_then_rerun_commits_each_row_once(tmp_path: Path, trained: Trained) -> None:
    import ray

    out = tmp_path / "out"
    # A committed output from an earlier run: the new one replaces it.
    old = write_csv(make_frame(1000, seed=5, start=10**6), tmp_path / "old.csv")
    assert (
        main(
            [
                "--config",
                str(
                    write_config(tmp_path / "old.json", trained, str(old), str(out), run_id="run-0")
                ),
            ]
        )
        == 0
    )
    frame = make_frame(ROWS, seed=2)
    data = write_csv(frame, tmp_path / "in.csv")
    config = write_config(
        tmp_path / "c.json", trained, str(data), str(out), run_id="run-1", batchSize=2048
    )
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
    }
    script = Path(sys.executable).with_name("modelfactory-batch")
    proc = subprocess.Popen(
        [str(script), "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    staged = out / "_staging" / "run-1" / "part-00000.parquet"
    deadline = time.monotonic() + 120
    try:
        while not staged.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert staged.exists(), "the run never wrote a part"
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    # Killed halfway: the committed output is still the earlier run's, untouched.
    before = read_manifest(str(out))
    assert before is not None and before.runId == "run-0"
    assert staged.parent.exists()

    again = write_config(tmp_path / "c2.json", trained, str(data), str(out), run_id="run-2")
    assert main(["--config", str(again)]) == 0

    manifest = read_manifest(str(out))
    assert manifest is not None and manifest.runId == "run-2"
    assert manifest.rows.written == ROWS
    ids = pads.dataset(str(out / "data"), format="parquet").to_table(columns=["id"])
    assert ids.num_rows == ROWS
    assert sorted(ids.column("id").to_pylist()) == list(range(ROWS))
    listed = pq.ParquetDataset(manifest.file_uris()).read(columns=["id"])
    assert listed.column("id").to_pylist() == frame["id"].tolist()
    assert sorted(p.name for p in (out / "data").iterdir()) == ["run-2"]
    assert not (out / "_staging").exists()
