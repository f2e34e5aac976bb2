"""The entrypoint's configuration handling and its reporting to the BatchPrediction's status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelfactory_api.batchprediction import BatchProgress, BatchResult
from modelfactory_api.runtime import JobIdentity
from modelfactory_training.batch.main import main
from modelfactory_training.report import KubernetesReporter

pytestmark = pytest.mark.unit


def test_missing_configuration_is_permanent(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    assert main(["--report-file", str(report)], env={}) == 2
    written = json.loads(report.read_text())
    assert written["reason"] == "InvalidConfig" and "MF_BATCH_CONFIG" in written["message"]


def test_invalid_configuration_names_the_field(tmp_path: Path) -> None:
    config = {
        "runId": "b-1",
        "modelUri": "/m",
        "modelDigest": "sha256:x",
        "input": {"uri": "/in.csv", "format": "xlsx"},
        "output": {"uri": "/out"},
    }
    report = tmp_path / "r.json"
    env = {"MF_BATCH_CONFIG": json.dumps(config)}
    assert main(["--report-file", str(report)], env=env) == 2
    written = json.loads(report.read_text())
    assert written["runId"] == "b-1" and "input.format" in written["message"]


class FakeApi:
    def __init__(self) -> None:
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def patch_namespaced_custom_object_status(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        body: dict[str, Any],
        **_: Any,
    ) -> None:
        self.patches.append((plural, name, body))

    def get_namespaced_custom_object_status(self, *args: Any, **_: Any) -> dict[str, Any]:
        return {"status": {"result": {"runId": "old", "reason": "Stale"}}}


def test_kubernetes_reporter_patches_the_batchpredictions_status() -> None:
    api = FakeApi()
    reporter = KubernetesReporter(
        JobIdentity(namespace="ml", name="bp"), api_factory=lambda: api, plural="batchpredictions"
    )
    reporter.progress(BatchProgress(rowsRead=5, rowsWritten=5))
    reporter.result(BatchResult(runId="r", succeeded=True, rowsRead=5, rowsWritten=5))
    assert [(p, n) for p, n, _ in api.patches] == [("batchpredictions", "bp")] * 2
    assert api.patches[0][2]["status"]["progress"]["rowsRead"] == 5
    result = api.patches[1][2]["status"]["result"]
    assert result["runId"] == "r" and result["reason"] is None  # the old reason is cleared
