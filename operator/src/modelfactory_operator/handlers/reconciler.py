"""The reconciler: every trigger (a watch event, a timer, the resync) ends in one reconcile of
one resource, dispatched by its kind to that kind's turn (read, decide with pure logic, act
through a launcher, write the status back). This module holds what every kind shares: the
turn's lock, retries with backoff after a failed apply, timers, the resync, the status write."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import kopf
from kubernetes.client.exceptions import ApiException

from modelfactory_api import timestamps
from modelfactory_operator.io import kube
from modelfactory_operator.io.helm import HelmError
from modelfactory_operator.io.launcher import Launcher
from modelfactory_operator.logic import kinds, release, resync, retrain, storage
from modelfactory_operator.logic.plans import Decision
from modelfactory_operator.logic.status_patch import status_patch
from modelfactory_operator.settings import OperatorSettings

from .scheduling import Key, Timers, Turns

log = logging.getLogger("modelfactory.operator")
# What applying a release can fail with and be tried again later.
APPLY_ERRORS = (HelmError, ApiException, OSError)
# How soon a resource is looked at again after its release applied: an upgrade that changes no
# child (a new chart that renders the same objects) brings no watch event to say it is done.
APPLIED_RECHECK_SECONDS = 2.0


def now() -> str:
    return timestamps.rfc3339()


def emit(body: dict[str, Any], decision: Decision) -> None:
    for kind, reason, message in decision.events:
        try:
            kopf.event(
                body,  # type: ignore[arg-type]
                type=kind,
                reason=reason,
                message=message[:1000],
            )
        except Exception:  # events are best effort; outside a handler context there is no queue
            log.info("event %s/%s %s: %s", body["metadata"]["name"], kind, reason, message)


class KindTurn(Protocol):
    """One reconcile of one resource of a kind (handlers/trainingjob.py, ...)."""

    async def __call__(self, r: Reconciler, namespace: str, name: str, coalesce: bool) -> None: ...


class Reconciler:
    def __init__(self, settings: OperatorSettings, launcher: Launcher) -> None:
        # Imported here: each kind's turn module builds on this one.
        from .batchprediction import batchprediction_turn
        from .modelservice import modelservice_turn
        from .trainingjob import trainingjob_turn

        self.settings = settings
        self.launcher = launcher
        self.kind_turns: dict[str, KindTurn] = {
            kinds.TRAININGJOB.plural: trainingjob_turn,
            kinds.MODELSERVICE.plural: modelservice_turn,
            kinds.BATCHPREDICTION.plural: batchprediction_turn,
        }
        self.turns = Turns()
        self.timers = Timers(self.retry)
        # Releases that failed to apply, and the retries scheduled for them.
        self.failures: dict[Key, release.ApplyFailure] = {}
        self.retries: dict[Key, asyncio.TimerHandle] = {}
        self.rechecks: dict[Key, asyncio.TimerHandle] = {}
        # Every resource found by a reconcile and not deleted since: what the resync walks.
        self.known: set[Key] = set()
        # Drift reads in a row that no replica answered, per ModelService.
        self.drift_misses: Counter[Key] = Counter()

    @property
    def report_kind(self) -> str:
        return "kubernetes"

    @property
    def mount_root(self) -> str:
        """Where pvc:// claims appear to workloads: mounted in pods, a directory locally."""
        if self.launcher.name == "local":
            return str(self.settings.local_state_dir / "pvc")
        return storage.CLUSTER_MOUNT_ROOT

    @contextlib.asynccontextmanager
    async def resource(self, key: Key, coalesce: bool) -> AsyncIterator[dict[str, Any] | None]:
        """The turn's lock and the resource as it is now; None when the turn is dropped or the
        resource is gone (which forgets it)."""
        async with self.turns.turn(key, coalesce) as go:
            if not go:
                yield None
                return
            body = await asyncio.to_thread(kube.get_custom, *key)
            if body is None or body["metadata"].get("deletionTimestamp"):
                self.forget(key)
                yield None
                return
            self.known.add(key)
            yield body

    async def reconcile(self, key: Key, coalesce: bool = False) -> None:
        plural, namespace, name = key
        await self.kind_turns[plural](self, namespace, name, coalesce)

    def apply_trigger(
        self, key: Key, decided: retrain.TriggerDecision, status: dict[str, Any]
    ) -> None:
        """A schedule or drift trigger that fired goes into `status` (its id makes a new run);
        the resource is looked at again when the next one may be due."""
        if decided.fire is not None:
            status["lastTrigger"] = decided.fire
        if decided.last_schedule_time is not None:
            status["lastScheduleTime"] = decided.last_schedule_time
        if decided.recheck is not None:
            # One second late rather than early: a scheduled time is due once it has passed.
            self.schedule(self.rechecks, key, decided.recheck + 1.0, replace=True)

    async def act(
        self,
        plural: str,
        body: dict[str, Any],
        decision: Decision,
        launch: Callable[[], Awaitable[int | None]],
        plan_hash: str,
    ) -> None:
        """Launch when decided (unless a failed apply of the same plan is backing off), then
        write the status and the events of the transition."""
        meta = body["metadata"]
        key = (plural, meta["namespace"], meta["name"])
        failure = self.failures.get(key)
        if decision.launch and release.may_apply(failure, plan_hash, time.monotonic()):
            decision = await self.apply(key, meta.get("generation"), decision, launch, plan_hash)
            # The decision was checked against its CRD where it was made; what applying added
            # (appliedHash, the release's condition) is checked here, before it is written.
            kinds.checked(kinds.of(plural), decision.status)
        patch = status_patch(dict(body.get("status") or {}), decision.status)
        if patch:
            await asyncio.to_thread(
                kube.patch_status, plural, meta["namespace"], meta["name"], patch
            )
        emit(body, decision)

    async def apply(
        self,
        key: Key,
        generation: int | None,
        decision: Decision,
        launch: Callable[[], Awaitable[int | None]],
        plan_hash: str,
    ) -> Decision:
        previous = self.failures.get(key)
        try:
            revision = await launch()
        except APPLY_ERRORS as exc:
            error = str(exc)[:800] or type(exc).__name__
            failure = release.record_failure(
                previous,
                plan_hash,
                error,
                time.monotonic(),
                self.settings.apply_retry_base_seconds,
                self.settings.apply_retry_max_seconds,
            )
            self.failures[key] = failure
            self.retry_later(key, failure.retry_at - time.monotonic())
            log.warning("%s %s/%s: %s", key[0], key[1], key[2], error)
            return release.with_failure(
                decision, failure, previous, time.monotonic(), generation, now()
            )
        self.forget(key, self.retries)
        self.recheck(key, APPLIED_RECHECK_SECONDS)
        decision.status["appliedHash"] = plan_hash
        if revision is not None:
            decision.status["releaseRevision"] = revision
        return release.with_success(decision, revision, generation, now())

    def retry_later(self, key: Key, delay: float) -> None:
        """Reconcile again once the backoff has passed (watch events alone may never come)."""
        self.schedule(self.retries, key, delay, replace=True)

    def recheck(self, key: Key, delay: float) -> None:
        """Reconcile once more after `delay`, for a change no watch event announces (a server
        that has finished starting); one pending at a time per resource."""
        self.schedule(self.rechecks, key, delay, replace=False)

    def schedule(
        self, timers: dict[Key, asyncio.TimerHandle], key: Key, delay: float, replace: bool
    ) -> None:
        self.timers.schedule(timers, key, delay, replace)

    async def retry(self, key: Key) -> None:
        try:
            await self.reconcile(key, coalesce=True)
        except Exception as exc:
            log.warning("retrying %s %s/%s failed: %s", *key, exc)

    async def nudge(self, key: Key) -> None:
        """A reconcile for a watch event or the resync, which nothing retries: one that fails
        is tried again after a while instead of waiting for the next event."""
        try:
            await self.reconcile(key, coalesce=True)
        except Exception as exc:
            log.warning("reconciling %s %s/%s after an event failed: %s", *key, exc)
            if key in self.known:
                self.retry_later(key, self.settings.apply_retry_base_seconds)

    async def resync_forever(self) -> None:
        """Reconcile every known resource once per `resync_seconds`, spread over the period
        (after a first quiet period: the resume at start-up has just reconciled them all)."""
        period = self.settings.resync_seconds
        await asyncio.sleep(period)
        while True:
            started = time.monotonic()
            for offset, key in resync.spread(self.known, period):
                await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
                if key in self.known:
                    await self.nudge(key)
            await asyncio.sleep(max(0.0, started + period - time.monotonic()))

    def forget(self, key: Key, *timers: dict[Key, asyncio.TimerHandle]) -> None:
        """Drop a resource's failure and its timers (all of them by default); a resource gone
        (all timers) is no longer resynced either."""
        self.failures.pop(key, None)
        if not timers:
            self.known.discard(key)
            self.drift_misses.pop(key, None)
        for table in timers or (self.retries, self.rechecks):
            if (handle := table.pop(key, None)) is not None:
                handle.cancel()

    def utcnow(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)
