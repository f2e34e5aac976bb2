"""Drift of live traffic, measured beside the model without slowing it down.

The batcher offers every predicted batch (its columns and predictions) to `DriftMonitor.offer`,
which only appends it to a queue bounded in rows: when the queue is full the rows are counted as
dropped, never waited for. A thread of its own bins the batches into a sliding window against the
artifact's reference profile (numpy, one call per feature and batch) and scores the window every
`evaluate_every` new rows or `evaluate_seconds`. The maths and the window's JSON form live in
modelfactory_artifacts (drift, window); this module is the plumbing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelfactory_artifacts.drift import DriftReport, Thresholds
from modelfactory_artifacts.profile import ReferenceProfile
from modelfactory_artifacts.window import LiveWindow, evaluate_window
from modelfactory_serving.metrics import Metrics
from modelfactory_serving.model import Batch, Feature
from modelfactory_serving.settings import Settings

log = logging.getLogger("modelfactory_serving.drift")

# Rows waiting to be binned: beyond this, batches are dropped (and counted), so a burst the
# thread cannot keep up with costs neither memory nor latency.
MAX_PENDING_ROWS = 50_000
# The thread bins what has queued up at most this often: one numpy call per feature for many
# batches, instead of one per batch, keeps its share of the interpreter small under load.
DRAIN_SECONDS = 0.25
PREDICTION = "(prediction)"


@dataclass(frozen=True)
class DriftConfig:
    enabled: bool = True
    window: int = 10_000
    evaluate_every: int = 1_000
    evaluate_seconds: float = 30.0
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_settings(cls, s: Settings) -> DriftConfig:
        return cls(
            enabled=s.drift_enabled,
            window=s.drift_window,
            evaluate_every=s.drift_evaluate_every,
            evaluate_seconds=s.drift_evaluate_seconds,
            thresholds=Thresholds(
                psi=s.drift_psi,
                jensen_shannon=s.drift_jensen_shannon,
                ks_pvalue=s.drift_ks_pvalue,
                drift_share=s.drift_share,
                min_samples=s.drift_min_samples,
            ),
        )


def merge(taken: list[tuple[Batch, np.ndarray, int]]) -> tuple[Batch, np.ndarray, int]:
    """Queued batches as one: rows stacked, column by column for list batches."""
    if len(taken) == 1:
        return taken[0]
    batches = [b for b, _, _ in taken]
    predictions = np.concatenate([p for _, p, _ in taken])
    rows = sum(r for _, _, r in taken)
    if all(isinstance(b, np.ndarray) for b in batches):
        return np.concatenate(batches), predictions, rows  # type: ignore[arg-type]
    columns = [np.concatenate(parts) for parts in zip(*batches, strict=True)]
    return columns, predictions, rows


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class DriftMonitor:
    def __init__(
        self,
        profile: ReferenceProfile,
        features: tuple[Feature, ...],
        config: DriftConfig,
        model: str,
        version: str,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.config = config
        self.model = model
        self.version = version
        self.metrics = metrics
        self.clock = clock
        # Profiled features and where each is in a batch (matrix column or list position).
        self.columns = [(f.name, f.index) for f in features if f.name in profile.features]
        self.window = LiveWindow(profile, size=config.window)
        self.report: DriftReport | None = None
        self.evaluated_at: str | None = None
        self.dropped = 0
        self._pending: deque[tuple[Batch, np.ndarray, int]] = deque()
        self._pending_rows = 0
        self._wake = threading.Condition()
        self._lock = threading.Lock()  # the window and the report
        self._new_rows = 0
        self._last_evaluation = clock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._samples = metrics.drift_samples.labels(model, version) if metrics else None

    # ------------------------------------------------------------------ the batcher's side
    def offer(self, batch: Batch, predictions: np.ndarray, rows: int) -> None:
        """Hand over a predicted batch; never blocks on the binning."""
        with self._wake:
            if self._pending_rows + rows > MAX_PENDING_ROWS:
                self.dropped += rows
                if self.metrics is not None:
                    self.metrics.drift_dropped.inc(rows)
                return
            self._pending.append((batch, predictions, rows))
            self._pending_rows += rows
            self._wake.notify()

    # ------------------------------------------------------------------ the thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="drift", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._pending and not self._stopping:
                    self._wake.wait(timeout=self.config.evaluate_seconds)
                if self._stopping:
                    return
                taken = list(self._pending)
                self._pending.clear()
                self._pending_rows = 0
            try:
                if taken:
                    self.add(*merge(taken))
                self.maybe_evaluate()
            except Exception:  # a bad batch must not end drift monitoring
                log.exception("drift monitoring failed on a batch")
            with self._wake:
                if not self._stopping:
                    self._wake.wait_for(lambda: self._stopping, timeout=DRAIN_SECONDS)

    def add(self, batch: Batch, predictions: np.ndarray, rows: int) -> None:
        if isinstance(batch, np.ndarray):
            columns = {name: batch[:, i] for name, i in self.columns}
        else:
            columns = {name: batch[i] for name, i in self.columns}
        with self._lock:
            self.window.add(columns, predictions, rows)
            self._new_rows += rows
        if self._samples is not None:
            self._samples.inc(rows)

    def maybe_evaluate(self) -> None:
        due = self._new_rows >= self.config.evaluate_every or (
            self._new_rows and self.clock() - self._last_evaluation >= self.config.evaluate_seconds
        )
        if due:
            self.evaluate()

    def evaluate(self) -> DriftReport:
        with self._lock:
            report = self.window.evaluate(self.config.thresholds)
            self.report, self.evaluated_at = report, utc_now()
            self._new_rows = 0
            self._last_evaluation = self.clock()
        self._export(report)
        return report

    def _export(self, report: DriftReport) -> None:
        m = self.metrics
        if m is None:
            return
        m.drift_evaluations.labels(self.model, self.version).inc()
        if not report.sufficient:
            return
        key = (self.model, self.version)
        scored = [*report.features, *([report.prediction] if report.prediction else [])]
        for f in scored:
            name = PREDICTION if f is report.prediction else f.name
            m.drift_score.labels(*key, name, f.method).set(f.score)
            if f.pvalue is not None:
                m.drift_score.labels(*key, name, "ks_pvalue").set(f.pvalue)
            m.drift_feature_drifted.labels(*key, name).set(int(f.drifted))
        m.drift_share.labels(*key).set(report.share)
        m.drift_detected.labels(*key).set(int(report.drifted))

    # ------------------------------------------------------------------ the routes' side
    def state(self) -> dict[str, Any]:
        """The report and the window, for GET /v2/models/{name}/drift."""
        with self._lock:
            window = self.window.snapshot()
            report = None if self.report is None else self.report.as_dict()
            evaluated_at = self.evaluated_at
        return {
            "enabled": True,
            "reason": None,
            "report": report,
            "evaluated_at": evaluated_at,
            "dropped": self.dropped,
            "window": window,
        }

    def evaluate_given(self, window: Any) -> dict[str, Any]:
        """A window summed over replicas (the operator's), scored with this server's profile
        and thresholds. Raises WindowError when it does not fit the profile."""
        return evaluate_window(self.profile, window, self.config.thresholds).as_dict()
