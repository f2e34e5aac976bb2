"""Batch prediction on the real node: the batch example scores a pvc:// input in a pod of the
training image, and the same scoring with two workers runs as a KubeRay RayJob."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from tests.cluster.conftest import EXAMPLES, NODE, RealCluster, claim_directory
from tests.conftest import eventually

pytestmark = pytest.mark.cluster
DATA = EXAMPLES / "data" / "iris-unlabelled.csv"


def wait_for(rc: RealCluster, kind: str, name: str, phase: str, timeout: float) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = rc.status(kind, name)
        if status.get("phase") == "Failed" and phase != "Failed":
            raise RuntimeError(f"{kind}/{name} failed: {status.get('conditions')}")
        return status if status.get("phase") == phase else None

    try:
        return dict(eventually(reached, timeout=timeout, interval=2, what=f"{name} {phase}"))
    except (AssertionError, RuntimeError):
        print(rc.diagnose())
        raise


def scores(claim: Path, output: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """The committed output as the node's volume holds it (pod paths → the claim's directory)."""
    root = claim / output
    manifest = json.loads((root / "manifest.json").read_text())
    parts = [root / f["path"] for f in manifest["output"]["files"]]
    return manifest, pq.ParquetDataset([str(p) for p in parts]).read().to_pandas()


def test_batch_scoring_in_a_pod_and_on_a_rayjob(real_cluster: RealCluster) -> None:
    rc = real_cluster
    rc.kubectl("apply", "-n", rc.ns, "-f", str(EXAMPLES / "iris-classifier.yaml"))
    tj = wait_for(rc, "tj", "iris", "Succeeded", timeout=600)
    claim = claim_directory(rc, "modelfactory-models")
    (claim / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA, claim / "data" / "iris-unlabelled.csv")

    rc.kubectl("apply", "-n", rc.ns, "-f", str(EXAMPLES / "batch-scoring.yaml"))
    done = wait_for(rc, "bp", "iris-scores", "Succeeded", timeout=600)
    assert done["model"]["version"] == tj["model"]["version"]
    assert done["progress"]["rowsWritten"] == 150
    assert done["manifest"] == "pvc://modelfactory-models/scores/iris/manifest.json"
    pods = rc.kube.kubectl_json(
        "get", "pods", "-n", rc.ns, "-l", "app.kubernetes.io/component=batch"
    )["items"]
    assert pods and all(p["spec"]["nodeName"] == NODE for p in pods)
    manifest, out = scores(claim, "scores/iris")
    source = pd.read_csv(DATA)
    assert list(out["flower_id"]) == list(source["flower_id"])
    assert (
        set(out["prediction"]) <= {0, 1, 2} and manifest["model"]["digest"] == tj["model"]["digest"]
    )

    # Two workers: a RayJob. A quarter CPU per pod (Ray counts one) so that the head and the
    # workers fit the 2-core node beside the iris server.
    ray = yaml.safe_load((EXAMPLES / "batch-scoring-ray.yaml").read_text())
    ray["spec"]["compute"] = {"workers": 2, "cpu": "250m", "memory": "1536Mi"}
    rc.apply(ray)
    eventually(
        lambda: rc.kube.kubectl_json(
            "get", "rayjobs", "-n", rc.ns, "-l", "app.kubernetes.io/instance=iris-scores-ray"
        )["items"],
        timeout=120,
        what="scoring RayJob",
    )
    wait_for(rc, "bp", "iris-scores-ray", "Succeeded", timeout=900)
    ray_manifest, ray_out = scores(claim, "scores/iris-ray")
    assert ray_manifest["rows"]["written"] == 150
    assert list(ray_out["flower_id"]) == list(source["flower_id"])
    assert list(ray_out["prediction"]) == list(out["prediction"])
    for name in ("iris-scores", "iris-scores-ray"):
        rc.kubectl("delete", "bp", name, "-n", rc.ns)
