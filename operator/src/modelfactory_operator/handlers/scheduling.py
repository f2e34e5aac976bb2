"""When a resource is reconciled: one reconcile at a time per resource, bursts of watch events
coalesced, and timers that bring a resource back later (a retry after a failed apply, a look
again at something no watch event announces)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

from modelfactory_operator.logic import resync

Key = tuple[str, str, str]


class Turns:
    """One reconcile at a time per resource."""

    def __init__(self) -> None:
        self.locks: defaultdict[Key, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Reconciles waiting for a resource's lock, not started yet.
        self.waiting: Counter[Key] = Counter()

    @contextlib.asynccontextmanager
    async def turn(self, key: Key, coalesce: bool) -> AsyncIterator[bool]:
        """Hold a resource's lock for one reconcile; yields False (and holds nothing) when the
        reconcile may be dropped because another one is already waiting to start. Watch events
        of a resource's children come in bursts (a Deployment, its pods, its autoscaler): this
        turns each burst into one or two reconciles instead of one per event."""
        if resync.should_drop(coalesce, self.waiting[key]):
            yield False
            return
        self.waiting[key] += 1
        lock = self.locks[key]
        try:
            await lock.acquire()
        finally:
            self.waiting[key] -= 1
            if self.waiting[key] <= 0:
                del self.waiting[key]
        try:
            yield True
        finally:
            lock.release()


class Timers:
    """Timers that reconcile a resource again: `fire` is called with the resource's key."""

    def __init__(self, fire: Callable[[Key], Awaitable[None]]) -> None:
        self.fire = fire
        self.tasks: set[asyncio.Task[None]] = set()

    def schedule(
        self, timers: dict[Key, asyncio.TimerHandle], key: Key, delay: float, replace: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        if key in timers:
            # Without replace, the earlier of the two looks is kept.
            if not replace and timers[key].when() <= loop.time() + delay:
                return
            timers.pop(key).cancel()

        def fire() -> None:
            timers.pop(key, None)
            task = asyncio.ensure_future(self.fire(key))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        timers[key] = loop.call_later(max(delay, 0.0), fire)
