"""Drift of a whole batch against the model's reference profile, by the server's maths.

Every row is binned as it streams through the driver (modelfactory_artifacts.drift's Binner:
the same bins, "other" and "missing" as the server's window); each numeric feature also keeps
a uniform reservoir of SAMPLE_ROWS values for the KS test. Memory stays fixed at any input size.
The verdict is modelfactory_artifacts.drift.evaluate with the server's default thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelfactory_artifacts.drift import Binner, DriftReport, Reservoir, Thresholds, evaluate
from modelfactory_artifacts.profile import (
    SAMPLE_ROWS,
    NumericProfile,
    ReferenceProfile,
    numeric_values,
)


class BatchDrift:
    def __init__(
        self,
        profile: ReferenceProfile,
        thresholds: Thresholds | None = None,
        sample_rows: int = SAMPLE_ROWS,
        seed: int = 0,
    ) -> None:
        self.profile = profile
        self.thresholds = thresholds or Thresholds()
        self.rows = 0
        rng = np.random.default_rng(seed)
        self._binners = {n: Binner(p) for n, p in profile.features.items()}
        self.counts = {n: np.zeros(b.bins, "int64") for n, b in self._binners.items()}
        self._prediction = None if profile.predictions is None else Binner(profile.predictions)
        self.prediction_counts = (
            None if self._prediction is None else np.zeros(self._prediction.bins, "int64")
        )
        self.reservoirs = {
            n: Reservoir(sample_rows, rng=rng)
            for n, p in profile.features.items()
            if isinstance(p, NumericProfile)
        }

    @property
    def features(self) -> list[str]:
        return list(self._binners)

    def add(self, columns: Mapping[str, Any], predictions: Any, rows: int) -> None:
        """One batch: each profiled feature's values, and the model's predictions."""
        for name, binner in self._binners.items():
            values = columns[name]
            self.counts[name] += binner(values)
            if name in self.reservoirs:
                self.reservoirs[name].add(numeric_values(values))
        if self._prediction is not None and self.prediction_counts is not None:
            self.prediction_counts += self._prediction(predictions)
        self.rows += rows

    def evaluate(self) -> DriftReport:
        samples = {n: r.values for n, r in self.reservoirs.items()}
        return evaluate(
            self.profile,
            self.counts,
            self.rows,
            self.thresholds,
            self.prediction_counts,
            samples,
        )


def summary(report: DriftReport) -> dict[str, Any]:
    """What the result carries: the verdict, its score (the share of drifted features) and
    which features drifted."""
    return {
        "drifted": report.drifted,
        "score": report.share,
        "driftedFeatures": report.drifted_features,
        "samples": report.samples,
        "sufficient": report.sufficient,
    }
