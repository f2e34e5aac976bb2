"""Adaptive batching: concurrent requests are merged into one predict call and split back.

One asyncio task owns the model. It takes everything queued (up to max_batch_size rows); if
requests are still being read or decoded it waits for them, but never longer than max_latency.
With nothing else in flight a request is predicted at once, so a lone client pays no delay.
Predict runs on a dedicated thread (the event loop keeps accepting and decoding while a slow
model works) or inline: for models so fast that the thread hand-off would cost more, and for a
lone request while nothing else is in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from modelfactory_serving.errors import InferenceError, UnprocessableInput
from modelfactory_serving.model import Batch, ModelRuntime, Prediction

log = logging.getLogger("modelfactory_serving.batcher")

# Errors a model raises about its input (unknown category, value out of range, ...).
INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)


@dataclass(slots=True)
class _Item:
    batch: Batch
    rows: int
    want_proba: bool
    future: asyncio.Future[Prediction]


class Batcher:
    def __init__(
        self,
        runtime: ModelRuntime,
        max_batch_size: int,
        max_latency_ms: float,
        inline: bool,
        on_batch: Callable[[int], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.max_rows = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        self.inline = inline
        self._on_batch = on_batch
        self._on_queue = on_queue
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._arriving = 0  # requests admitted but not yet submitted (reading/decoding)
        self._wake = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = (
            None if inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        )
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # ------------------------------------------------------------------ producer side
    def arriving(self) -> None:
        """A request will be submitted soon: a batch being formed may wait for it."""
        self._arriving += 1

    def arrived(self) -> None:
        """Pair of arriving(): the request was submitted or gave up."""
        self._arriving -= 1
        if self._arriving == 0:
            self._wake.set()

    async def submit(self, batch: Batch, rows: int, want_proba: bool) -> Prediction:
        if self._task is None:
            raise RuntimeError("batcher is not running")
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(batch, rows, want_proba, future))
        self._queued_rows += rows
        if self._on_queue is not None:
            self._on_queue(self._queued_rows)
        self._wake.set()
        return await future

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
            items = self._take()
            try:
                await self._predict(loop, items)
            except Exception:  # never let the batcher die; the items already have an answer
                log.exception("batch failed")

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

    def _take(self) -> list[_Item]:
        items = [self._queue.popleft()]
        rows = items[0].rows
        while self._queue and rows + self._queue[0].rows <= self.max_rows:
            item = self._queue.popleft()
            items.append(item)
            rows += item.rows
        self._queued_rows -= rows
        if self._on_queue is not None:
            self._on_queue(self._queued_rows)
        if self._on_batch is not None:
            self._on_batch(rows)
        return items

    async def _predict(self, loop: asyncio.AbstractEventLoop, items: list[_Item]) -> None:
        items = [it for it in items if not it.future.done()]
        if not items:
            return
        want_proba = any(it.want_proba for it in items)
        merged = self.runtime.concat([it.batch for it in items])
        # A lone request with nothing else in flight gains nothing from the thread hand-off.
        inline = self._executor is None or (
            len(items) == 1 and not self._queue and not self._arriving
        )
        try:
            if inline:
                result = self.runtime.predict(merged, want_proba)
            else:
                result = await loop.run_in_executor(
                    self._executor, self.runtime.predict, merged, want_proba
                )
        except Exception as e:
            if len(items) == 1:
                _fail(items[0], e)
            else:
                await self._one_by_one(loop, items)
            return
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
            try:
                if self._executor is None:
                    result = self.runtime.predict(it.batch, it.want_proba)
                else:
                    result = await loop.run_in_executor(
                        self._executor, self.runtime.predict, it.batch, it.want_proba
                    )
            except Exception as e:
                _fail(it, e)
            else:
                if not it.future.done():
                    it.future.set_result(result)


def _fail(item: _Item, error: Exception) -> None:
    if item.future.done():
        return
    if isinstance(error, INPUT_ERRORS) and not isinstance(error, InferenceError):
        error = UnprocessableInput(f"the model could not predict these rows: {_short(error)}")
    item.future.set_exception(error)


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:500] if text else type(error).__name__

