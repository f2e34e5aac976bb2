"""The reference profile: bins with open outer edges, top-K categories, a bounded sample."""

import numpy as np
import pandas as pd
import pytest

from modelfactory_artifacts.profile import (
    NUMERIC_BINS,
    ReferenceProfile,
    build_profile,
    profile_categorical,
    profile_numeric,
)

pytestmark = pytest.mark.unit


def test_numeric_bins_are_fine_quantiles_with_open_outer_edges() -> None:
    values = np.random.default_rng(0).normal(size=10_000)
    p = profile_numeric(values)
    assert len(p.proportions) == len(p.edges) + 1 >= NUMERIC_BINS
    assert sum(p.proportions) == pytest.approx(1.0)
    assert max(p.proportions) == pytest.approx(1 / NUMERIC_BINS, abs=0.002)
    assert p.missingRate == 0 and p.min == values.min() and p.max == values.max()


def test_infinities_are_extreme_values_not_missing() -> None:
    p = profile_numeric(pd.Series([1.0, 2.0, 3.0, np.inf, -np.inf, np.nan, None, "x"]))
    assert p.count == 8
    assert p.missingRate == pytest.approx(3 / 8)  # NaN, None and a non-number
    assert p.proportions[0] > 0 and p.proportions[-1] > 0
    assert p.max == 3.0 and p.min == 1.0  # statistics of the finite values


def test_a_constant_or_empty_column_profiles() -> None:
    constant = profile_numeric([5.0] * 10)
    # One cut at the value: a live value above it lands in the (empty) upper bin.
    assert constant.edges == [5.0] and constant.proportions == [1.0, 0.0]
    empty = profile_numeric([np.nan, np.nan])
    assert empty.missingRate == 1.0 and empty.proportions == []


def test_categories_keep_the_top_k_and_other() -> None:
    values = ["a"] * 50 + ["b"] * 30 + ["c"] * 15 + ["d"] * 5 + [None] * 10
    p = profile_categorical(values, top=2)
    assert p.categories == ["a", "b"]
    assert p.proportions == pytest.approx([0.5, 0.3, 0.2])
    assert p.missingRate == pytest.approx(10 / 110) and p.distinct == 4


def test_build_profile_holds_target_predictions_and_a_bounded_sample() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=5000), "colour": rng.choice(["r", "g"], 5000)})
    target = pd.Series(rng.integers(0, 2, 5000))
    profile = build_profile(
        frame,
        {"x": "numeric", "colour": "categorical"},
        target=target,
        target_kind="categorical",
        predictions=np.zeros(300, dtype=int),
    )
    assert profile.rows == 5000
    assert profile.target is not None and profile.target.kind == "categorical"
    assert profile.predictions is not None and profile.predictions.categories == ["0"]
    assert len(profile.sample["x"]) == len(profile.sample["colour"]) == 1000
    assert set(profile.sample["colour"]) == {"r", "g"}
    # It travels as JSON inside the artifact's metadata.
    assert ReferenceProfile.model_validate_json(profile.model_dump_json()) == profile
