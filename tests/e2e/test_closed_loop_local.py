"""The closed loop on this machine (operator with the local launcher, real training, real
servers): traffic like the training data shows no drift; shifted traffic shows DataDrift naming
the shifted features; drift retrains on the new data; the gate promotes the better version and
the service rolls to it without a failed request; a worse spec's version is rejected and not
served; a schedule fires, and fires once after the operator was down across two times."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.conftest import Kube, eventually, install_crds
from tests.e2e.test_local_flow import Flow
from tests.operator.conftest import condition

pytestmark = pytest.mark.e2e
FEATURES = ["x0", "x1", "x2", "x3"]


def dataset(rows: int, shift: float, seed: int) -> pd.DataFrame:
    """x0 and x2 move by `shift` standard deviations; the label flips where x0 > 2. Unshifted
    data never reaches x0 > 1.5, so a model of it cannot know the flip and is wrong on most of
    the shifted data, where a model of the new data is right."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3 * rows, 4))
    if shift == 0:
        x = x[x[:, 0] <= 1.5]
    x = x[:rows]
    x[:, 0] += shift
    x[:, 2] += shift
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["y"] = ((x[:, 0] > 2) ^ (x[:, 1] > 0)).astype(int)
    return frame


def rows(frame: pd.DataFrame) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in r.items()} for r in frame[FEATURES].to_dict("records")]


@pytest.fixture(scope="module")
def loop(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    install_crds(kube)
    namespace = f"loop-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    f = Flow(kube, namespace, tmp_path_factory.mktemp("loop"))
    f.operator.start()
    yield f
    f.operator.stop()
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def trainingjob(root: Path, max_depth: int) -> dict[str, Any]:
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "shifty"},
        "spec": {
            "dataset": {"uri": f"file://{root}/data/train.csv", "target": "y", "seed": 3},
            "model": {
                "estimator": "sklearn.tree.DecisionTreeClassifier",
                "params": {"max_depth": max_depth, "random_state": 0},
            },
            "tuning": {"metric": "accuracy", "trials": 1, "cvFolds": 2},
            "output": {"storageUri": f"file://{root}/models/shifty"},
            "retrain": {
                "onDrift": {"modelService": "shifty", "forSeconds": 0},
                "minIntervalSeconds": 0,
            },
            "promotion": {"minImprovement": 0.01},
        },
    }


def send(url: str, frame: pd.DataFrame, batch: int = 100) -> None:
    with httpx.Client(timeout=10) as client:
        for start in range(0, len(frame), batch):
            body = {"instances": rows(frame.iloc[start : start + batch])}
            res = client.post(f"{url}/v1/models/shifty:predict", json=body)
            assert res.status_code == 200, res.text


def drift_reason(loop: Flow) -> str | None:
    return (condition({"status": loop.status("msvc", "shifty")}, "DataDrift") or {}).get("reason")


def test_drift_retrains_promotes_the_better_version_and_rejects_a_worse_one(loop: Flow) -> None:
    data = loop.root / "data"
    data.mkdir()
    dataset(3000, 0.0, seed=1).to_csv(data / "train.csv", index=False)
    loop.apply(trainingjob(loop.root, max_depth=6))
    loop.apply(
        {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": "shifty"},
            "spec": {
                "model": {"trainingJob": "shifty"},
                "monitoring": {
                    "drift": {
                        "window": 2000,
                        "evaluateEverySamples": 200,
                        "evaluateSeconds": 2,
                        "minSamples": 500,
                    }
                },
            },
        }
    )
    tj = loop.wait_phase("tj", "shifty", "Succeeded")
    v1 = tj["history"][-1]
    assert v1["phase"] == "Promoted" and v1["trigger"] == "spec"
    assert v1["dataDigest"].startswith("sha256:")
    ms = loop.wait_phase("msvc", "shifty", "Ready", timeout=120)
    url = ms["url"]

    # Traffic like the training data: a verdict, and it is no drift.
    send(url, dataset(1500, 0.0, seed=2))
    eventually(lambda: drift_reason(loop) == "NoDrift", timeout=60, what="DataDrift NoDrift")
    assert loop.status("msvc", "shifty")["drift"]["samples"] >= 500

    # The world moves: new training data, and traffic from it while the loop runs.
    shifted = dataset(3000, 3.0, seed=4)
    shifted.to_csv(data / "train.csv", index=False)
    results = {"ok": 0, "failed": 0}
    errors: list[str] = []
    stop = threading.Event()

    def client() -> None:
        live = dataset(20_000, 3.0, seed=5)
        i = 0
        with httpx.Client(timeout=10) as session:
            while not stop.is_set():
                body = {"instances": rows(live.iloc[i : i + 20])}
                i = (i + 20) % (len(live) - 20)
                try:
                    res = session.post(f"{url}/v1/models/shifty:predict", json=body)
                    ok = res.status_code == 200
                    if not ok:
                        errors.append(res.text[:200])
                except httpx.HTTPError as exc:
                    ok = False
                    errors.append(repr(exc))
                results["ok" if ok else "failed"] += 1

    thread = threading.Thread(target=client)
    thread.start()
    try:
        eventually(
            lambda: drift_reason(loop) == "DriftDetected",
            timeout=90,
            what="DataDrift DriftDetected",
        )
        drift = loop.status("msvc", "shifty")["drift"]
        assert {"x0", "x2"} <= set(drift["driftedFeatures"]), drift
        assert "x1" not in drift["driftedFeatures"] and drift["drifted"] is True

        def promoted_v2() -> dict[str, Any]:
            status = loop.status("tj", "shifty")
            seen = {
                k: status.get(k)
                for k in ("phase", "latestVersion", "promotedVersion", "history", "conditions")
            }
            if any(
                h.get("version") == 2 and h.get("phase") == "Rejected"
                for h in status.get("history") or []
            ):
                raise RuntimeError(f"version 2 was rejected: {seen}")  # no use waiting
            assert status.get("promotedVersion") == 2, seen
            return status

        tj = eventually(promoted_v2, timeout=300, what="version 2 trained on drift, promoted")
        v2 = tj["history"][-1]
        assert v2["trigger"] == "drift" and v2["decidedBy"] == "gate"
        assert v2["baselineVersion"] == 1 and v2["score"] > v2["baselineScore"] + 0.01, v2
        assert v2["dataDigest"] != v1["dataDigest"]
        eventually(
            lambda: (
                loop.status("msvc", "shifty").get("modelVersion") == 2
                and loop.status("msvc", "shifty").get("phase") == "Ready"
            ),
            timeout=120,
            what="service rolled to version 2",
        )
        time.sleep(3)  # the old server drains and stops while requests keep coming
    finally:
        stop.set()
        thread.join(timeout=30)
    assert results["failed"] == 0, errors[:5]
    assert results["ok"] > 50

    # A deliberately worse spec: version 3 is trained, rejected, and not served.
    loop.apply(trainingjob(loop.root, max_depth=1))

    def rejected_v3() -> dict[str, Any] | None:
        status = loop.status("tj", "shifty")
        return (
            status
            if status.get("latestVersion") == 3 and status.get("phase") == "Succeeded"
            else None
        )

    tj = eventually(rejected_v3, timeout=300, what="version 3 trained")
    v3 = tj["history"][-1]
    assert v3["phase"] == "Rejected" and v3["trigger"] == "spec", v3
    assert v3["score"] < v3["baselineScore"] and v3["baselineVersion"] == 2
    assert tj["promotedVersion"] == 2 and tj["model"]["version"] == 2
    time.sleep(3)
    assert loop.status("msvc", "shifty")["modelVersion"] == 2
    events = loop.kube.kubectl(
        "get",
        "events",
        "-n",
        loop.namespace,
        "--field-selector",
        "involvedObject.name=shifty",
        "-o",
        "jsonpath={.items[*].reason}",
    )
    assert "Rejected" in events and "Promoted" in events and "DriftDetected" in events

    # A person rolls back to version 1 on purpose; the status says who decided.
    loop.kube.kubectl(
        "annotate", "tj", "shifty", "-n", loop.namespace, "modelfactory.dev/promote=1"
    )
    eventually(
        lambda: loop.status("tj", "shifty").get("promotedVersion") == 1,
        timeout=60,
        what="version 1 promoted by hand",
    )
    assert loop.status("tj", "shifty")["promotion"]["decidedBy"].startswith("annotation")
    eventually(
        lambda: loop.status("msvc", "shifty").get("modelVersion") == 1,
        timeout=120,
        what="service back on version 1",
    )


def scheduled_runs(loop: Flow) -> list[dict[str, Any]]:
    return [
        h
        for h in loop.status("tj", "nightly").get("history") or []
        if h.get("trigger") == "schedule"
    ]


def test_a_schedule_fires_and_fires_once_after_the_operator_was_down(loop: Flow) -> None:
    job = {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "nightly"},
        "spec": {
            "dataset": {"uri": "sklearn://iris"},
            "model": {
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 300},
            },
            "tuning": {"metric": "accuracy", "trials": 1, "cvFolds": 2},
            "output": {"storageUri": f"file://{loop.root}/models/nightly"},
            "retrain": {"schedule": {"cron": "* * * * *"}, "minIntervalSeconds": 0},
        },
    }
    loop.apply(job)
    loop.wait_phase("tj", "nightly", "Succeeded")  # the first version, for the spec
    before = len(scheduled_runs(loop))
    last = loop.status("tj", "nightly").get("lastScheduleTime") or ""

    # Down across two scheduled times (just after the next minute has begun, and one more).
    loop.operator.stop()
    now = dt.datetime.now(dt.UTC)
    next_minute = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    time.sleep((next_minute - now).total_seconds() + 65)
    loop.operator.start()

    stamp = "%Y-%m-%dT%H:%M:%SZ"

    def fired() -> set[str]:
        messages = loop.kube.kubectl(
            "get",
            "events",
            "-n",
            loop.namespace,
            "--field-selector",
            "involvedObject.name=nightly",
            "-o",
            "jsonpath={range .items[*]}{.message}{'\\n'}{end}",
        )
        return {
            line.rsplit(" ", 1)[-1]
            for line in messages.splitlines()
            if line.startswith("retraining for the schedule at ")
        }

    def caught_up() -> dict[str, Any] | None:
        status = loop.status("tj", "nightly")
        done = len(scheduled_runs(loop)) > before and status.get("phase") == "Succeeded"
        second = (next_minute + dt.timedelta(minutes=1)).strftime(stamp)
        return status if done and second in fired() else None

    status = eventually(caught_up, timeout=240, what="the missed schedule run")
    assert status["lastScheduleTime"] > last
    # The first time missed while down collapsed into the second: one run, not two.
    assert next_minute.strftime(stamp) not in fired(), fired()
