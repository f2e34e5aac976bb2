"""Drift of live data from a reference profile, computed with numpy and scipy per batch.

Counting is cheap and happens on every batch: each feature's values fall into the profile's bins
(one `searchsorted` per numeric column, one index lookup per categorical one), and the counts
add up in a sliding window. Scoring happens now and then, on the window's counts:

- numeric features: population stability index (PSI) over the bins plus a "missing" bin;
- categorical features: Jensen-Shannon distance over the categories, "other" and "missing";
- where a reference sample exists, a two-sample Kolmogorov-Smirnov test of a sample of the
  window's live values against it (numeric features), its p-value Bonferroni-corrected over the
  features tested so that more features do not mean more false alarms;
- the dataset is drifted when the share of drifted features reaches a threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from modelfactory_artifacts.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    category_labels,
    numeric_values,
)

# Proportions are floored at this before logarithms: an empty bin on either side must not make
# PSI infinite.
EPSILON = 1e-4


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2  # the usual "significant shift" reading of PSI
    jensen_shannon: float = 0.1
    ks_pvalue: float = 0.01
    drift_share: float = 0.5  # share of drifted features that makes the dataset drifted
    min_samples: int = 500


def reference_distribution(profile: NumericProfile | CategoricalProfile) -> np.ndarray:
    """Expected shares of each bin (categories, "other") and, last, of missing values."""
    present = np.asarray(profile.proportions, dtype="float64") * (1 - profile.missingRate)
    return np.append(present, profile.missingRate)


def bin_count(profile: NumericProfile | CategoricalProfile) -> int:
    return len(reference_distribution(profile))


class Binner:
    """Counts values into one feature's bins (the profile's, plus "other" for categories and
    "missing" last), with the profile's edges and categories built once: a window calls it for
    every batch."""

    def __init__(self, profile: NumericProfile | CategoricalProfile) -> None:
        self.bins = bin_count(profile)
        self.edges: np.ndarray | None = None
        self.categories: pd.Index | None = None
        if isinstance(profile, NumericProfile):
            self.edges = np.asarray(profile.edges, dtype="float64")
        else:
            self.categories = pd.Index(profile.categories)

    def __call__(self, values: Any) -> np.ndarray:
        if self.edges is not None:
            data = numeric_values(values)
            index = np.searchsorted(self.edges, data, side="left")
            index[np.isnan(data)] = self.bins - 1
        else:
            index = self._category_index(values)
        return np.bincount(index, minlength=self.bins)

    def _category_index(self, values: Any) -> np.ndarray:
        # Each distinct value is named once (a batch holds few), then the codes are mapped.
        assert self.categories is not None
        if isinstance(values, np.ndarray) and values.dtype.kind in "biu":
            # Class labels as integers or booleans (predictions, mostly): no missing values.
            uniques, codes = np.unique(values, return_inverse=True)
            found = self.categories.get_indexer([str(u) for u in uniques.tolist()])
        else:
            codes, uniques = pd.factorize(pd.Series(values), use_na_sentinel=True)
            found = self.categories.get_indexer(category_labels(np.asarray(uniques)).fillna(""))
        found[found < 0] = len(self.categories)  # other
        return np.where(codes < 0, self.bins - 1, found[codes] if len(found) else 0)


def count(profile: NumericProfile | CategoricalProfile, values: Any) -> np.ndarray:
    return Binner(profile)(values)


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


def psi(expected: np.ndarray, observed_counts: np.ndarray) -> float:
    e = np.maximum(expected, EPSILON)
    a = np.maximum(_shares(observed_counts), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(expected: np.ndarray, observed_counts: np.ndarray) -> float:
    return float(jensenshannon(expected, _shares(observed_counts), base=2))


class Reservoir:
    """A uniform sample of at most `size` of all values added (Vitter's algorithm R, a batch at
    a time)."""

    def __init__(self, size: int, seed: int = 0, rng: np.random.Generator | None = None) -> None:
        self.size = size
        self.values = np.empty(0, dtype="float64")
        self.seen = 0
        self.rng = rng if rng is not None else np.random.default_rng(seed)

    def add(self, values: np.ndarray) -> None:
        values = values[np.isfinite(values)]  # kept for JSON and the KS test: finite only
        room = self.size - len(self.values)
        if room > 0:
            self.values = np.concatenate([self.values, values[:room]])
            self.seen += min(room, len(values))
            values = values[room:]
        if not len(values):
            return
        positions = self.seen + 1 + np.arange(len(values))
        slots = (self.rng.random(len(values)) * positions).astype("int64")
        keep = slots < self.size
        # Later values win over earlier ones for the same slot, as when added one by one.
        self.values[slots[keep]] = values[keep]
        self.seen += len(values)


@dataclass
class FeatureDrift:
    name: str
    method: str
    score: float
    drifted: bool
    pvalue: float | None = None


@dataclass
class DriftReport:
    samples: int
    features: list[FeatureDrift] = field(default_factory=list)
    prediction: FeatureDrift | None = None
    share: float = 0.0
    drifted: bool = False
    sufficient: bool = True

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "sufficient": self.sufficient,
            "drifted": self.drifted,
            "share": self.share,
            "driftedFeatures": self.drifted_features,
            "features": [vars(f) for f in self.features],
            "prediction": None if self.prediction is None else vars(self.prediction),
        }


# Fewer values than this on either side: no two-sample test (its p-value says little).
KS_MIN_VALUES = 20


def score_column(
    name: str,
    profile: NumericProfile | CategoricalProfile,
    counts: np.ndarray,
    thresholds: Thresholds,
    live_sample: np.ndarray | None = None,
    reference_sample: np.ndarray | None = None,
    tests: int = 1,
) -> FeatureDrift:
    """One feature's drift; `tests` is how many features get a KS test (Bonferroni)."""
    expected = reference_distribution(profile)
    if isinstance(profile, CategoricalProfile):
        score = js_distance(expected, counts)
        return FeatureDrift(name, "jensen_shannon", score, score > thresholds.jensen_shannon)
    score = psi(expected, counts)
    drifted = score > thresholds.psi
    pvalue = None
    if _testable(live_sample) and _testable(reference_sample):
        # The asymptotic distribution: at ~1,000 values a side it agrees with the exact one
        # to well under the thresholds' precision, at a fraction of the cost (exact is
        # quadratic and would take most of an evaluation).
        pvalue = float(ks_2samp(reference_sample, live_sample, method="asymp").pvalue)
        drifted = drifted or pvalue < thresholds.ks_pvalue / max(tests, 1)
    return FeatureDrift(name, "psi", score, drifted, pvalue)


def _testable(values: np.ndarray | None) -> bool:
    return values is not None and len(values) >= KS_MIN_VALUES


def reference_sample(profile: ReferenceProfile, name: str) -> np.ndarray | None:
    """The training sample of a numeric feature, without missing values."""
    values = profile.sample.get(name)
    if values is None or not isinstance(profile.features.get(name), NumericProfile):
        return None
    data = np.asarray([np.nan if v is None else v for v in values], dtype="float64")
    return data[~np.isnan(data)]


def evaluate(
    profile: ReferenceProfile,
    counts: Mapping[str, np.ndarray],
    samples: int,
    thresholds: Thresholds | None = None,
    prediction_counts: np.ndarray | None = None,
    live_samples: Mapping[str, np.ndarray] | None = None,
) -> DriftReport:
    """The verdict on one window: `counts` per feature (from `count`), `samples` rows in it."""
    thresholds = thresholds or Thresholds()
    if samples < thresholds.min_samples:
        return DriftReport(samples=samples, sufficient=False)
    live_samples = live_samples or {}
    references = {name: reference_sample(profile, name) for name in profile.features}
    tests = sum(
        _testable(references[name]) and _testable(live_samples.get(name))
        for name in profile.features
    )
    features = [
        score_column(
            name,
            column,
            counts[name],
            thresholds,
            live_samples.get(name),
            references[name],
            tests,
        )
        for name, column in profile.features.items()
    ]
    share = sum(f.drifted for f in features) / len(features) if features else 0.0
    prediction = None
    if profile.predictions is not None and prediction_counts is not None:
        prediction = score_column("prediction", profile.predictions, prediction_counts, thresholds)
    return DriftReport(
        samples=samples,
        features=features,
        prediction=prediction,
        share=share,
        drifted=bool(features) and share >= thresholds.drift_share,
    )
