"""Read the resource, decide with pure logic, act through a launcher, write the status back."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from modelfactory_api.batchprediction import BATCHPREDICTION_PLURAL
from modelfactory_api.modelservice import MODELSERVICE_PLURAL
from modelfactory_api.trainingjob import TRAININGJOB_PLURAL
from modelfactory_operator.io import kube
from modelfactory_operator.io.helm import HelmError
from modelfactory_operator.io.launcher import Launcher
from modelfactory_operator.logic import batchprediction as bplogic
from modelfactory_operator.logic import drift as driftlogic
from modelfactory_operator.logic import modelservice as mslogic
from modelfactory_operator.logic import (
    promotion,
    release,
    resync,
    retrain,
    rollout,
    storage,
    validate,
)
from modelfactory_operator.logic import trainingjob as tjlogic
from modelfactory_operator.logic.plans import Decision, RunObservation, ServiceObservation
from modelfactory_operator.settings import OperatorSettings

log = logging.getLogger("modelfactory.operator")
# kopf keeps its own bookkeeping under status; the operator leaves it alone.
FOREIGN_STATUS_KEYS = ("kopf",)
# What applying a release can fail with and be tried again later.
APPLY_ERRORS = (HelmError, ApiException, OSError)
# How soon a resource is looked at again after its release applied: an upgrade that changes no
# child (a new chart that renders the same objects) brings no watch event to say it is done.
APPLIED_RECHECK_SECONDS = 2.0
Key = tuple[str, str, str]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning `old` into `new` (kopf's own keys left alone)."""
    return merge_patch(
        {k: v for k, v in old.items() if k not in FOREIGN_STATUS_KEYS},
        {k: v for k, v in new.items() if k not in FOREIGN_STATUS_KEYS},
    )


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386: objects are merged key by key, so a key gone from a nested object must be
    sent as null (status.rollout drops its candidate when a rollout ends)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            if sub := merge_patch(before, value):
                patch[key] = sub
        elif (key in old and before != value) or (key not in old and value is not None):
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


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


class Reconciler:
    def __init__(self, settings: OperatorSettings, launcher: Launcher) -> None:
        self.settings = settings
        self.launcher = launcher
        self.locks: defaultdict[Key, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Releases that failed to apply, and the retries scheduled for them.
        self.failures: dict[Key, release.ApplyFailure] = {}
        self.retries: dict[Key, asyncio.TimerHandle] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.rechecks: dict[Key, asyncio.TimerHandle] = {}
        # Reconciles waiting for a resource's lock, not started yet (see turn()).
        self.waiting: Counter[Key] = Counter()
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

    async def trainingjob(self, namespace: str, name: str, coalesce: bool = False) -> None:
        async with self.turn((TRAININGJOB_PLURAL, namespace, name), coalesce) as go:
            if not go:
                return
            body = await asyncio.to_thread(kube.get_trainingjob, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                self.forget((TRAININGJOB_PLURAL, namespace, name))
                return
            key = (TRAININGJOB_PLURAL, namespace, name)
            self.known.add(key)
            meta = body["metadata"]
            status = dict(body.get("status") or {})
            spec_error = plan = None
            early_events: list[tuple[str, str, str]] = []
            try:
                spec = validate.trainingjob_spec(body.get("spec") or {}, self.launcher.name)
                # A person's promotion and the triggers come first: a trigger that fires is a
                # new run id for the plan rendered next.
                early_events += promotion.manual(
                    status,
                    (meta.get("annotations") or {}).get(promotion.PROMOTE_ANNOTATION),
                    now(),
                )
                early_events += await self.retrain_triggers(key, spec, status, meta)
                plan = tjlogic.render(
                    {**body, "status": status},
                    spec,
                    self.settings.training_image,
                    self.report_kind,
                    self.mount_root,
                )
            except validate.SpecError as exc:
                spec_error = str(exc)
            observation, rayjob_ok = await self.observe_run(plan)
            decision = tjlogic.decide(
                meta.get("generation"), status, plan, spec_error, observation, rayjob_ok, now()
            )
            decision.events[:0] = early_events
            launcher = self.launcher

            async def launch() -> int | None:
                assert plan is not None
                return await launcher.launch_training(plan)

            await self.act(TRAININGJOB_PLURAL, body, decision, launch, plan.hash if plan else "")
        if (body.get("status") or {}).get("model") != decision.status.get("model"):
            await self.followers(namespace, name)

    async def batchprediction(self, namespace: str, name: str, coalesce: bool = False) -> None:
        key = (BATCHPREDICTION_PLURAL, namespace, name)
        async with self.turn(key, coalesce) as go:
            if not go:
                return
            body = await asyncio.to_thread(kube.get_batchprediction, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                self.forget(key)
                return
            self.known.add(key)
            meta = body["metadata"]
            status = dict(body.get("status") or {})
            spec_error = plan = model = unresolved = None
            early_events: list[tuple[str, str, str]] = []
            try:
                spec = validate.batchprediction_spec(body.get("spec") or {}, self.launcher.name)
            except validate.SpecError as exc:
                spec_error = str(exc)
            else:
                if spec.schedule is not None:
                    decided = bplogic.schedule(
                        spec, status, meta.get("creationTimestamp"), dt.datetime.now(dt.UTC)
                    )
                    if decided.fire is not None:
                        status["lastTrigger"] = decided.fire
                    if decided.last_schedule_time is not None:
                        status["lastScheduleTime"] = decided.last_schedule_time
                    if decided.recheck is not None:
                        self.schedule(self.rechecks, key, decided.recheck + 1.0, replace=True)
                    early_events = decided.events
                seen = {**body, "status": status}
                rid = bplogic.run_id(seen, spec)
                resolved: mslogic.ResolvedModel | None = None
                if not (status.get("runId") == rid and status.get("model")):
                    trainingjob = None
                    if spec.model.trainingJob:
                        trainingjob = await asyncio.to_thread(
                            kube.get_trainingjob, namespace, spec.model.trainingJob
                        )
                    found = mslogic.resolve_source(spec.model, trainingjob)
                    if isinstance(found, mslogic.Unresolved):
                        unresolved = (found.reason, found.message)
                    else:
                        resolved = found
                if unresolved is None:
                    model = bplogic.run_model(status, rid, resolved)
                    plan = bplogic.render(
                        seen,
                        spec,
                        model,
                        self.settings.training_image,
                        self.report_kind,
                        self.mount_root,
                    )
            observation, rayjob_ok = await self.observe_run(plan)
            decision = bplogic.decide(
                meta.get("generation"),
                status,
                plan,
                spec_error,
                unresolved,
                model,
                observation,
                rayjob_ok,
                now(),
            )
            decision.events[:0] = early_events
            launcher = self.launcher

            async def launch() -> int | None:
                assert plan is not None
                return await launcher.launch_training(plan)

            await self.act(
                BATCHPREDICTION_PLURAL, body, decision, launch, plan.hash if plan else ""
            )

    async def observe_run(self, plan: Any) -> tuple[RunObservation, bool]:
        """A run's Job, RayJob or process, and whether a RayJob can be made at all."""
        if plan is None:
            return RunObservation("absent"), True
        observation = await self.launcher.observe_training(plan)
        rayjob_ok = plan.mode != "rayjob" or await self.launcher.rayjob_available()
        return observation, rayjob_ok

    async def retrain_triggers(
        self, key: Key, spec: Any, status: dict[str, Any], meta: dict[str, Any]
    ) -> list[tuple[str, str, str]]:
        """Fire the schedule or drift trigger that is due, into `status`; look again when the
        next one may be."""
        if spec.retrain is None:
            return []
        service = None
        if spec.retrain.onDrift is not None:
            service = await asyncio.to_thread(
                kube.get_modelservice, key[1], spec.retrain.onDrift.modelService
            )
        decided = retrain.decide(
            spec.retrain,
            status,
            meta.get("creationTimestamp"),
            service,
            dt.datetime.now(dt.UTC),
        )
        if decided.fire is not None:
            status["lastTrigger"] = decided.fire
        if decided.last_schedule_time is not None:
            status["lastScheduleTime"] = decided.last_schedule_time
        if decided.recheck is not None:
            # One second late rather than early: a scheduled time is due once it has passed.
            self.schedule(self.rechecks, key, decided.recheck + 1.0, replace=True)
        return decided.events

    async def followers(self, namespace: str, trainingjob: str) -> None:
        services = await asyncio.to_thread(kube.list_modelservices, namespace)
        for ms in mslogic.following(services, trainingjob):
            try:
                await self.modelservice(namespace, ms["metadata"]["name"], coalesce=True)
            except Exception:
                log.exception(
                    "updating ModelService %s after a new model failed", ms["metadata"]["name"]
                )
        # BatchPredictions waiting for the TrainingJob's first model start now.
        batches = await asyncio.to_thread(kube.list_batchpredictions, namespace)
        for bp in mslogic.following(batches, trainingjob):
            if (bp.get("status") or {}).get("runId") is None:
                await self.nudge((BATCHPREDICTION_PLURAL, namespace, bp["metadata"]["name"]))

    async def modelservice(self, namespace: str, name: str, coalesce: bool = False) -> None:
        async with self.turn((MODELSERVICE_PLURAL, namespace, name), coalesce) as go:
            if not go:
                return
            body = await asyncio.to_thread(kube.get_modelservice, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                self.forget((MODELSERVICE_PLURAL, namespace, name))
                return
            self.known.add((MODELSERVICE_PLURAL, namespace, name))
            meta = body["metadata"]
            status = dict(body.get("status") or {})
            spec_error = None
            resolved: mslogic.ResolvedModel | mslogic.Unresolved | None = None
            plan = None
            try:
                spec = validate.modelservice_spec(body.get("spec") or {}, self.launcher.name)
            except validate.SpecError as exc:
                spec_error = str(exc)
            else:
                trainingjob = None
                if spec.model.trainingJob:
                    trainingjob = await asyncio.to_thread(
                        kube.get_trainingjob, namespace, spec.model.trainingJob
                    )
                resolved = mslogic.resolve_model(spec, trainingjob)
            observation = (
                await self.launcher.observe_service(namespace, name)
                if spec_error is None
                else ServiceObservation(exists=False)
            )
            step = None
            gateway_api: bool | None = None
            if spec_error is None and spec.gateway is not None:
                gateway_api = await self.launcher.httproute_available()
            if spec_error is None and isinstance(resolved, mslogic.ResolvedModel):
                step = await self.rollout_step(
                    body, spec, resolved, trainingjob, observation, bool(gateway_api)
                )
                plan = self.serving_plan(body, spec, resolved, step.traffic, bool(gateway_api))
            drift_seen = None
            if spec_error is None:
                drift_seen = await self.observe_drift(namespace, name, spec, observation)
            decision = mslogic.decide(
                meta.get("generation"),
                status,
                spec_error,
                resolved,
                plan,
                observation,
                now(),
                drift_seen,
                spec.monitoring.drift.minSamples if spec_error is None else 0,
                step,
                gateway_api,
            )
            launcher = self.launcher

            async def apply() -> int | None:
                assert plan is not None
                return await launcher.apply_service(plan)

            await self.act(MODELSERVICE_PLURAL, body, decision, apply, plan.hash if plan else "")
        if driftlogic.changed(status, decision.status):
            await self.drift_followers(namespace, name)

    def serving_plan(
        self,
        body: dict[str, Any],
        spec: Any,
        model: Any,
        traffic: rollout.Traffic,
        gateway_api: bool,
    ) -> Any:
        return dataclasses.replace(
            mslogic.render(
                body,
                spec,
                model,
                self.settings.serving_image,
                self.mount_root,
                traffic,
                self.settings.cluster_domain,
                gateway_api,
            ),
            chart_digest=self.launcher.chart_digest("model-service"),
        )

    async def rollout_step(
        self,
        body: dict[str, Any],
        spec: Any,
        resolved: mslogic.ResolvedModel,
        trainingjob: dict[str, Any] | None,
        observation: ServiceObservation,
        gateway_api: bool,
    ) -> rollout.Step:
        """One look at the rollout: whether the current state's release is in effect, the
        stable servers' figures when an interval may be due, and the next state."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        key = (MODELSERVICE_PLURAL, namespace, name)
        status = body.get("status") or {}
        experiment = None
        exp = spec.rollout.experiment
        if spec.rollout.strategy == "Experiment" and exp is not None:
            tj = trainingjob
            if exp.model.trainingJob and exp.model.trainingJob != spec.model.trainingJob:
                tj = await asyncio.to_thread(kube.get_trainingjob, namespace, exp.model.trainingJob)
            b = mslogic.resolve_source(exp.model, tj)
            experiment = mslogic.as_ref(b) if isinstance(b, mslogic.ResolvedModel) else None
        previous = status.get("rollout")
        in_effect = False
        snapshot = None
        if previous and previous.get("stable"):
            current = self.serving_plan(
                body, spec, resolved, rollout.traffic_of(spec.rollout, previous), gateway_api
            )
            in_effect = status.get("appliedHash") == current.hash and observation.rolled_out
            if in_effect and previous.get("phase") in rollout.ACTIVE and previous.get("candidate"):
                try:
                    snapshot = await self.launcher.traffic_snapshot(namespace, name)
                except APPLY_ERRORS as exc:
                    log.info("rollout figures of %s/%s not read: %s", namespace, name, exc)
        step = rollout.advance(
            spec.rollout,
            previous,
            mslogic.as_ref(resolved),
            experiment,
            snapshot,
            in_effect,
            dt.datetime.now(dt.UTC),
        )
        if step.recheck is not None:
            self.recheck(key, step.recheck)
        return step

    async def observe_drift(
        self, namespace: str, name: str, spec: Any, observation: ServiceObservation
    ) -> driftlogic.DriftObservation:
        settings = spec.monitoring.drift
        if not settings.enabled or observation.ready_replicas == 0:
            return driftlogic.observe(
                settings.enabled, observation.served_version, observation.ready_replicas, [], None
            )
        key = (MODELSERVICE_PLURAL, namespace, name)
        try:
            windows, evaluate = await self.launcher.drift_windows(namespace, name)
        except APPLY_ERRORS as exc:
            windows, evaluate = [], None
            log.info("drift of %s/%s not read: %s", namespace, name, exc)
        # Servers evaluate on their own cadence: look again on the same one, less often while
        # none answers (an old server without the endpoint, a network that does not reach it).
        self.drift_misses[key] = 0 if windows else self.drift_misses[key] + 1
        self.recheck(key, driftlogic.next_look(settings.evaluateSeconds, self.drift_misses[key]))
        return await asyncio.to_thread(
            driftlogic.observe,
            True,
            observation.served_version,
            observation.ready_replicas,
            windows,
            evaluate,
        )

    async def drift_followers(self, namespace: str, modelservice: str) -> None:
        """TrainingJobs that retrain on this ModelService's drift look at it again."""
        jobs = await asyncio.to_thread(kube.list_trainingjobs, namespace)
        for tj in tjlogic.retraining_on(jobs, modelservice):
            key = (TRAININGJOB_PLURAL, namespace, tj["metadata"]["name"])
            # At once (its own reconcile schedules its next look again).
            self.schedule(self.rechecks, key, 0.0, replace=True)

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
        loop = asyncio.get_running_loop()
        if key in timers:
            # Without replace, the earlier of the two looks is kept.
            if not replace and timers[key].when() <= loop.time() + delay:
                return
            timers.pop(key).cancel()

        def fire() -> None:
            timers.pop(key, None)
            task = asyncio.ensure_future(self.retry(key))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        timers[key] = loop.call_later(max(delay, 0.0), fire)

    async def reconcile(self, key: Key, coalesce: bool = False) -> None:
        plural, namespace, name = key
        if plural == TRAININGJOB_PLURAL:
            await self.trainingjob(namespace, name, coalesce)
        elif plural == BATCHPREDICTION_PLURAL:
            await self.batchprediction(namespace, name, coalesce)
        else:
            await self.modelservice(namespace, name, coalesce)

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
