"""The Kubernetes reporter against the real local control plane and the real CRD."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelfactory_api.runtime import JobIdentity
from modelfactory_api.trainingjob import ModelRef, TrainingProgress, TrainingResult
from modelfactory_training.report import KubernetesReporter
from tests.conftest import ROOT, Kube

pytestmark = pytest.mark.integration

CRD = Path(ROOT) / "crds" / "modelfactory.dev_trainingjobs.yaml"


def training_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "dataset": {"uri": "sklearn://iris"},
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "output": {"storageUri": "file:///models/iris"},
        },
    }


def test_progress_and_result_land_in_the_status(kube: Kube, namespace: str) -> None:
    from kubernetes import client, config

    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kube.wait_established("trainingjobs.modelfactory.dev")
    kube.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(training_job("iris")))

    def api() -> Any:
        return client.CustomObjectsApi(config.new_client_from_config(kube.kubeconfig))

    reporter = KubernetesReporter(JobIdentity(namespace=namespace, name="iris"), api_factory=api)
    reporter.progress(TrainingProgress(trialsTotal=4, trialsCompleted=2, bestScore=0.9))
    status = kube.kubectl_json("get", "trainingjob", "iris", "-n", namespace)["status"]
    assert status["progress"] == {
        "trialsTotal": 4,
        "trialsCompleted": 2,
        "trialsFailed": 0,
        "trialsSkipped": 0,
        "rayNodes": 0,
        "bestScore": 0.9,
    }

    failed = TrainingResult(
        runId="r1", succeeded=False, reason="AllTrialsFailed", message="all 4 trials failed"
    )
    reporter.result(failed.model_copy(update={"metrics": {"stale": 1.0}}))
    good = TrainingResult(
        runId="r2",
        succeeded=True,
        model=ModelRef(version=1, uri="file:///models/iris/1", digest="sha256:" + "b" * 64),
        metric="accuracy",
        metrics={"cv_mean": 0.95},
        bestParams={"C": 1.0},
    )
    reporter.result(good)
    result = kube.kubectl_json("get", "trainingjob", "iris", "-n", namespace)["status"]["result"]
    # The previous run's reason, message and metrics are gone, not merged in.
    assert TrainingResult.model_validate(result) == good
    assert "reason" not in result and result["metrics"] == {"cv_mean": 0.95}
