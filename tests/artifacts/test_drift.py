"""Drift maths: counts per batch, PSI / Jensen-Shannon / KS per window, the dataset verdict."""

import numpy as np
import pandas as pd
import pytest

from modelfactory_artifacts import drift
from modelfactory_artifacts.profile import build_profile, profile_categorical, profile_numeric

pytestmark = pytest.mark.unit
RNG = np.random.default_rng(7)


def window_psi(profile, values) -> float:  # type: ignore[no-untyped-def]
    return drift.psi(drift.reference_distribution(profile), drift.count(profile, values))


def test_counts_land_in_open_outer_bins_and_missing_last() -> None:
    p = profile_numeric(np.arange(100, dtype=float))
    counts = drift.count(p, np.array([-1e9, -np.inf, 1e9, np.inf, np.nan, 50.0]))
    assert counts[0] == 2 and counts[-2] == 2 and counts[-1] == 1 and counts.sum() == 6


def test_the_training_data_itself_does_not_drift() -> None:
    values = RNG.normal(size=20_000)
    p = profile_numeric(values)
    assert window_psi(p, values) < 0.01
    assert window_psi(p, RNG.normal(size=5_000)) < 0.05


@pytest.mark.parametrize("shift, drifted", [(0.0, False), (0.5, True), (1.0, True)])
def test_a_mean_shift_raises_psi(shift: float, drifted: bool) -> None:
    p = profile_numeric(RNG.normal(size=20_000))
    score = window_psi(p, RNG.normal(loc=shift, size=5_000))
    assert (score > drift.Thresholds().psi) is drifted, score


def test_more_missing_values_are_drift() -> None:
    p = profile_numeric(RNG.normal(size=10_000))
    live = RNG.normal(size=5_000)
    live[:2_000] = np.nan
    assert window_psi(p, live) > drift.Thresholds().psi


def test_categories_drift_by_jensen_shannon() -> None:
    p = profile_categorical(RNG.choice(["a", "b", "c"], 10_000, p=[0.6, 0.3, 0.1]))
    same = drift.count(p, RNG.choice(["a", "b", "c"], 5_000, p=[0.6, 0.3, 0.1]))
    moved = drift.count(p, RNG.choice(["a", "b", "z"], 5_000, p=[0.2, 0.3, 0.5]))
    expected = drift.reference_distribution(p)
    assert drift.js_distance(expected, same) < 0.05
    assert drift.js_distance(expected, moved) > drift.Thresholds().jensen_shannon
    assert moved[len(p.categories)] > 0  # the unseen "z" counts as other


def test_the_reservoir_is_bounded_and_uniform() -> None:
    reservoir = drift.Reservoir(size=1_000, seed=0)
    for start in range(0, 100_000, 500):
        reservoir.add(np.arange(start, start + 500, dtype=float))
    assert len(reservoir.values) == 1_000 and reservoir.seen == 100_000
    # A uniform sample of 0..99,999: its mean is near 50,000 (sd of the mean ~ 913).
    assert abs(reservoir.values.mean() - 50_000) < 4_000


def test_evaluate_names_the_drifted_features_and_the_verdict() -> None:
    n = 5_000
    train = pd.DataFrame(
        {"a": RNG.normal(size=n), "b": RNG.normal(size=n), "c": RNG.choice(["x", "y"], n)}
    )
    profile = build_profile(train, {"a": "numeric", "b": "numeric", "c": "categorical"})
    live = pd.DataFrame(
        {
            "a": RNG.normal(loc=1.0, size=2_000),
            "b": RNG.normal(size=2_000),
            "c": RNG.choice(["x", "y"], 2_000),
        }
    )
    counts = {name: drift.count(profile.features[name], live[name]) for name in live}
    samples = {"a": live["a"].to_numpy()[:1000], "b": live["b"].to_numpy()[:1000]}
    report = drift.evaluate(profile, counts, 2_000, live_samples=samples)
    assert report.drifted_features == ["a"]
    assert report.share == pytest.approx(1 / 3) and not report.drifted
    a = report.features[0]
    assert a.pvalue is not None and a.pvalue < 0.01
    strict = drift.evaluate(profile, counts, 2_000, drift.Thresholds(drift_share=0.3))
    assert strict.drifted
    few = drift.evaluate(profile, counts, 100)
    assert not few.sufficient and not few.drifted and few.as_dict()["samples"] == 100
