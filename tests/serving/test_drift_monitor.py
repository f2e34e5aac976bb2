"""The drift monitor beside the model: batches binned off the request path, a bounded queue,
evaluations every N rows or T seconds, metrics that carry the version."""

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import generate_latest

from modelfactory_artifacts.drift import Thresholds
from modelfactory_artifacts.profile import build_profile
from modelfactory_serving import drift_monitor
from modelfactory_serving.drift_monitor import DriftConfig, DriftMonitor
from modelfactory_serving.metrics import Metrics
from modelfactory_serving.model import Feature

pytestmark = pytest.mark.unit
RNG = np.random.default_rng(3)
FEATURES = tuple(Feature(f"x{i}", i, "numeric", "float64", "float", "FP64") for i in range(3))


def monitor(clock: Any = time.monotonic, **config: object) -> tuple[DriftMonitor, Metrics]:
    train = pd.DataFrame(RNG.normal(size=(2_000, 3)), columns=[f.name for f in FEATURES])
    profile = build_profile(
        train,
        {f.name: "numeric" for f in FEATURES},
        target=pd.Series(RNG.integers(0, 2, 2_000)),
        target_kind="categorical",
        predictions=RNG.integers(0, 2, 2_000),
    )
    metrics = Metrics("m", 32, None)
    settings = {"evaluate_every": 500, "thresholds": Thresholds(min_samples=300), **config}
    return DriftMonitor(
        profile,
        FEATURES,
        DriftConfig(**settings),
        "m",
        "4",
        metrics,  # type: ignore[arg-type]
        concat=np.concatenate,
        clock=clock,
    ), metrics


def rows(n: int, shift: float = 0.0) -> np.ndarray:
    data = RNG.normal(size=(n, 3))
    data[:, 1] += shift
    return data


def test_a_shifted_feature_is_found_and_exported_with_the_version() -> None:
    m, metrics = monitor()
    for _ in range(10):
        m.add(rows(100, shift=2.0), RNG.integers(0, 2, 100), 100)
    report = m.evaluate()
    assert report.drifted_features == ["x1"] and report.share == pytest.approx(1 / 3)
    assert not report.drifted  # one feature of three is below the default share of 0.5
    text = generate_latest(metrics.registry).decode()
    assert 'modelfactory_drift_feature_drifted{feature="x1",model="m",version="4"} 1.0' in text
    assert 'modelfactory_drift_samples_total{model="m",version="4"} 1000.0' in text
    assert 'method="psi"' in text and 'method="ks_pvalue"' in text
    state = m.state()
    assert state["report"]["driftedFeatures"] == ["x1"] and state["window"]["samples"] == 1000


def test_frame_batches_are_read_by_position() -> None:
    m, _ = monitor()
    data = rows(600, shift=3.0)
    m.add([data[:, 0], data[:, 1], data[:, 2]], RNG.integers(0, 2, 600), 600)
    assert m.evaluate().drifted_features == ["x1"]


def test_queued_batches_are_binned_together_as_one() -> None:
    m, _ = monitor()
    a, b = rows(3), rows(2)
    merged, predictions, n = m.merge([(a, np.array([0, 1, 0]), 3), (b, np.array([1, 1]), 2)])
    assert isinstance(merged, np.ndarray) and (merged == np.vstack([a, b])).all()
    assert predictions.tolist() == [0, 1, 0, 1, 1] and n == 5


def test_above_the_rate_cap_a_uniform_sample_is_binned() -> None:
    now = [0.0]
    m, _ = monitor(max_rows_per_second=400, clock=lambda: now[0])
    data = np.column_stack([np.arange(1_000.0)] * 3)
    # A burst after a quiet second: one second's worth is binned.
    thinned, predictions, n = m.thin(data, np.arange(1_000), 1_000)
    assert n == 400 and isinstance(thinned, np.ndarray) and thinned.shape == (400, 3)
    assert (thinned[:, 0] == predictions).all() and len(set(predictions)) == 400
    assert 400 < predictions.mean() < 600 and m.skipped == 600  # spread over the whole batch
    assert m.thin(data, np.arange(1_000), 1_000)[2] == 0  # nothing left this instant
    now[0] += 0.25  # one drain later: a quarter of the rate
    cols, _, n = m.thin([data[:, 0], data[:, 1]], np.arange(1_000), 1_000)
    assert n == 100 and (cols[0] == cols[1]).all()
    now[0] += 10.0  # the budget never grows past one second's worth
    assert m.thin(data[:50], np.arange(50), 50)[2] == 50
    assert m.thin(data, np.arange(1_000), 1_000)[2] == 350


def test_the_queue_is_bounded_in_rows_and_drops_are_counted(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(drift_monitor, "MAX_PENDING_ROWS", 1_000)
    m, metrics = monitor()  # not started: nothing drains the queue
    for _ in range(15):
        m.offer(rows(100), np.zeros(100), 100)
    assert m.dropped == 500
    assert (
        'modelfactory_drift_dropped_total{model="m"} 500.0'
        in generate_latest(metrics.registry).decode()
    )


def test_the_thread_evaluates_every_n_rows_and_after_t_seconds() -> None:
    m, _ = monitor(evaluate_every=400, evaluate_seconds=0.5, max_rows_per_second=100_000)
    m.start()
    try:
        for _ in range(4):
            m.offer(rows(100), np.zeros(100), 100)
        deadline = time.monotonic() + 10
        while m.report is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert m.report is not None and m.report.samples == 400
        # Fewer rows than evaluate_every: evaluated once evaluate_seconds have passed.
        m.offer(rows(50), np.zeros(50), 50)
        deadline = time.monotonic() + 10
        while m.report.samples == 400 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert m.report.samples == 450
    finally:
        m.stop()
