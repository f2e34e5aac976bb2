"""The cluster examples, unchanged, under the local launcher (as `make quickstart` runs them):
their PersistentVolumeClaim is an object nothing here uses, and pvc:// storage is a directory
of the launcher's state."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelfactory_artifacts.batch_manifest import read_manifest
from tests.conftest import Kube, eventually, install_crds
from tests.operator.conftest import OperatorProcess

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def local_operator(kube: Kube, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    install_crds(kube)
    namespace = f"e2e-examples-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    state = tmp_path / "local"
    op = OperatorProcess(
        kube,
        tmp_path,
        ["--namespace", namespace, "--launcher", "local"],
        {"MF_LOCAL_STATE_DIR": str(state)},
    )
    op.start()
    yield namespace, state
    for example in ("batch-scoring.yaml", "iris-classifier.yaml"):
        kube.kubectl(
            "delete", "-n", namespace, "-f", str(EXAMPLES / example), "--wait=false", check=False
        )
    op.stop()
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_iris_example_trains_and_serves_on_a_local_claim_directory(
    kube: Kube, local_operator: tuple[str, Path]
) -> None:
    namespace, state = local_operator
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "iris-classifier.yaml"))

    def phase(kind: str, name: str, want: str) -> dict | None:  # type: ignore[type-arg]
        status = kube.kubectl_json("get", kind, name, "-n", namespace).get("status") or {}
        if status.get("phase") == "Failed":
            raise RuntimeError(f"{kind}/{name} failed: {status.get('conditions')}")
        return status if status.get("phase") == want else None

    tj = eventually(
        lambda: phase("tj", "iris", "Succeeded"), timeout=600, what="TrainingJob Succeeded"
    )
    assert tj["model"]["uri"] == "pvc://modelfactory-models/iris/1"
    assert (state / "pvc" / "modelfactory-models" / "iris" / "1" / "metadata.json").exists()
    ms = eventually(lambda: phase("msvc", "iris", "Ready"), timeout=300, what="ModelService Ready")
    body = {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
        ]
    }
    res = httpx.post(f"{ms['url']}/v2/models/iris/infer", json=body, timeout=10)
    assert res.status_code == 200, res.text
    assert res.json()["outputs"][0]["data"] == [0]
    # Score a dataset with the version just served: the batch example, unchanged.
    data = state / "pvc" / "modelfactory-models" / "data"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "data" / "iris-unlabelled.csv", data / "iris-unlabelled.csv")
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "batch-scoring.yaml"))
    bp = eventually(
        lambda: phase("bp", "iris-scores", "Succeeded"),
        timeout=300,
        what="BatchPrediction Succeeded",
    )
    assert bp["progress"]["rowsWritten"] == 150 and bp["model"]["version"] == 1
    assert bp["manifest"] == "pvc://modelfactory-models/scores/iris/manifest.json"
    manifest = read_manifest(str(state / "pvc" / "modelfactory-models" / "scores" / "iris"))
    assert manifest is not None and manifest.rows.written == 150
    # The claim itself is just an object here: nothing binds it, nothing waits for it.
    claim = kube.kubectl_json("get", "pvc", "modelfactory-models", "-n", namespace)
    assert json.dumps(claim["spec"]["accessModes"]) == '["ReadWriteOnce"]'
