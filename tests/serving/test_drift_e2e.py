"""Drift on live traffic, in a real server: the report and window over HTTP, a summed window
evaluated on request, and the answers when there is nothing to compare with."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from .conftest import Artifact, Server, add_profile, numeric_data, numeric_features, write_artifact

pytestmark = pytest.mark.e2e
FEATURES = 4
FAST = {
    "drift_evaluate_every": 200,
    "drift_evaluate_seconds": 1,
    "drift_min_samples": 200,
    "drift_max_rows_per_second": 100_000,
}


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    X, y = numeric_data(n=2_000, n_features=FEATURES)
    artifact = write_artifact(
        tmp_path_factory.mktemp("drift") / "1",
        LogisticRegression(),
        X,
        y,
        numeric_features(FEATURES),
        "binary",
    )
    return add_profile(artifact, y)


def send(server: Server, batches: int, shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with server.client() as client:
        for _ in range(batches):
            rows = rng.normal(size=(100, FEATURES))
            rows[:, 2] += shift
            body = {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [100, FEATURES],
                        "datatype": "FP64",
                        "data": rows.ravel().tolist(),
                    }
                ]
            }
            r = client.post(f"{server.url}/v2/models/{server.name}/infer", json=body)
            assert r.status_code == 200, r.text


def report_after(server: Server, samples: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        state = httpx.get(f"{server.url}/v2/models/{server.name}/drift").json()
        report = state.get("report")
        if report is not None and report["samples"] >= samples:
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(module_server: Callable[..., Server], profiled: Artifact) -> Server:
    return module_server(
        "m", profiled.uri, profiled.digest, drift_window=1_000, drift_share=0.25, **FAST
    )


def test_live_drift_is_reported_and_a_summed_window_evaluated(server: Server) -> None:
    send(server, 5, shift=0.0, seed=1)
    calm = report_after(server, 500)
    assert calm["enabled"] and calm["model_version"] == "1"
    assert calm["report"]["sufficient"] and not calm["report"]["drifted"], calm["report"]

    send(server, 10, shift=3.0, seed=2)  # the window (1,000 rows) now holds only shifted rows
    state = report_after(server, 1_000)
    deadline = time.monotonic() + 30
    while not state["report"]["drifted"] and time.monotonic() < deadline:
        time.sleep(0.5)
        state = report_after(server, 1_000)
    assert state["report"]["drifted"] and state["report"]["driftedFeatures"] == ["x2"]
    window = state["window"]
    assert window["samples"] == 1_000 and sum(window["counts"]["x2"]) == 1_000

    # Two replicas' windows, summed by the operator, scored by one server.
    summed = {
        **window,
        "samples": 2_000,
        "counts": {f: [2 * c for c in v] for f, v in window["counts"].items()},
        "prediction_counts": [2 * c for c in window["prediction_counts"]],
    }
    r = httpx.post(f"{server.url}/v2/models/m/drift/evaluate", json=summed)
    assert r.status_code == 200 and r.json()["driftedFeatures"] == ["x2"], r.text

    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'modelfactory_drift_detected{model="m",version="1"} 1.0' in metrics
    assert 'modelfactory_drift_samples_total{model="m",version="1"} 1500.0' in metrics


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"[]", "JSON object"),
        (b'{"samples": 5, "counts": {"x0": [1, 2]}}', "no counts for feature"),
        (b"not json", ""),
    ],
)
def test_a_window_that_does_not_fit_is_a_400(server: Server, body: bytes, problem: str) -> None:
    r = httpx.post(f"{server.url}/v2/models/m/drift/evaluate", content=body)
    assert r.status_code == 400 and problem in r.json()["error"], r.text


def test_too_large_a_window_is_a_413(server: Server) -> None:
    r = httpx.post(
        f"{server.url}/v2/models/m/drift/evaluate", content=b"[" + b"1," * 9_000_000 + b"1]"
    )
    assert r.status_code == 413, r.text


def test_without_a_profile_or_switched_off_drift_says_why(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    X, y = numeric_data(n_features=FEATURES)
    plain = write_artifact(
        tmp_path / "1", LogisticRegression(), X, y, numeric_features(FEATURES), "binary"
    )
    server = start_server("m", plain.uri, plain.digest)
    state = httpx.get(f"{server.url}/v2/models/m/drift").json()
    assert not state["enabled"] and "no reference profile" in state["reason"]
    r = httpx.post(f"{server.url}/v2/models/m/drift/evaluate", json={"samples": 0})
    assert r.status_code == 404 and "no reference profile" in r.json()["error"]
    assert httpx.get(f"{server.url}/v2/models/other/drift").status_code == 404


def test_drift_can_be_switched_off(start_server: Callable[..., Server], profiled: Artifact) -> None:
    server = start_server("m", profiled.uri, profiled.digest, drift_enabled="false")
    send(server, 1, shift=0.0, seed=3)
    state = httpx.get(f"{server.url}/v2/models/m/drift").json()
    assert not state["enabled"] and "MF_DRIFT_ENABLED=false" in state["reason"]
