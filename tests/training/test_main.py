"""The entrypoint's handling of its configuration: no Ray needed for these."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelfactory_training.main import main

pytestmark = pytest.mark.unit

VALID = {
    "runId": "r-7",
    "spec": {
        "dataset": {"uri": "sklearn://iris"},
        "model": {"estimator": "sklearn.ensemble.NoSuchForest"},
        "output": {"storageUri": "/tmp/unused"},
    },
}


def test_missing_configuration_is_permanent(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    assert main(["--report-file", str(report)], env={}) == 2
    written = json.loads(report.read_text())
    assert written["reason"] == "InvalidConfig"
    assert "MF_TRAINING_CONFIG" in written["message"]


def test_invalid_configuration_names_the_field(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(VALID))
    bad["spec"]["tuning"] = {"cvFolds": 1}
    config = tmp_path / "c.json"
    config.write_text(json.dumps(bad))
    report = tmp_path / "r.json"
    assert main(["--config", str(config), "--report-file", str(report)], env={}) == 2
    written = json.loads(report.read_text())
    assert written["runId"] == "r-7" and written["succeeded"] is False
    assert "spec.tuning.cvFolds" in written["message"]


def test_config_from_env_and_spec_error_reported(tmp_path: Path) -> None:
    env = {"MF_TRAINING_CONFIG": json.dumps({**VALID, "report": {"kind": "file", "path": "x"}})}
    report = tmp_path / "r.json"
    # --report-file overrides the configured report.
    assert main(["--report-file", str(report)], env=env) == 2
    written = json.loads(report.read_text())
    assert written["reason"] == "InvalidEstimator"
    assert "NoSuchForest" in written["message"]


def test_logs_are_json_lines(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    main(["--report-file", str(tmp_path / "r.json")], env={})
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]
    assert entries[0]["level"] == "error" and entries[0]["reason"] == "InvalidConfig"
