"""Adaptive batching: requests merged into one predict, bounded in rows, failures kept to
their own requests, and work for nobody never predicted."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from modelfactory_serving.batcher import Batcher
from modelfactory_serving.errors import InferenceError
from modelfactory_serving.model import ModelRuntime

from .conftest import Artifact

pytestmark = pytest.mark.unit


class CountingRuntime:
    """Wraps a runtime and records every predict call's row count."""

    def __init__(self, rt: ModelRuntime, fail_on: float | None = None) -> None:
        self.rt = rt
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def concat(self, parts: list[Any]) -> Any:
        return self.rt.concat(parts)

    def predict(self, batch: Any, want_proba: bool) -> Any:
        self.calls.append(len(batch))
        self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and (np.asarray(batch) == self.fail_on).any():
            raise ValueError(f"cannot handle {self.fail_on}")
        return self.rt.predict(batch, want_proba)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def lr_rows(artifacts: dict[str, Artifact]) -> Iterator[np.ndarray]:
    yield np.asarray(artifacts["lr"].X[:40], dtype=np.float64)


@pytest.mark.parametrize("inline", [True, False])
def test_concurrent_requests_share_one_predict(
    runtimes: dict[str, ModelRuntime], lr_rows: np.ndarray, inline: bool
) -> None:
    rt = runtimes["lr"]
    counting = CountingRuntime(rt)

    async def main() -> list[Any]:
        b = Batcher(counting, max_batch_size=32, max_latency_ms=5, inline=inline)  # type: ignore[arg-type]
        b.start()
        results = await asyncio.gather(
            *(b.submit(lr_rows[i : i + 1], 1, i % 2 == 0) for i in range(20))
        )
        await b.stop()
        return results

    results = run(main())
    assert sum(counting.calls) == 20
    assert len(counting.calls) <= 2  # merged, not 20 separate calls
    expected = rt.estimator.predict(lr_rows[:20])
    assert [r.labels[0] for r in results] == expected.tolist()
    assert results[0].proba is not None and results[0].proba.shape == (1, 2)
    assert ("predict" in "".join(counting.threads)) is not inline


def test_batches_respect_max_batch_size(
    runtimes: dict[str, ModelRuntime], lr_rows: np.ndarray
) -> None:
    counting = CountingRuntime(runtimes["lr"])

    async def main() -> None:
        b = Batcher(counting, max_batch_size=8, max_latency_ms=1, inline=True)  # type: ignore[arg-type]
        b.start()
        await asyncio.gather(*(b.submit(lr_rows[i : i + 3], 3, False) for i in range(10)))
        await b.stop()

    run(main())
    assert sum(counting.calls) == 30
    assert max(counting.calls) <= 8


def test_a_failing_request_does_not_fail_its_batch(
    runtimes: dict[str, ModelRuntime], lr_rows: np.ndarray
) -> None:
    counting = CountingRuntime(runtimes["lr"], fail_on=123.0)
    poisoned = lr_rows[:1].copy()
    poisoned[0, 0] = 123.0

    async def main() -> list[Any]:
        b = Batcher(counting, max_batch_size=32, max_latency_ms=5, inline=False)  # type: ignore[arg-type]
        b.start()
        batches = [lr_rows[i : i + 1] for i in range(5)] + [poisoned]
        out = await asyncio.gather(
            *(b.submit(x, 1, False) for x in batches), return_exceptions=True
        )
        await b.stop()
        return out

    out = run(main())
    assert all(not isinstance(r, Exception) for r in out[:5])
    assert isinstance(out[5], InferenceError) and out[5].status == 422
    assert "cannot handle 123.0" in out[5].message


def test_waits_for_arriving_requests_up_to_max_latency(
    runtimes: dict[str, ModelRuntime], lr_rows: np.ndarray
) -> None:
    counting = CountingRuntime(runtimes["lr"])

    async def main() -> None:
        b = Batcher(counting, max_batch_size=32, max_latency_ms=200, inline=True)  # type: ignore[arg-type]
        b.start()
        b.arriving()  # a second request is still being read

        async def late() -> Any:
            await asyncio.sleep(0.02)
            b.arrived()
            return await b.submit(lr_rows[1:2], 1, False)

        await asyncio.gather(b.submit(lr_rows[:1], 1, False), late())
        await b.stop()

    run(main())
    assert counting.calls == [2]


def test_stop_finishes_queued_work(runtimes: dict[str, ModelRuntime], lr_rows: np.ndarray) -> None:
    async def main() -> list[Any]:
        b = Batcher(runtimes["lr"], max_batch_size=2, max_latency_ms=0, inline=False)
        b.start()
        tasks = [asyncio.ensure_future(b.submit(lr_rows[i : i + 1], 1, False)) for i in range(9)]
        await asyncio.sleep(0)
        await b.stop()
        return [t.result() for t in tasks]

    assert len(run(main())) == 9


# ---------------------------------------------------------------------------- admission
def test_a_batch_that_cannot_be_formed_fails_every_request(
    runtimes: dict[str, ModelRuntime], lr_rows: np.ndarray
) -> None:
    class BrokenConcat(CountingRuntime):
        def concat(self, parts: list[Any]) -> Any:
            if len(parts) > 1:
                raise RuntimeError("columns do not line up")
            return parts[0]

    counting = BrokenConcat(runtimes["lr"])

    async def main() -> list[Any]:
        b = Batcher(counting, max_batch_size=32, max_latency_ms=5, inline=True)  # type: ignore[arg-type]
        b.start()
        out = await asyncio.wait_for(
            asyncio.gather(
                *(b.submit(lr_rows[i : i + 1], 1, False) for i in range(5)), return_exceptions=True
            ),
            timeout=10,
        )
        await b.stop()
        return out

    out = run(main())
    # Each request is answered: on its own when the merged batch could not be formed.
    assert all(not isinstance(r, BaseException) for r in out), out

    class AlwaysBroken(CountingRuntime):
        def concat(self, parts: list[Any]) -> Any:
            raise RuntimeError("columns do not line up")

        def predict(self, batch: Any, want_proba: bool) -> Any:
            raise RuntimeError("model is broken")

    async def broken() -> list[Any]:
        b = Batcher(
            AlwaysBroken(runtimes["lr"]),
            max_batch_size=32,  # type: ignore[arg-type]
            max_latency_ms=5,
            inline=False,
        )
        b.start()
        out = await asyncio.wait_for(
            asyncio.gather(
                *(b.submit(lr_rows[i : i + 1], 1, False) for i in range(5)), return_exceptions=True
            ),
            timeout=10,
        )
        await b.stop()
        return out

    failed = run(broken())
    assert all(isinstance(r, InferenceError) and r.status == 500 for r in failed), failed
    assert "model is broken" in failed[0].message


def test_the_queue_is_bounded_in_rows(
    runtimes: dict[str, ModelRuntime], lr_rows: np.ndarray
) -> None:
    from modelfactory_serving.errors import Overloaded

    async def main() -> list[Any]:
        b = Batcher(
            runtimes["lr"], max_batch_size=4, max_latency_ms=0, inline=True, max_queue_rows=6
        )
        b.start()
        # Submitted in one loop step: nothing is predicted until they are all queued.
        out = await asyncio.gather(
            *(b.submit(lr_rows[:3], 3, False) for _ in range(4)), return_exceptions=True
        )
        await b.stop()
        return out

    out = run(main())
    assert [isinstance(r, Overloaded) for r in out] == [False, False, True, True]
    assert out[2].status == 503 and out[2].retry_after >= 1
    assert "6 rows queued, the bound is 6" in out[2].message


def test_cancelled_gone_and_expired_requests_are_never_predicted(
    runtimes: dict[str, ModelRuntime], lr_rows: np.ndarray
) -> None:
    from modelfactory_serving.errors import ClientGone, DeadlineExceeded

    counting = CountingRuntime(runtimes["lr"])
    drops: list[str] = []

    async def main() -> list[Any]:
        b = Batcher(
            counting,
            max_batch_size=64,
            max_latency_ms=0,
            inline=True,  # type: ignore[arg-type]
            on_drop=drops.append,
        )
        b.start()
        loop = asyncio.get_running_loop()
        cancelled = asyncio.ensure_future(b.submit(lr_rows[:5], 5, False))
        gone = b.submit(lr_rows[:7], 7, False, gone=lambda: True)
        expired = b.submit(lr_rows[:11], 11, False, deadline=loop.time() - 1)
        kept = b.submit(lr_rows[:2], 2, False, deadline=loop.time() + 60, gone=lambda: False)
        await asyncio.sleep(0)  # the first one is queued
        assert b.queued_rows == 5
        cancelled.cancel()
        await asyncio.sleep(0)
        assert b.queued_rows == 0
        out = await asyncio.gather(gone, expired, kept, return_exceptions=True)
        await b.stop()
        return out

    gone, expired, kept = run(main())
    assert isinstance(gone, ClientGone) and isinstance(expired, DeadlineExceeded)
    assert expired.status == 504
    assert kept.labels.shape == (2,)
    assert counting.calls == [2]
    assert drops == ["disconnected", "timeout"]


def test_large_batches_are_predicted_off_the_event_loop(
    runtimes: dict[str, ModelRuntime], lr_rows: np.ndarray
) -> None:
    from modelfactory_serving.batcher import PredictCost

    counting = CountingRuntime(runtimes["lr"])
    # 1 ms fixed, 0.1 ms per further row: 2 rows are cheap, 40 rows are not.
    cost = PredictCost.measured(0.001, 0.001 + 0.0001 * 63, 64)

    async def main() -> None:
        b = Batcher(
            counting,
            max_batch_size=64,
            max_latency_ms=0,  # type: ignore[arg-type]
            cost=cost,
            inline_predict_ms=1.5,
        )
        b.start()
        await b.submit(lr_rows[:2], 2, False)
        small = set(counting.threads)
        await b.submit(lr_rows[:40], 40, False)
        await b.stop()
        assert not any("predict" in t for t in small)
        assert any("predict" in t for t in counting.threads)

    run(main())
