"""Adaptive batching with admission control: concurrent requests are merged into one predict call
and split back; the queue is bounded in rows.

One asyncio task owns the model. It takes everything queued (up to max_batch_size rows); if
requests are still being read or decoded it waits for them, but never longer than max_latency.
With nothing else in flight a request is predicted at once, so a lone client pays no delay.

Admission: a request whose rows would take the queue past max_queue_rows is refused at once
(`Overloaded`, 503 with Retry-After) instead of waiting behind work it cannot outrun. A request
whose deadline passed or whose client disconnected while it was queued is dropped before predict;
one whose awaiting task is cancelled leaves the queue at once.

Where predict runs is decided per batch from its estimated cost (the fixed and per-row cost of
a predict, measured at load): inline on the event loop when it is cheaper than the thread
hand-off, on a dedicated thread otherwise, so a large batch never stalls the loop (and with it
the health probes).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from modelfactory_serving.errors import (
    ClientGone,
    DeadlineExceeded,
    InferenceError,
    Overloaded,
    PredictFailed,
    UnprocessableInput,
)
from modelfactory_serving.model import Batch, ModelRuntime, Prediction

log = logging.getLogger("modelfactory_serving.batcher")

# Errors a model raises about its input (unknown category, value out of range, ...).
INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)

PredictMode = Literal["auto", "thread", "inline"]


@dataclass(frozen=True)
class PredictCost:
    """Seconds a predict of n rows takes: fixed + per_row * (n - 1), measured at load."""

    fixed: float = 0.0
    per_row: float = 0.0

    @classmethod
    def measured(cls, one_row: float, full: float, full_rows: int) -> PredictCost:
        per_row = max(full - one_row, 0.0) / (full_rows - 1) if full_rows > 1 else one_row
        return cls(one_row, per_row)

    def seconds(self, rows: int) -> float:
        return self.fixed + self.per_row * max(rows - 1, 0)


@dataclass(slots=True, eq=False)
class _Item:
    batch: Batch
    rows: int
    want_proba: bool
    future: asyncio.Future[Prediction]
    deadline: float | None
    gone: Callable[[], bool] | None
    taken: bool = False


class Batcher:
    def __init__(
        self,
        runtime: ModelRuntime,
        max_batch_size: int,
        max_latency_ms: float,
        inline: bool | None = None,
        on_batch: Callable[[int], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
        *,
        mode: PredictMode = "auto",
        cost: PredictCost | None = None,
        inline_predict_ms: float = 1.0,
        max_queue_rows: int | None = None,
        on_drop: Callable[[str], None] | None = None,
        on_predicted: Callable[[Batch, np.ndarray, int], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.max_rows = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        if inline is not None:
            mode = "inline" if inline else "thread"
        self.mode = mode
        self.cost = cost or PredictCost()
        self.inline_seconds = inline_predict_ms / 1000.0
        self.max_queue_rows = max_queue_rows if max_queue_rows is not None else math.inf
        self._on_batch = on_batch
        self._on_queue = on_queue
        self._on_drop = on_drop
        self._on_predicted = on_predicted
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._arriving = 0  # requests admitted but not yet submitted (reading/decoding)
        self._wake = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = (
            None
            if mode == "inline"
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        )
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    # ------------------------------------------------------------------ producer side
    def arriving(self) -> None:
        """A request will be submitted soon: a batch being formed may wait for it."""
        self._arriving += 1

    def arrived(self) -> None:
        """Pair of arriving(): the request was submitted or gave up."""
        self._arriving -= 1
        if self._arriving == 0:
            self._wake.set()

    def retry_after(self) -> int:
        """Whole seconds the queue needs to drain at the measured predict cost (at least 1)."""
        batches = self._queued_rows / max(self.max_rows, 1)
        seconds = batches * self.cost.seconds(self.max_rows)
        return max(1, math.ceil(seconds))

    async def submit(
        self,
        batch: Batch,
        rows: int,
        want_proba: bool,
        deadline: float | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> Prediction:
        """Queue `rows` for predict; `deadline` (loop time) and `gone` (the client left) are
        checked again before the rows are predicted."""
        if self._task is None:
            raise RuntimeError("batcher is not running")
        if self._queue and self._queued_rows + rows > self.max_queue_rows:
            raise Overloaded(
                f"the server is at capacity ({self._queued_rows} rows queued, the bound is "
                f"{self.max_queue_rows:g}); retry later",
                self.retry_after(),
            )
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        item = _Item(batch, rows, want_proba, future, deadline, gone)
        self._queue.append(item)
        self._queued_rows += rows
        if self._on_queue is not None:
            self._on_queue(self._queued_rows)
        self._wake.set()
        try:
            return await future
        except asyncio.CancelledError:
            # Timed out or the handler was cancelled: leave the queue now, not at predict time.
            if not item.taken:
                item.taken = True
                self._queue.remove(item)
                self._queued_rows -= rows
                if self._on_queue is not None:
                    self._on_queue(self._queued_rows)
            raise

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        """Finish everything queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ consumer side
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._arriving and self._queued_rows < self.max_rows and self.max_latency > 0:
                await self._gather(loop)
            items = self._take(loop.time())
            try:
                await self._predict(loop, items)
            except Exception as e:  # never let the batcher die, never leave a future pending
                log.exception("batch failed")
                for it in items:
                    _fail(it, PredictFailed(f"predict failed: {_short(e)}"))

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = loop.time() + self.max_latency
        while self._arriving and self._queued_rows < self.max_rows:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            timer = loop.call_later(remaining, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()

    def _take(self, now: float) -> list[_Item]:
        items: list[_Item] = []
        rows = taken = 0
        queue = self._queue
        while queue and (not items or rows + queue[0].rows <= self.max_rows):
            item = queue.popleft()
            item.taken = True
            taken += item.rows
            if item.future.done():
                continue
            if item.gone is not None and item.gone():
                self._drop(
                    item, ClientGone("the client disconnected before predict"), "disconnected"
                )
                continue
            if item.deadline is not None and now >= item.deadline:
                self._drop(item, DeadlineExceeded("the request timed out in the queue"), "timeout")
                continue
            items.append(item)
            rows += item.rows
        self._queued_rows -= taken
        if self._on_queue is not None:
            self._on_queue(self._queued_rows)
        if self._on_batch is not None and rows:
            self._on_batch(rows)
        return items

    def _drop(self, item: _Item, error: InferenceError, reason: str) -> None:
        item.future.set_exception(error)
        if self._on_drop is not None:
            self._on_drop(reason)

    def _inline(self, rows: int, lone: bool) -> bool:
        if self._executor is None:
            return True
        if self.mode == "thread":
            return False
        cost = self.cost.seconds(rows)
        # A lone request gains nothing from the hand-off as long as its cost is mostly the
        # model's fixed overhead; a large one goes to the thread whatever else is in flight.
        return cost <= self.inline_seconds or (lone and cost <= 2 * self.cost.fixed)

    async def _call(
        self, loop: asyncio.AbstractEventLoop, batch: Batch, rows: int, want_proba: bool, lone: bool
    ) -> Prediction:
        if self._inline(rows, lone):
            return self.runtime.predict(batch, want_proba)
        return await loop.run_in_executor(self._executor, self.runtime.predict, batch, want_proba)

    async def _predict(self, loop: asyncio.AbstractEventLoop, items: list[_Item]) -> None:
        items = [it for it in items if not it.future.done()]
        if not items:
            return
        want_proba = any(it.want_proba for it in items)
        rows = sum(it.rows for it in items)
        lone = len(items) == 1 and not self._queue and not self._arriving
        try:
            merged = self.runtime.concat([it.batch for it in items])
            result = await self._call(loop, merged, rows, want_proba, lone)
        except Exception as e:
            if len(items) == 1:
                _fail(items[0], e)
            else:
                await self._one_by_one(loop, items)
            return
        if self._on_predicted is not None:
            self._on_predicted(merged, result.labels, rows)
        start = 0
        for it in items:
            end = start + it.rows
            if not it.future.done():
                proba = None if result.proba is None else result.proba[start:end]
                it.future.set_result(Prediction(result.labels[start:end], proba))
            start = end

    async def _one_by_one(self, loop: asyncio.AbstractEventLoop, items: list[_Item]) -> None:
        """A merged batch failed: find which request is at fault, answer the others."""
        for it in items:
            if it.future.done():
                continue
            try:
                result = await self._call(loop, it.batch, it.rows, it.want_proba, False)
            except Exception as e:
                _fail(it, e)
            else:
                if self._on_predicted is not None:
                    self._on_predicted(it.batch, result.labels, it.rows)
                if not it.future.done():
                    it.future.set_result(result)


def _fail(item: _Item, error: Exception) -> None:
    if item.future.done():
        return
    if isinstance(error, INPUT_ERRORS) and not isinstance(error, InferenceError):
        error = UnprocessableInput(f"the model could not predict these rows: {_short(error)}")
    elif not isinstance(error, InferenceError):
        error = PredictFailed(f"predict failed: {_short(error)}")
    item.future.set_exception(error)


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:500] if text else type(error).__name__
