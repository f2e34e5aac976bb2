"""The turn every kind that starts runs shares: the kind prepares its plan (or says why there
is none), then the run is observed, the shared lifecycle decides and the reconciler acts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from modelfactory_operator.logic import runs
from modelfactory_operator.logic.kinds import Kind
from modelfactory_operator.logic.plans import RunObservation, RunPlan

from .reconciler import Reconciler, now

Event = tuple[str, str, str]


@dataclass
class Prepared:
    """What a kind makes of its resource before the run is observed."""

    rules: runs.RunRules
    plan: RunPlan | None = None
    blocked: runs.Blocked | None = None
    # Events of what happened before the decision (a trigger fired, a promotion).
    events: list[Event] = field(default_factory=list)


Prepare = Callable[[Reconciler, dict[str, Any], dict[str, Any]], Awaitable[Prepared]]


async def observe_run(r: Reconciler, plan: RunPlan | None) -> tuple[RunObservation, bool]:
    """A run's Job, RayJob or process, and whether a RayJob can be made at all."""
    if plan is None:
        return RunObservation("absent"), True
    observation = await r.launcher.observe_run(plan)
    rayjob_ok = plan.mode != "rayjob" or await r.launcher.rayjob_available()
    return observation, rayjob_ok


async def run_turn(
    r: Reconciler, kind: Kind, namespace: str, name: str, coalesce: bool, prepare: Prepare
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """One reconcile of a resource that starts runs: (the resource as read, the status
    written), or None when there was nothing to do."""
    key = (kind.plural, namespace, name)
    async with r.resource(key, coalesce) as body:
        if body is None:
            return None
        status = dict(body.get("status") or {})
        prepared = await prepare(r, body, status)
        plan = prepared.plan
        observation, rayjob_ok = await observe_run(r, plan)
        decision = runs.decide(
            prepared.rules,
            body["metadata"].get("generation"),
            status,
            plan,
            prepared.blocked,
            observation,
            rayjob_ok,
            now(),
        )
        decision.events[:0] = prepared.events
        launcher = r.launcher

        async def launch() -> int | None:
            assert plan is not None
            return await launcher.launch_run(plan)

        await r.act(kind.plural, body, decision, launch, plan.hash if plan else "")
        return body, decision.status
