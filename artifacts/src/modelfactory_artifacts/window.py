"""A sliding window of live data, binned against a reference profile, and its JSON form.

The window is kept as `segments` partial windows: each holds the bin counts of its rows and a
small uniform sample (a reservoir) of each numeric feature's values. When the newest segment is
full the oldest goes, so the window covers the last `size` rows (plus the segment being
filled) in fixed memory whatever the traffic, and the union of the segments' reservoirs is a
uniform sample of the window (not of all history, which would hide a recent shift).

A server writes its window as JSON (`snapshot`); the operator sums the windows of the replicas
and hands the sum back to a server, which reads it (`parse_window`) and evaluates it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelfactory_api.drift_window import SAMPLE_LIMIT, DriftWindow
from modelfactory_artifacts.drift import (
    Binner,
    DriftReport,
    Reservoir,
    Thresholds,
    bin_count,
    evaluate,
)
from modelfactory_artifacts.profile import (
    SAMPLE_ROWS,
    NumericProfile,
    ReferenceProfile,
    numeric_values,
)


class WindowError(ValueError):
    """A window handed in for evaluation does not fit the reference profile."""


@dataclass
class _Segment:
    counts: dict[str, np.ndarray]
    predictions: np.ndarray | None
    reservoirs: dict[str, Reservoir]
    rows: int = 0


@dataclass
class LiveWindow:
    profile: ReferenceProfile
    size: int = 10_000
    segments: int = 10
    sample_rows: int = SAMPLE_ROWS
    seed: int = 0
    _closed: deque[_Segment] = field(init=False)
    _current: _Segment = field(init=False)

    def __post_init__(self) -> None:
        self.segment_rows = max(1, self.size // self.segments)
        self._closed = deque(maxlen=self.segments)
        self._rng = np.random.default_rng(self.seed)  # one for every reservoir: cheaper
        self._binners = {n: Binner(p) for n, p in self.profile.features.items()}
        self._predictions = (
            None if self.profile.predictions is None else Binner(self.profile.predictions)
        )
        self._current = self._segment()

    @property
    def numeric(self) -> list[str]:
        return [n for n, p in self.profile.features.items() if isinstance(p, NumericProfile)]

    def _segment(self) -> _Segment:
        per_segment = max(1, self.sample_rows // self.segments)
        return _Segment(
            counts={n: np.zeros(b.bins, "int64") for n, b in self._binners.items()},
            predictions=(
                None if self._predictions is None else np.zeros(self._predictions.bins, "int64")
            ),
            reservoirs={n: Reservoir(per_segment, rng=self._rng) for n in self.numeric},
        )

    def add(self, columns: Mapping[str, Any], predictions: Any, rows: int) -> None:
        """One batch: `columns` maps each profiled feature to its values (anything numpy or
        pandas takes), `predictions` the model's outputs for the same rows (or None). A batch
        larger than the room left in the current segment is split at the segment's end, so the
        window keeps to its size."""
        start = 0
        while True:
            take = min(rows - start, self.segment_rows - self._current.rows)
            if start == 0 and take == rows:
                self._add(columns, predictions, rows)
                return
            part = slice(start, start + take)
            self._add(
                {n: np.asarray(v)[part] for n, v in columns.items()},
                None if predictions is None else np.asarray(predictions)[part],
                take,
            )
            start += take
            if start >= rows:
                return

    def _add(self, columns: Mapping[str, Any], predictions: Any, rows: int) -> None:
        segment = self._current
        for name, binner in self._binners.items():
            values = columns[name]
            segment.counts[name] += binner(values)
            if name in segment.reservoirs:
                segment.reservoirs[name].add(numeric_values(values))
        if segment.predictions is not None and self._predictions and predictions is not None:
            segment.predictions += self._predictions(predictions)
        segment.rows += rows
        if segment.rows >= self.segment_rows:
            self._closed.append(segment)
            self._current = self._segment()

    def _all(self) -> list[_Segment]:
        return [*self._closed, self._current]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self._all())

    def totals(self) -> tuple[int, dict[str, np.ndarray], np.ndarray | None, dict[str, np.ndarray]]:
        segments = self._all()
        counts = {n: sum(s.counts[n] for s in segments) for n in self.profile.features}
        predictions = (
            None
            if self._current.predictions is None
            else sum(s.predictions for s in segments if s.predictions is not None)
        )
        samples = {
            n: np.concatenate([s.reservoirs[n].values for s in segments]) for n in self.numeric
        }
        return self.rows, counts, predictions, samples  # type: ignore[return-value]

    def evaluate(self, thresholds: Thresholds) -> DriftReport:
        rows, counts, predictions, samples = self.totals()
        return evaluate(self.profile, counts, rows, thresholds, predictions, samples)

    def snapshot(self) -> DriftWindow:
        """The window as JSON: what the operator sums over replicas."""
        rows, counts, predictions, samples = self.totals()
        return {
            "samples": rows,
            "counts": {n: c.tolist() for n, c in counts.items()},
            "prediction_counts": None if predictions is None else predictions.tolist(),
            "sample": {n: v.tolist() for n, v in samples.items()},
        }


def _counts(name: str, value: Any, bins: int) -> np.ndarray:
    if not isinstance(value, list) or len(value) != bins:
        raise WindowError(f"counts of {name!r} must be a list of {bins} non-negative integers")
    try:
        data = np.asarray(value, dtype="int64")
    except (TypeError, ValueError, OverflowError):
        raise WindowError(f"counts of {name!r} must be integers") from None
    if (data < 0).any():
        raise WindowError(f"counts of {name!r} must not be negative")
    return data


def _sample(name: str, value: Any) -> np.ndarray:
    if not isinstance(value, list) or len(value) > SAMPLE_LIMIT:
        raise WindowError(
            f"the sample of {name!r} must be a list of at most {SAMPLE_LIMIT} numbers"
        )
    try:
        data = np.asarray(value, dtype="float64")
    except (TypeError, ValueError):
        raise WindowError(f"the sample of {name!r} must hold numbers") from None
    if data.ndim != 1:
        raise WindowError(f"the sample of {name!r} must be a flat list")
    return data[~np.isnan(data)]


def parse_window(
    profile: ReferenceProfile, data: Any
) -> tuple[int, dict[str, np.ndarray], np.ndarray | None, dict[str, np.ndarray]]:
    """A window's JSON (from `snapshot`, or summed over replicas), checked against the profile:
    every feature's counts, with the profile's number of bins."""
    if not isinstance(data, dict):
        raise WindowError("a window is a JSON object")
    rows = data.get("samples")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise WindowError("samples must be a non-negative integer")
    given = data.get("counts")
    if not isinstance(given, dict):
        raise WindowError("counts must map each feature to its bin counts")
    unknown = sorted(set(given) - set(profile.features))
    if unknown:
        raise WindowError(f"counts of features the model does not have: {unknown[:10]}")
    missing = sorted(set(profile.features) - set(given))
    if missing:
        raise WindowError(f"no counts for feature(s) {missing[:10]}")
    counts = {n: _counts(n, given[n], bin_count(p)) for n, p in profile.features.items()}
    predictions = None
    raw = data.get("prediction_counts")
    if raw is not None and profile.predictions is not None:
        predictions = _counts("prediction", raw, bin_count(profile.predictions))
    sample = data.get("sample") or {}
    if not isinstance(sample, dict):
        raise WindowError("sample must map numeric features to values")
    numeric = {n for n, p in profile.features.items() if isinstance(p, NumericProfile)}
    samples = {n: _sample(n, v) for n, v in sample.items() if n in numeric}
    return rows, counts, predictions, samples


def evaluate_window(profile: ReferenceProfile, data: Any, thresholds: Thresholds) -> DriftReport:
    rows, counts, predictions, samples = parse_window(profile, data)
    return evaluate(profile, counts, rows, thresholds, predictions, samples)
