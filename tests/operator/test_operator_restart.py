"""Kill the operator (SIGKILL) while it reconciles 20 resources; a new one converges them all
without duplicate releases, runs or orphans."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from tests.conftest import Kube, eventually
from tests.operator.conftest import OperatorProcess

pytestmark = pytest.mark.integration
DIGEST = "sha256:" + "cd" * 32


def manifests(count: int) -> str:
    items = []
    for i in range(count):
        items.append({
            "apiVersion": "modelfactory.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": f"tj-{i}"},
            "spec": {"dataset": {"uri": "sklearn://wine"},
                     "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
                     "output": {"storageUri": f"s3://models/tj-{i}"}}})
        items.append({
            "apiVersion": "modelfactory.dev/v1alpha1", "kind": "ModelService",
            "metadata": {"name": f"ms-{i}"},
            "spec": {"model": {"uri": f"s3://models/m{i}/1", "digest": DIGEST}}})
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def test_sigkill_mid_reconcile_converges(operator: OperatorProcess, kube: Kube,
                                         namespace: str) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", "-", input_text=manifests(10))
    # Let it get part-way: some releases installed, some not, one possibly mid-helm.
    eventually(lambda: len(json.loads(kube.helm("list", "-n", namespace, "-a", "-o", "json")
                                      .stdout)) >= 3, interval=0.1, what="first releases")
    operator.kill()
    time.sleep(1)
    operator.start()

    def converged() -> bool:
        tjs = kube.kubectl_json("get", "tj", "-n", namespace)["items"]
        mss = kube.kubectl_json("get", "msvc", "-n", namespace)["items"]
        return (len(tjs) == 10 and len(mss) == 10
                and all((t.get("status") or {}).get("phase") == "Failed" for t in tjs)
                and all((m.get("status") or {}).get("phase") == "Ready" for m in mss))

    eventually(converged, timeout=240, interval=1, what="all 20 resources converged")
    releases = json.loads(kube.helm("list", "-n", namespace, "-a", "-o", "json").stdout)
    assert sorted(r["name"] for r in releases) == sorted(
        [f"tj-tj-{i}" for i in range(10)] + [f"msvc-ms-{i}" for i in range(10)])
    assert {r["status"] for r in releases} == {"deployed"}
    # One run per TrainingJob (its Job finished without a result under kwok: NoResult) and one
    # Deployment per ModelService.
    jobs = kube.kubectl_json("get", "jobs", "-n", namespace)["items"]
    owners = Counter(j["metadata"]["labels"]["app.kubernetes.io/instance"] for j in jobs)
    assert owners == Counter({f"tj-{i}": 1 for i in range(10)})
    deployments = kube.kubectl_json("get", "deployments", "-n", namespace)["items"]
    assert len(deployments) == 10
