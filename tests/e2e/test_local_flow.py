"""The whole flow on this machine: the operator with the local launcher, real Ray training, real
HTTP serving, retraining while a client keeps sending requests, and crashes along the way."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Kube, eventually, install_crds
from tests.operator.conftest import OperatorProcess, condition

pytestmark = pytest.mark.e2e
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


class Flow:
    def __init__(self, kube: Kube, namespace: str, root: Path) -> None:
        self.kube = kube
        self.namespace = namespace
        self.root = root
        self.state = root / "local"
        self.operator = OperatorProcess(
            kube,
            root,
            ["--namespace", namespace, "--launcher", "local"],
            {"MF_LOCAL_STATE_DIR": str(self.state)},
        )

    def apply(self, obj: dict[str, Any]) -> None:
        self.kube.kubectl("apply", "-n", self.namespace, "-f", "-", input_text=json.dumps(obj))

    def status(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.kube.kubectl_json("get", kind, name, "-n", self.namespace)
        return dict(obj.get("status") or {})

    def wait_phase(self, kind: str, name: str, phase: str, timeout: float = 300) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(kind, name)
            if status.get("phase") == "Failed" and phase != "Failed":
                # Not an AssertionError: eventually() must stop waiting at once.
                raise RuntimeError(f"{kind}/{name} failed: {status.get('conditions')}")
            return status if status.get("phase") == phase else None

        return dict(eventually(reached, timeout=timeout, what=f"{kind}/{name} {phase}"))

    def trainingjob(self, name: str, dataset: str = "iris", trials: int = 4) -> dict[str, Any]:
        return {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {
                "dataset": {"uri": f"sklearn://{dataset}", "seed": 1},
                "model": {
                    "estimator": "sklearn.linear_model.LogisticRegression",
                    "params": {"max_iter": 500},
                },
                "tuning": {
                    "metric": "accuracy",
                    "trials": trials,
                    "cvFolds": 3,
                    "searchSpace": {"C": {"low": 0.1, "high": 10.0, "log": True}},
                },
                "output": {"storageUri": f"file://{self.root}/models/{name}"},
            },
        }

    def modelservice(self, name: str, trainingjob: str) -> dict[str, Any]:
        return {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": name},
            "spec": {
                "model": {"trainingJob": trainingjob},
                "batching": {"maxBatchSize": 16, "maxLatencyMs": 2},
            },
        }

    def service_record(self, name: str) -> dict[str, Any]:
        path = self.state / self.namespace / f"msvc-{name}" / "service.json"
        return dict(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def flow(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    install_crds(kube)
    namespace = f"e2e-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    f = Flow(kube, namespace, tmp_path_factory.mktemp("flow"))
    f.operator.start()
    yield f
    f.operator.stop()
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def predict_v2(url: str, name: str, rows: list[list[float]]) -> list[Any]:
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), 4],
                "datatype": "FP64",
                "data": [v for row in rows for v in row],
            }
        ]
    }
    res = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=10)
    assert res.status_code == 200, res.text
    return list(res.json()["outputs"][0]["data"])


def test_from_nothing_to_predictions(flow: Flow) -> None:
    flow.apply(flow.trainingjob("iris"))
    flow.apply(flow.modelservice("iris", "iris"))
    tj = flow.wait_phase("tj", "iris", "Succeeded")
    assert tj["model"]["version"] == 1
    assert tj["score"] >= 0.9, tj["metrics"]
    assert tj["progress"]["trialsCompleted"] == 4
    assert Path(tj["model"]["uri"].removeprefix("file://"), "metadata.json").exists()
    ms = flow.wait_phase("msvc", "iris", "Ready", timeout=120)
    assert ms["modelVersion"] == 1 and ms["url"].startswith("http://127.0.0.1:")
    assert predict_v2(ms["url"], "iris", IRIS_ROWS) == [0, 2, 1]
    v1 = httpx.post(
        f"{ms['url']}/v1/models/iris:predict", json={"instances": IRIS_ROWS}, timeout=10
    )
    assert v1.status_code == 200 and v1.json()["predictions"] == [0, 2, 1]


def test_retrain_rolls_without_failed_requests(flow: Flow) -> None:
    ms = flow.wait_phase("msvc", "iris", "Ready", timeout=300)
    url = ms["url"]
    results = {"ok": 0, "failed": 0, "errors": []}
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10) as session:
            while not stop.is_set():
                body = {
                    "inputs": [
                        {
                            "name": "input-0",
                            "shape": [1, 4],
                            "datatype": "FP64",
                            "data": IRIS_ROWS[0],
                        }
                    ]
                }
                try:
                    res = session.post(f"{url}/v2/models/iris/infer", json=body)
                    ok = res.status_code == 200
                except httpx.HTTPError as exc:
                    ok = False
                    results["errors"].append(repr(exc))  # type: ignore[attr-defined]
                results["ok" if ok else "failed"] += 1  # type: ignore[operator]

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        flow.kube.kubectl(
            "annotate", "tj", "iris", "-n", flow.namespace, "modelfactory.dev/retrain=second"
        )
        eventually(
            lambda: flow.status("tj", "iris").get("model", {}).get("version") == 2,
            timeout=300,
            what="version 2 trained",
        )
        eventually(
            lambda: (
                flow.status("msvc", "iris").get("modelVersion") == 2
                and flow.status("msvc", "iris").get("phase") == "Ready"
            ),
            timeout=120,
            what="service rolled to version 2",
        )
        time.sleep(3)  # the old server drains and stops while requests keep coming
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert results["failed"] == 0, results["errors"][:5]  # type: ignore[index]
    assert results["ok"] > 100  # type: ignore[operator]
    assert flow.status("msvc", "iris")["url"] == url


def test_killed_server_comes_back(flow: Flow) -> None:
    ms = flow.wait_phase("msvc", "iris", "Ready", timeout=300)
    pid = flow.service_record("iris")["active"]["pid"]
    os.killpg(pid, signal.SIGKILL)
    down = eventually(
        lambda: (s := flow.status("msvc", "iris")).get("phase") != "Ready" and s,
        timeout=30,
        what="status showing the server down",
    )
    assert condition({"status": down}, "Available")["status"] == "False"
    assert "exited" in condition({"status": down}, "Available")["message"]
    flow.wait_phase("msvc", "iris", "Ready", timeout=120)
    assert flow.service_record("iris")["active"]["pid"] != pid
    assert predict_v2(ms["url"], "iris", IRIS_ROWS[:1]) == [0]


def test_operator_killed_mid_training_loses_and_duplicates_nothing(flow: Flow) -> None:
    flow.apply(flow.trainingjob("wine", dataset="wine", trials=6))
    eventually(
        lambda: flow.status("tj", "wine").get("phase") == "Running",
        timeout=120,
        interval=0.2,
        what="training running",
    )
    flow.operator.kill()
    time.sleep(2)
    flow.operator.start()
    tj = flow.wait_phase("tj", "wine", "Succeeded", timeout=300)
    assert tj["model"]["version"] == 1
    versions = sorted(
        p.name for p in (flow.root / "models" / "wine").iterdir() if (p / "_COMPLETE").exists()
    )
    assert versions == ["1"]
    assert [m["version"] for m in tj["history"]] == [1]
