"""Drift of live traffic, measured beside the model without slowing it down.

The batcher offers every predicted batch (its columns and predictions) to `DriftMonitor.offer`,
which only appends it to a queue bounded in rows: when the queue is full the rows are counted as
dropped, never waited for. A thread of its own wakes every DRAIN_SECONDS, bins what has queued up
into a sliding window against the artifact's reference profile (numpy, one call per feature for
all of it; above `max_rows_per_second`, a uniform sample of it) and scores the window every
`evaluate_every` new rows or `evaluate_seconds`, at most once a second and within 1 % of a core.
The maths and the window's JSON form live in modelfactory_artifacts (drift, window); this module
is the plumbing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelfactory_api.timestamps import rfc3339
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
# The thread wakes this often and bins what has queued up: one numpy call per feature for many
# batches, instead of one per batch, and no wake-up per batch (each would take the GIL from the
# event loop), keep its share of the interpreter small under load.
DRAIN_SECONDS = 0.25
# Evaluations (a KS test per numeric feature) come at most once a second, and take at most this
# share of the thread's time whatever the traffic: after one that took 25 ms, the next waits 5 s.
MIN_EVALUATION_SECONDS = 1.0
MAX_EVALUATION_SHARE = 0.005
PREDICTION = "(prediction)"


@dataclass(frozen=True)
class DriftConfig:
    enabled: bool = True
    window: int = 10_000
    evaluate_every: int = 1_000
    evaluate_seconds: float = 30.0
    max_rows_per_second: int = 1_000
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_settings(cls, s: Settings) -> DriftConfig:
        return cls(
            enabled=s.drift_enabled,
            window=s.drift_window,
            evaluate_every=s.drift_evaluate_every,
            evaluate_seconds=s.drift_evaluate_seconds,
            max_rows_per_second=s.drift_max_rows_per_second,
            thresholds=Thresholds(
                psi=s.drift_psi,
                jensen_shannon=s.drift_jensen_shannon,
                ks_pvalue=s.drift_ks_pvalue,
                drift_share=s.drift_share,
                min_samples=s.drift_min_samples,
            ),
        )


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
        *,
        concat: Callable[[Sequence[Batch]], Batch],
    ) -> None:
        self.profile = profile
        self.config = config
        self.model = model
        self.version = version
        self.metrics = metrics
        self.clock = clock
        self.concat = concat  # the runtime's: stacks batches of its own layout
        # Profiled features and where each is in a batch (matrix column or list position).
        self.columns = [(f.name, f.index) for f in features if f.name in profile.features]
        self.window = LiveWindow(profile, size=config.window)
        self.report: DriftReport | None = None
        self.evaluated_at: str | None = None
        self.dropped = 0
        self.skipped = 0  # rows left out of the window by the rate cap
        self._rng = np.random.default_rng()
        self._pending: deque[tuple[Batch, np.ndarray, int]] = deque()
        self._pending_rows = 0
        self._queue_lock = threading.Lock()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the window and the report
        self._new_rows = 0
        self._last_evaluation = clock()
        self._budget = float(config.max_rows_per_second)  # rows that may be binned now
        self._budget_at = clock()
        self._evaluation_seconds = 0.0
        self._thread: threading.Thread | None = None
        self._samples = metrics.drift_samples.labels(model, version) if metrics else None

    # ------------------------------------------------------------------ the batcher's side
    def offer(self, batch: Batch, predictions: np.ndarray, rows: int) -> None:
        """Hand over a predicted batch; never blocks on the binning."""
        with self._queue_lock:
            if self._pending_rows + rows > MAX_PENDING_ROWS:
                self.dropped += rows
                if self.metrics is not None:
                    self.metrics.drift_dropped.inc(rows)
                return
            self._pending.append((batch, predictions, rows))
            self._pending_rows += rows

    # ------------------------------------------------------------------ the thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="drift", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(DRAIN_SECONDS):
            with self._queue_lock:
                taken = list(self._pending)
                self._pending.clear()
                self._pending_rows = 0
            try:
                if taken:
                    batch, predictions, rows = self.thin(*self.merge(taken))
                    if rows:
                        self.add(batch, predictions, rows)
                self.maybe_evaluate()
            except Exception:  # a bad batch must not end drift monitoring
                log.exception("drift monitoring failed on a batch")

    def merge(self, taken: list[tuple[Batch, np.ndarray, int]]) -> tuple[Batch, np.ndarray, int]:
        """Queued batches as one."""
        if len(taken) == 1:
            return taken[0]
        batch = self.concat([b for b, _, _ in taken])
        return batch, np.concatenate([p for _, p, _ in taken]), sum(r for _, _, r in taken)

    def thin(
        self, batch: Batch, predictions: np.ndarray, rows: int
    ) -> tuple[Batch, np.ndarray, int]:
        """At most max_rows_per_second rows a second on average, in bursts of at most one
        second's worth (a token bucket), as a uniform sample of those given: the proportions in
        the window stay those of the traffic, the cost stays fixed. May keep no row."""
        rate = float(self.config.max_rows_per_second)
        now = self.clock()
        self._budget = min(rate, self._budget + (now - self._budget_at) * rate)
        self._budget_at = now
        if rows <= self._budget:
            self._budget -= rows
            return batch, predictions, rows
        cap = int(self._budget)
        self._budget -= cap
        self.skipped += rows - cap
        keep = np.sort(self._rng.choice(rows, cap, replace=False))
        thinned = batch[keep] if isinstance(batch, np.ndarray) else [c[keep] for c in batch]
        return thinned, np.asarray(predictions)[keep], cap

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
        since = self.clock() - self._last_evaluation
        due = self._new_rows >= self.config.evaluate_every or (
            self._new_rows and since >= self.config.evaluate_seconds
        )
        pause = max(MIN_EVALUATION_SECONDS, self._evaluation_seconds / MAX_EVALUATION_SHARE)
        if due and since >= pause:
            self.evaluate()

    def evaluate(self) -> DriftReport:
        with self._lock:
            started = time.perf_counter()
            report = self.window.evaluate(self.config.thresholds)
            self._evaluation_seconds = time.perf_counter() - started
            self.report, self.evaluated_at = report, rfc3339()
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
            "skipped": self.skipped,
            "window": window,
        }

    def evaluate_given(self, window: Any) -> dict[str, Any]:
        """A window summed over replicas (the operator's), scored with this server's profile
        and thresholds. Raises WindowError when it does not fit the profile."""
        return evaluate_window(self.profile, window, self.config.thresholds).as_dict()
