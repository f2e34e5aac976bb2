"""KubeRay's CRD may be removed and re-installed under a running operator: it keeps working."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Kube, eventually
from tests.operator.conftest import OperatorProcess, condition, get

pytestmark = pytest.mark.integration
DIGEST = "sha256:" + "cd" * 32
CRD = "rayjobs.ray.io"


def modelservice(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": name},
        "spec": {"model": {"uri": f"s3://models/{name}/1", "digest": DIGEST}},
    }


def apply(kube: Kube, namespace: str, obj: dict[str, Any]) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(obj))


def recreate(kube: Kube, crd: dict[str, Any]) -> None:
    clean = json.loads(json.dumps(crd))
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        clean["metadata"].pop(key, None)
    clean.pop("status", None)
    kube.kubectl("create", "-f", "-", input_text=json.dumps(clean))
    kube.wait_established(CRD)


def test_operator_survives_the_rayjob_crd_coming_and_going(
    operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    crd = kube.kubectl_json("get", "crd", CRD)
    # A RayJob child exists and is watched when the CRD goes away under it.
    tj = {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "ray"},
        "spec": {
            "dataset": {"uri": "sklearn://iris"},
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "compute": {"workers": 1},
            "output": {"storageUri": "s3://models/ray"},
        },
    }
    apply(kube, namespace, tj)
    eventually(lambda: kube.kubectl_json("get", "rayjobs", "-n", namespace)["items"], what="RayJob")
    try:
        for round_ in range(6):
            kube.kubectl("delete", "crd", CRD, "--wait=true")
            name = f"ms-{round_}"
            apply(kube, namespace, modelservice(name))
            eventually(
                lambda n=name: (get(kube, "msvc", n, namespace).get("status") or {}).get("phase"),
                what=f"{name} reconciled while the CRD is gone",
            )
            recreate(kube, crd)
            assert operator.proc is not None and operator.proc.poll() is None, operator.tail()
    finally:
        if kube.run("kubectl", "get", "crd", CRD, check=False).returncode != 0:
            recreate(kube, crd)

    # After the last round the watch is back: a new TrainingJob's RayJob reports its status to
    # it at once (the periodic resync is minutes away).
    apply(kube, namespace, {**tj, "metadata": {"name": "ray-after"}})
    rayjob = eventually(
        lambda: [
            r
            for r in kube.kubectl_json("get", "rayjobs", "-n", namespace)["items"]
            if r["metadata"]["name"].startswith("ray-after")
        ],
        what="RayJob of the new TrainingJob",
    )[0]
    kube.kubectl(
        "patch",
        "rayjob",
        rayjob["metadata"]["name"],
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "jobDeploymentStatus": "Failed",
                    "jobStatus": "FAILED",
                    "message": "head pod lost",
                }
            }
        ),
    )
    failed = eventually(
        lambda: (
            (t := get(kube, "tj", "ray-after", namespace)).get("status", {}).get("phase")
            == "Failed"
            and t
        ),
        timeout=30,
        what="Failed",
    )
    assert "head pod lost" in condition(failed, "Failed")["message"]
    assert operator.proc is not None and operator.proc.poll() is None
    for round_ in range(6):
        assert (get(kube, "msvc", f"ms-{round_}", namespace).get("status") or {}).get("phase")
