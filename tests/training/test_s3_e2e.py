"""Training against a real S3 server (MinIO, hack/s3server.py): the CSV read from s3://, the
version written to s3://, refused credentials failing the run with a message that says so, and
concurrent runs claiming distinct versions through conditional writes."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import s3fs

from modelfactory_artifacts.metadata import COMPLETE_MARKER
from modelfactory_artifacts.read import load_artifact
from modelfactory_training.errors import EXIT_OK, EXIT_PERMANENT
from modelfactory_training.main import main
from modelfactory_training.store import CLAIM_FILENAME, ModelStore

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("ray_local")]


@pytest.fixture
def prefix(s3: Any, s3_env: dict[str, str]) -> str:
    """A fresh s3://bucket/<id> for the test, reached through the AWS_* environment."""
    return f"s3://{s3.bucket}/train-{uuid.uuid4().hex[:8]}"


def put_csv(uri: str) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    frame["label"] = np.where(frame["a"] + frame["b"] > 0, "yes", "no")
    with s3fs.S3FileSystem().open(uri.removeprefix("s3://"), "wb") as fh:
        fh.write(frame.to_csv(index=False).encode())
    return frame


def write_config(tmp_path: Path, dataset: str, storage: str, run_id: str = "run-1") -> Path:
    config = {
        "spec": {
            "dataset": {"uri": dataset, "target": "label"},
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "tuning": {
                "algorithm": "grid",
                "cvFolds": 2,
                "searchSpace": {"C": {"values": [0.1, 1.0]}},
            },
            "output": {"storageUri": storage},
        },
        "runId": run_id,
        "job": {"namespace": "ml", "name": "tj", "uid": "uid-1", "generation": 1},
    }
    path = tmp_path / f"config-{run_id}.json"
    path.write_text(json.dumps(config))
    return path


def run(tmp_path: Path, config: Path) -> tuple[int, dict[str, Any]]:
    report = tmp_path / "result.json"
    code = main(["--config", str(config), "--report-file", str(report)])
    return code, json.loads(report.read_text())


def test_reads_csv_from_s3_and_writes_the_version_to_s3(tmp_path: Path, prefix: str) -> None:
    data = f"{prefix}/data/churn.csv"
    frame = put_csv(data)
    models = f"{prefix}/models"

    code, result = run(tmp_path, write_config(tmp_path, data, models))

    assert code == EXIT_OK, result
    assert result["succeeded"] is True
    assert result["model"]["uri"] == f"{models}/1"
    fs = s3fs.S3FileSystem()
    assert fs.exists(f"{models.removeprefix('s3://')}/1/{COMPLETE_MARKER}")
    # The serving reader verifies and loads what the trainer wrote, from s3:// too.
    loaded = load_artifact(result["model"]["uri"], result["model"]["digest"])
    assert [f.name for f in loaded.metadata.features] == ["a", "b"]
    assert set(loaded.estimator.predict(frame[["a", "b"]].head(5))) <= {"yes", "no"}
    # A retry of the same run finds its version instead of writing another one.
    code, again = run(tmp_path, write_config(tmp_path, data, models))
    assert code == EXIT_OK and again["model"]["version"] == 1


@pytest.mark.parametrize("where", ["output", "dataset"])
def test_refused_credentials_fail_the_run_saying_so(
    tmp_path: Path,
    prefix: str,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    data = f"{prefix}/data/churn.csv"
    put_csv(data)
    # The output on local disk isolates the dataset read; on S3 it is listed first.
    storage = f"{prefix}/models" if where == "output" else f"file://{tmp_path / 'models'}"
    wrong = "wrong-" + uuid.uuid4().hex
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    s3fs.S3FileSystem.clear_instance_cache()

    code, result = run(tmp_path, write_config(tmp_path, data, storage))

    assert code == EXIT_PERMANENT, result
    assert result["succeeded"] is False
    assert result["reason"] == "StorageAccessDenied"
    uri = storage if where == "output" else data
    assert result["message"].startswith(f"{where}: cannot ")
    assert uri in result["message"]
    # A HEAD answer has no body, so the code may be only the HTTP status.
    assert any(
        f"the storage refused the credentials ({code})" in result["message"]
        for code in ("SignatureDoesNotMatch", "HTTP 403")
    ), result["message"]
    assert (
        wrong not in result["message"]
        and s3_env["AWS_SECRET_ACCESS_KEY"] not in (result["message"])
    )


def test_no_credentials_fail_the_run_saying_so(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = f"{prefix}/data/churn.csv"
    put_csv(data)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    # No instance metadata service to ask on this machine.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3fs.S3FileSystem.clear_instance_cache()

    code, result = run(tmp_path, write_config(tmp_path, data, f"{prefix}/models"))

    assert code == EXIT_PERMANENT, result
    assert result["reason"] == "StorageAccessDenied"
    assert "no credentials were found" in result["message"]


def test_concurrent_claims_on_s3_get_distinct_versions(prefix: str) -> None:
    """Eight runs claim at once, each through a client of its own: the conditional writes give
    each its own number, and a run that lost a race moved on instead of failing."""
    uri = f"{prefix}/claims"
    runs = 8
    barrier = threading.Barrier(runs)
    got: dict[str, int] = {}
    errors: list[BaseException] = []

    def claim(run_id: str) -> None:
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        store = ModelStore(uri=uri, fs=fs, root=uri.removeprefix("s3://"))
        try:
            barrier.wait()
            got[run_id] = store.reserve(run_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(f"run-{i}",)) for i in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert not errors, errors
    assert sorted(got.values()) == list(range(1, runs + 1))
    store = ModelStore.open(uri)
    for run_id, version in got.items():
        assert store.claimant(version) == run_id
        assert store.fs.exists(f"{store.root}/{version}/{CLAIM_FILENAME}")
