from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelfactory_api.artifact import FeatureInfo
from modelfactory_training.stats import (
    OTHER,
    categorical_stats,
    numeric_stats,
    reference_stats,
)

pytestmark = pytest.mark.unit


def test_numeric_stats_have_quantile_bins_covering_every_value() -> None:
    values = pd.Series(np.r_[np.arange(100.0), [np.nan, np.nan]])
    stats = numeric_stats(values)
    assert (stats["count"], stats["missing"]) == (102, 2)
    assert stats["mean"] == pytest.approx(49.5)
    assert stats["min"] == 0.0 and stats["max"] == 99.0
    assert len(stats["binEdges"]) == 11
    assert stats["binEdges"][0] == 0.0 and stats["binEdges"][-1] == 99.0
    assert sum(stats["binCounts"]) == 100
    assert all(8 <= c <= 12 for c in stats["binCounts"])


def test_constant_and_empty_columns() -> None:
    constant = numeric_stats(pd.Series([3.0] * 5))
    assert constant["binEdges"] == [3.0] and constant["binCounts"] == [5]
    empty = numeric_stats(pd.Series([np.nan, np.nan]))
    assert empty["missing"] == 2 and empty["binCounts"] == [] and empty["mean"] is None


def test_categorical_frequencies_fold_the_tail() -> None:
    values = pd.Series(["a"] * 5 + ["b"] * 3 + ["c", "d", None])
    stats = categorical_stats(values, limit=2)
    assert stats["frequencies"] == {"a": 5, "b": 3, OTHER: 2}
    assert (stats["count"], stats["missing"], stats["distinct"]) == (11, 1, 4)


def test_reference_stats_per_feature_kind() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "c": ["u", "v"], "f": [True, False]})
    features = [
        FeatureInfo(name="x", dtype="float64", kind="numeric"),
        FeatureInfo(name="c", dtype="object", kind="categorical"),
        FeatureInfo(name="f", dtype="bool", kind="boolean"),
    ]
    stats = reference_stats(frame, features)
    assert "binEdges" in stats["x"]
    assert stats["c"]["frequencies"] == {"u": 1, "v": 1}
    assert stats["f"]["frequencies"] == {"True": 1, "False": 1}
