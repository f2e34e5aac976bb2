"""BatchPredictions on the real control plane (object level): the examples wait for their
TrainingJob's model, then run as a Job or a RayJob whose pods may patch only their own
BatchPrediction's status; a runtime's result lands in the status and the phase."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Kube, eventually
from tests.operator.conftest import (
    EXAMPLES,
    OperatorProcess,
    condition,
    get,
    report_result,
    status,
)

pytestmark = pytest.mark.integration


def test_batch_examples_wait_for_the_model_then_run(
    operator: OperatorProcess, kube: Kube, namespace: str, example_claim: str
) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "iris-classifier.yaml"))
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "batch-scoring.yaml"))
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "batch-scoring-ray.yaml"))
    waiting = eventually(
        lambda: (
            (b := get(kube, "bp", "iris-scores", namespace)).get("status", {}).get("phase") and b
        ),
        what="BatchPrediction status",
    )
    assert waiting["status"]["phase"] == "Pending"
    assert condition(waiting, "Running")["reason"] == "NoModelYet"
    report_result(kube, namespace, "iris")
    job = eventually(
        lambda: [
            j
            for j in kube.kubectl_json("get", "jobs", "-n", namespace)["items"]
            if j["metadata"]["labels"].get("app.kubernetes.io/component") == "batch"
        ],
        what="scoring Job",
    )[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["modelfactory-batch"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    config = json.loads(env["MF_BATCH_CONFIG"])
    assert config["modelUri"] == "file:///mnt/pvc/modelfactory-models/iris/1"
    assert config["input"]["uri"] == "file:///mnt/pvc/modelfactory-models/data/iris-unlabelled.csv"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "BatchPrediction"
    rayjob = eventually(
        lambda: kube.kubectl_json("get", "rayjobs", "-n", namespace)["items"], what="scoring RayJob"
    )[0]
    assert rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] == 2
    assert rayjob["spec"]["entrypoint"].startswith("modelfactory-batch")
    # The run's ServiceAccount may patch its own BatchPrediction's status, nothing else.
    sa = f"system:serviceaccount:{namespace}:iris-scores-scorer"
    for resource, name, allowed in (
        ("batchpredictions", "iris-scores", "yes"),
        ("batchpredictions", "iris-scores-ray", "no"),
        ("trainingjobs", "iris", "no"),
    ):
        answer = kube.kubectl(
            "auth",
            "can-i",
            "patch",
            f"{resource}.modelfactory.dev/{name}",
            "--subresource=status",
            "-n",
            namespace,
            f"--as={sa}",
            check=False,
        ).strip()
        assert answer == allowed, (resource, name, answer)
    bp = get(kube, "bp", "iris-scores", namespace)
    run_id = bp["status"]["runId"]
    assert bp["status"]["model"]["version"] == 1
    result = {
        "runId": run_id,
        "succeeded": True,
        "rowsRead": 150,
        "rowsWritten": 150,
        "seconds": 3.5,
        "manifest": "pvc://modelfactory-models/scores/iris/manifest.json",
        "drift": {"drifted": False},
    }
    kube.kubectl(
        "patch",
        "bp",
        "iris-scores",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"result": result}}),
        f"--as={sa}",
    )
    done = eventually(
        lambda: (
            (s := status(kube, "bp", "iris-scores", namespace)).get("phase") == "Succeeded" and s
        ),
        what="Succeeded",
    )
    assert done["manifest"].endswith("/manifest.json") and done["drifted"] is False
    printed = kube.kubectl("get", "bp", "iris-scores", "-n", namespace)
    assert "Succeeded" in printed and "150" in printed
