"""Rollouts with the local launcher: a good canary walks every step to promotion while a client
sees no failure, a bad one is rolled back on its own, a shadow is judged without a client ever
seeing its answers, and an operator restarted mid-rollout neither skips nor repeats a step."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.linear_model import LogisticRegression

from tests.conftest import Kube, eventually, install_crds
from tests.operator.conftest import OperatorProcess, condition
from tests.serving.conftest import (
    numeric_data,
    numeric_features,
    write_artifact,
)

pytestmark = pytest.mark.e2e
ROW = [0.3, 1.0, -0.5, 2.0]


class Rollouts:
    def __init__(self, kube: Kube, namespace: str, root: Path) -> None:
        self.kube = kube
        self.namespace = namespace
        self.root = root
        self.operator = OperatorProcess(
            kube,
            root,
            ["--namespace", namespace, "--launcher", "local"],
            {"MF_LOCAL_STATE_DIR": str(root / "local")},
        )
        X, y = numeric_data(n_features=4)
        X3, y3 = numeric_data(n_features=3, seed=5)
        # Versions 1, 2 and 4 are the same model (they agree on every row); version 3 expects
        # three features, so every request with four fails there.
        self.versions = {
            v: write_artifact(
                root / "m" / str(v),
                LogisticRegression(),
                X,
                y,
                numeric_features(4),
                "binary",
                version=v,
            )
            for v in (1, 2, 4)
        }
        self.versions[3] = write_artifact(
            root / "m" / "3", LogisticRegression(), X3, y3, numeric_features(3), "binary", version=3
        )

    def apply(self, obj: dict[str, Any]) -> None:
        self.kube.kubectl("apply", "-n", self.namespace, "-f", "-", input_text=json.dumps(obj))

    def service(self, name: str, version: int, rollout: dict[str, Any]) -> dict[str, Any]:
        a = self.versions[version]
        return {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": name},
            "spec": {
                "model": {"uri": a.uri, "digest": a.digest},
                "batching": {"maxBatchSize": 16, "maxLatencyMs": 1},
                "monitoring": {"drift": {"enabled": False}},
                "rollout": rollout,
            },
        }

    def status(self, name: str) -> dict[str, Any]:
        obj = self.kube.kubectl_json("get", "msvc", name, "-n", self.namespace)
        return dict(obj.get("status") or {})

    def rollout(self, name: str) -> dict[str, Any]:
        return dict(self.status(name).get("rollout") or {})

    def ready(self, name: str, version: int) -> dict[str, Any]:
        digest = self.versions[version].digest
        last: dict[str, Any] = {}

        def check() -> dict[str, Any] | None:
            s = last["status"] = self.status(name)
            r = s.get("rollout") or {}
            if (
                s.get("phase") == "Ready"
                and (r.get("stable") or {}).get("digest") == digest
                and r.get("phase") not in ("Progressing", "Promoting", "Paused")
            ):
                return s
            return None

        try:
            return dict(eventually(check, timeout=120, what=f"{name} on version {version}"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {json.dumps(last.get('status'), indent=1)}") from None

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.kube.kubectl_json(
            "get",
            "events",
            "-n",
            self.namespace,
            "--field-selector",
            f"involvedObject.name={name},involvedObject.kind=ModelService",
        )
        items = sorted(out.get("items") or [], key=lambda e: e.get("firstTimestamp") or "")
        return list(items)


class Client:
    """Requests without pause from a few threads; what each got back. A failure is
    (sent, answered, status code or the exception), times from time.monotonic()."""

    def __init__(self, url: str, name: str, threads: int = 3) -> None:
        self.url, self.name = url, name
        self.answers: Counter[str] = Counter()
        self.failures: list[tuple[float, float, int | str]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    def run(self) -> None:
        body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
        with httpx.Client(timeout=10) as s:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    r = s.post(f"{self.url}/v2/models/{self.name}/infer", json=body)
                except httpx.HTTPError as exc:
                    self.failures.append((sent, time.monotonic(), repr(exc)))
                    continue
                if r.status_code == 200:
                    self.answers[r.json()["model_version"]] += 1
                else:
                    self.failures.append((sent, time.monotonic(), r.status_code))
                time.sleep(0.005)

    def __enter__(self) -> Client:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def rollback_in_effect(env: Rollouts, name: str) -> float | None:
    """When the launcher serves from a stable server that routes nowhere and the other version's
    server is gone from its record: from then on no request can reach the rolled-back version."""
    path = env.root / "local" / env.namespace / f"msvc-{name}" / "service.json"
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:  # read while the launcher rewrites it
        return None
    active = record.get("active") or {}
    if record.get("candidate") is None and active.get("ready") and active.get("peer") == 0:
        return time.monotonic()
    return None


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def env(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rollouts]:
    install_crds(kube)
    namespace = f"rollout-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    r = Rollouts(kube, namespace, tmp_path_factory.mktemp("rollout"))
    r.operator.start()
    yield r
    r.operator.stop()
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


CANARY = {
    "strategy": "Canary",
    "steps": [20, 50, 100],
    "stepIntervalSeconds": 4,
    "minRequests": 20,
    "analysis": {"failureThreshold": 2},
}


def test_good_canary_is_promoted_with_no_failed_request(env: Rollouts) -> None:
    env.apply(env.service("good", 1, CANARY))
    url = env.ready("good", 1)["url"]
    with Client(url, "good") as client:
        time.sleep(1)
        env.apply(env.service("good", 2, CANARY))
        seen = eventually(
            lambda: (r := env.rollout("good")).get("phase") == "Progressing" and r,
            timeout=30,
            what="canary progressing",
        )
        assert seen["candidate"]["digest"] == env.versions[2].digest
        traffic = {t["role"]: t["weight"] for t in env.status("good")["traffic"]}
        assert traffic == {"stable": 80, "canary": 20}
        done = env.ready("good", 2)
        time.sleep(2)
    assert done["rollout"]["phase"] == "Promoted"
    # A URI-pinned model has no version number: its digest names it.
    assert done["traffic"] == [{"digest": env.versions[2].digest, "weight": 100, "role": "stable"}]
    assert client.failures == [], client.failures[:5]
    assert client.answers["1"] > 50 and client.answers["2"] > 50
    reasons = [e["reason"] for e in env.events("good")]
    assert reasons.count("RolloutStarted") == 1
    assert reasons.count("RolloutStep") == 1  # 20 -> 50; 100 is the promotion
    assert reasons.count("Promoting") == 1 and reasons.count("Promoted") == 1
    assert condition({"status": done}, "RolloutProgressing")["status"] == "False"
    # The candidate's server is gone: one server process is left for the service.
    record = json.loads(
        (env.root / "local" / env.namespace / "msvc-good" / "service.json").read_text()
    )
    assert record["candidate"] is None


def test_bad_canary_is_rolled_back_and_errors_only_its_share(env: Rollouts) -> None:
    spec = {**CANARY, "stepIntervalSeconds": 3}
    env.apply(env.service("bad", 1, spec))
    url = env.ready("bad", 1)["url"]
    with Client(url, "bad") as client:
        time.sleep(1)
        started = time.monotonic()
        env.apply(env.service("bad", 3, spec))
        eventually(
            lambda: env.rollout("bad").get("phase") == "RolledBack",
            timeout=90,
            what="canary rolled back",
        )
        rolled_back = time.monotonic()
        in_effect = eventually(
            lambda: rollback_in_effect(env, "bad"),
            timeout=60,
            interval=0.1,
            what="stable server without the canary",
        )
        time.sleep(3)
    status = env.status("bad")
    assert status["rollout"]["rolledBack"]["digest"] == env.versions[3].digest
    assert status["rollout"]["stable"]["digest"] == env.versions[1].digest
    assert condition({"status": status}, "RolledBack")["status"] == "True"
    assert "error rate" in status["rollout"]["message"]
    # The rollback never costs a client a request: every request got a model's answer (no
    # connection error, no 5xx); the only refusals are the bad version's own 400s, from its
    # share (20 %), and no request sent once the rollback is in effect gets one.
    errors = client.failures
    assert errors, "the bad version never got traffic"
    assert all(code == 400 for _, _, code in errors), errors[:5]
    total = sum(client.answers.values()) + len(errors)
    assert len(errors) <= 0.3 * total
    late = [f for f in errors if f[0] >= in_effect]
    assert late == [], (late[:5], in_effect - rolled_back)
    first_error = min(answered for _, answered, _ in errors)
    print(
        f"first canary error to rollback: {rolled_back - first_error:.1f}s "
        f"(apply to rollback {rolled_back - started:.1f}s)"
    )
    assert set(client.answers) == {"1"}
    # It stays rolled back: the same version is not tried again.
    time.sleep(3)
    assert env.rollout("bad")["phase"] == "RolledBack"


def test_shadow_is_compared_and_never_answers(env: Rollouts) -> None:
    spec = {
        "strategy": "Shadow",
        "stepIntervalSeconds": 4,
        "minRequests": 20,
        "shadow": {"percent": 50, "minAgreement": 0.99},
    }
    env.apply(env.service("shadow", 1, spec))
    url = env.ready("shadow", 1)["url"]
    with Client(url, "shadow") as client:
        env.apply(env.service("shadow", 4, spec))
        eventually(
            lambda: env.rollout("shadow").get("phase") == "Promoting",
            timeout=90,
            what="shadow judged",
        )
        answers_while_shadowing = dict(client.answers)
        status = env.status("shadow")
        env.ready("shadow", 4)
    assert set(answers_while_shadowing) == {"1"}
    analysis = status["rollout"]["analysis"]
    assert analysis["passed"] is True
    assert analysis["shadow"]["agreement"] == 1.0
    assert analysis["shadow"]["comparedRows"] >= 20
    assert analysis["shadow"]["p95Ms"] is not None
    assert client.failures == []


def test_operator_restart_mid_rollout_resumes_at_the_same_step(env: Rollouts) -> None:
    spec = {**CANARY, "steps": [10, 30, 60, 100], "stepIntervalSeconds": 5}
    env.apply(env.service("restart", 1, spec))
    url = env.ready("restart", 1)["url"]
    with Client(url, "restart") as client:
        env.apply(env.service("restart", 2, spec))
        eventually(
            lambda: (
                env.rollout("restart").get("step") == 1
                and env.rollout("restart").get("stepStartedAt")
            ),
            timeout=90,
            what="second step under way",
        )
        before = env.rollout("restart")
        killed = time.monotonic()
        env.operator.kill()
        time.sleep(3)
        env.operator.start()
        # The local launcher's stable port is the operator's own: it is back once the
        # operator has adopted the servers, which kept running.
        eventually(lambda: answers(f"{url}/v2/health/ready"), timeout=60, what="stable port back")
        back = time.monotonic()
        done = env.ready("restart", 2)
    assert before["step"] == 1
    assert done["rollout"]["phase"] == "Promoted"
    steps = [e["message"] for e in env.events("restart") if e["reason"] == "RolloutStep"]
    weights = [m.rsplit(" ", 1)[-1] for m in steps]
    assert weights == ["30%", "60%"], steps
    outside = [f for f in client.failures if not killed <= f[1] <= back + 1]
    assert outside == [], outside[:5]
