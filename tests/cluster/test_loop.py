"""The closed loop on the real node, from examples/closed-loop.yaml: drift measured by two server
pods and summed by the operator (through the API server's pod proxy), and a drift-triggered run
in a pod that the promotion gate decides on against the promoted version.

It runs after test_flow.py (pytest takes the files in name order), whose last test removes the
namespace's resources: two servers and a training pod need the 2-core node to themselves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sklearn.datasets import load_iris

from tests.cluster.conftest import RealCluster
from tests.conftest import eventually

pytestmark = pytest.mark.cluster
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "closed-loop.yaml"


def iris_rows(n: int, shift: float, seed: int) -> list[dict[str, float]]:
    """Rows drawn from iris itself; petal length and width moved by `shift` cm. (Iris is
    measured to 0.1 cm: noise on it would be a change of distribution, and rightly flagged.)"""
    iris = load_iris(as_frame=True)
    frame = iris.data.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    frame["petal length (cm)"] += shift
    frame["petal width (cm)"] += shift
    return [{k: float(v) for k, v in r.items()} for r in frame.to_dict("records")]


def send(url: str, rows: list[dict[str, float]], batch: int = 20) -> None:
    # A new connection per request: the Service spreads them over both pods.
    for start in range(0, len(rows), batch):
        res = httpx.post(
            f"{url}/v1/models/iris-loop:predict",
            json={"instances": rows[start : start + batch]},
            timeout=10,
        )
        assert res.status_code == 200, res.text


def drift_reason(rc: RealCluster, reason: str) -> dict[str, Any]:
    """The DataDrift condition once its reason is `reason`; until then an AssertionError with
    the status, which is what a timeout shows."""
    status = rc.status("msvc", "iris-loop")
    condition = next((c for c in status.get("conditions") or [] if c["type"] == "DataDrift"), {})
    assert condition.get("reason") == reason, {"drift": status.get("drift"), "condition": condition}
    return condition


def test_drift_over_two_pods_retrains_and_the_gate_decides(real_cluster: RealCluster) -> None:
    rc = real_cluster
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    for doc in docs:
        if doc["kind"] == "TrainingJob":
            doc["spec"]["retrain"]["onDrift"]["forSeconds"] = 0
            doc["spec"]["retrain"]["minIntervalSeconds"] = 0
        if doc["kind"] == "ModelService":
            doc["spec"]["monitoring"]["drift"].update(
                window=3000, evaluateEverySamples=100, evaluateSeconds=2, minSamples=300
            )
        rc.apply(doc)
    try:
        tj = eventually(
            lambda: (s := rc.status("tj", "iris-loop")).get("promotedVersion") == 1 and s,
            timeout=600,
            interval=2,
            what="iris-loop version 1 promoted",
        )
        assert tj["history"][0]["phase"] == "Promoted"
        eventually(
            lambda: rc.status("msvc", "iris-loop").get("readyReplicas") == 2,
            timeout=300,
            interval=2,
            what="two server pods ready",
        )
        url = rc.cluster_ip("iris-loop")

        send(url, iris_rows(600, 0.0, seed=1))
        calm = eventually(
            lambda: drift_reason(rc, "NoDrift"), timeout=90, interval=2, what="NoDrift"
        )
        drift = rc.status("msvc", "iris-loop")["drift"]
        assert drift["replicas"] == 2 and drift["samples"] >= 300, (drift, calm)

        send(url, iris_rows(1500, 4.0, seed=2))
        detected = eventually(
            lambda: drift_reason(rc, "DriftDetected"), timeout=120, interval=2, what="DriftDetected"
        )
        drift = rc.status("msvc", "iris-loop")["drift"]
        assert drift["replicas"] == 2, drift
        assert {"petal length (cm)", "petal width (cm)"} <= set(drift["driftedFeatures"]), drift
        assert "sepal width (cm)" not in drift["driftedFeatures"], detected

        def decided_v2() -> dict[str, Any] | None:
            history = rc.status("tj", "iris-loop").get("history") or []
            v2 = next((h for h in history if h["version"] == 2), None)
            return v2 if v2 and v2.get("phase") in ("Promoted", "Rejected") else None

        v2 = eventually(decided_v2, timeout=600, interval=2, what="version 2 decided")
        assert v2["trigger"] == "drift" and v2["decidedBy"] == "gate", v2
        assert v2["baselineVersion"] == 1 and v2["baselineScore"] is not None, v2
        assert v2["dataDigest"].startswith("sha256:")
        time.sleep(1)
        events = rc.kubectl(
            "get",
            "events",
            "-n",
            rc.ns,
            "--field-selector",
            "involvedObject.name=iris-loop",
            "-o",
            "jsonpath={.items[*].reason}",
        )
        assert "DriftDetected" in events and "DriftRetrain" in events, events
    except AssertionError:
        print(rc.diagnose())
        raise
    finally:
        rc.kubectl("delete", "-n", rc.ns, "-f", str(EXAMPLE), "--wait=false")
