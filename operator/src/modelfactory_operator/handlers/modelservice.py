"""A ModelService's turn: resolve the version to serve, take one step of its rollout, read its
servers' drift, decide and apply; TrainingJobs that retrain on its drift look again when its
drift changes."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from modelfactory_operator.io import kube
from modelfactory_operator.logic import drift as driftlogic
from modelfactory_operator.logic import kinds, rollout, validate
from modelfactory_operator.logic import modelservice as mslogic
from modelfactory_operator.logic import trainingjob as tjlogic
from modelfactory_operator.logic.plans import ServiceObservation, ServingPlan

from .reconciler import APPLY_ERRORS, Reconciler, log, now

PLURAL = kinds.MODELSERVICE.plural


async def modelservice_turn(r: Reconciler, namespace: str, name: str, coalesce: bool) -> None:
    async with r.resource((PLURAL, namespace, name), coalesce) as body:
        if body is None:
            return
        meta = body["metadata"]
        status = dict(body.get("status") or {})
        spec_error = None
        resolved: mslogic.ResolvedModel | mslogic.Unresolved | None = None
        plan = None
        try:
            spec = validate.modelservice_spec(body.get("spec") or {}, r.launcher.name)
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
            await r.launcher.observe_service(namespace, name)
            if spec_error is None
            else ServiceObservation(exists=False)
        )
        step = None
        gateway_api: bool | None = None
        if spec_error is None and spec.gateway is not None:
            gateway_api = await r.launcher.httproute_available()
        if spec_error is None and isinstance(resolved, mslogic.ResolvedModel):
            step = await rollout_step(
                r, body, spec, resolved, trainingjob, observation, bool(gateway_api)
            )
            plan = serving_plan(r, body, spec, resolved, step.traffic, bool(gateway_api))
        drift_seen = None
        if spec_error is None:
            drift_seen = await observe_drift(r, namespace, name, spec, observation)
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
        launcher = r.launcher

        async def apply() -> int | None:
            assert plan is not None
            return await launcher.apply_service(plan)

        await r.act(PLURAL, body, decision, apply, plan.hash if plan else "")
    if driftlogic.changed(status, decision.status):
        await drift_followers(r, namespace, name)


def serving_plan(
    r: Reconciler,
    body: dict[str, Any],
    spec: Any,
    model: Any,
    traffic: rollout.Traffic,
    gateway_api: bool,
) -> ServingPlan:
    return dataclasses.replace(
        mslogic.render(
            body,
            spec,
            model,
            r.settings.serving_image,
            r.mount_root,
            traffic,
            r.settings.cluster_domain,
            gateway_api,
        ),
        chart_digest=r.launcher.chart_digest("model-service"),
    )


async def rollout_step(
    r: Reconciler,
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
    key = (PLURAL, namespace, name)
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
        current = serving_plan(
            r, body, spec, resolved, rollout.traffic_of(spec.rollout, previous), gateway_api
        )
        in_effect = status.get("appliedHash") == current.hash and observation.rolled_out
        if in_effect and previous.get("phase") in rollout.ACTIVE and previous.get("candidate"):
            try:
                snapshot = await r.launcher.traffic_snapshot(namespace, name)
            except APPLY_ERRORS as exc:
                log.info("rollout figures of %s/%s not read: %s", namespace, name, exc)
    step = rollout.advance(
        spec.rollout,
        previous,
        mslogic.as_ref(resolved),
        experiment,
        snapshot,
        in_effect,
        r.utcnow(),
    )
    if step.recheck is not None:
        r.recheck(key, step.recheck)
    return step


async def observe_drift(
    r: Reconciler, namespace: str, name: str, spec: Any, observation: ServiceObservation
) -> driftlogic.DriftObservation:
    settings = spec.monitoring.drift
    if not settings.enabled or observation.ready_replicas == 0:
        return driftlogic.observe(
            settings.enabled, observation.served_version, observation.ready_replicas, [], None
        )
    key = (PLURAL, namespace, name)
    try:
        windows, evaluate = await r.launcher.drift_windows(namespace, name)
    except APPLY_ERRORS as exc:
        windows, evaluate = [], None
        log.info("drift of %s/%s not read: %s", namespace, name, exc)
    # Servers evaluate on their own cadence: look again on the same one, less often while
    # none answers (an old server without the endpoint, a network that does not reach it).
    r.drift_misses[key] = 0 if windows else r.drift_misses[key] + 1
    r.recheck(key, driftlogic.next_look(settings.evaluateSeconds, r.drift_misses[key]))
    return await asyncio.to_thread(
        driftlogic.observe,
        True,
        observation.served_version,
        observation.ready_replicas,
        windows,
        evaluate,
    )


async def drift_followers(r: Reconciler, namespace: str, modelservice: str) -> None:
    """TrainingJobs that retrain on this ModelService's drift look at it again."""
    jobs = await asyncio.to_thread(kube.list_trainingjobs, namespace)
    for tj in tjlogic.retraining_on(jobs, modelservice):
        key = (kinds.TRAININGJOB.plural, namespace, tj["metadata"]["name"])
        # At once (its own reconcile schedules its next look again).
        r.schedule(r.rechecks, key, 0.0, replace=True)
