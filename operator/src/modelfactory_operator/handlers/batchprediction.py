"""A BatchPrediction's turn: its schedule first (a scheduled time that fires is a new run id),
then the model version the run scores with (kept for the run's whole life), then the shared
run turn."""

from __future__ import annotations

import asyncio
from typing import Any

from modelfactory_operator.io import kube
from modelfactory_operator.logic import batchprediction as bplogic
from modelfactory_operator.logic import kinds, runs, validate
from modelfactory_operator.logic import modelservice as mslogic

from .reconciler import Reconciler
from .run_turn import Prepared, run_turn


async def prepare(r: Reconciler, body: dict[str, Any], status: dict[str, Any]) -> Prepared:
    meta = body["metadata"]
    key = (kinds.BATCHPREDICTION.plural, meta["namespace"], meta["name"])
    try:
        spec = validate.batchprediction_spec(body.get("spec") or {}, r.launcher.name)
    except validate.SpecError as exc:
        return Prepared(rules=bplogic.ScoringRules(None), blocked=runs.invalid(str(exc)))
    events: list[runs.Event] = []
    if spec.schedule is not None:
        decided = bplogic.schedule(spec, status, meta.get("creationTimestamp"), r.utcnow())
        r.apply_trigger(key, decided, status)
        events = decided.events
    seen = {**body, "status": status}
    rid = bplogic.run_id(seen, spec)
    resolved: mslogic.ResolvedModel | None = None
    if not (status.get("runId") == rid and status.get("model")):
        trainingjob = None
        if spec.model.trainingJob:
            trainingjob = await asyncio.to_thread(
                kube.get_trainingjob, meta["namespace"], spec.model.trainingJob
            )
        found = mslogic.resolve_source(spec.model, trainingjob)
        if isinstance(found, mslogic.Unresolved):
            return Prepared(
                rules=bplogic.ScoringRules(None),
                blocked=runs.Blocked(False, found.reason, found.message),
                events=events,
            )
        resolved = found
    model = bplogic.run_model(status, rid, resolved)
    plan = bplogic.render(seen, spec, model, r.settings.training_image, r.report_kind, r.mount_root)
    return Prepared(rules=bplogic.ScoringRules(model), plan=plan, events=events)


async def batchprediction_turn(r: Reconciler, namespace: str, name: str, coalesce: bool) -> None:
    await run_turn(r, kinds.BATCHPREDICTION, namespace, name, coalesce, prepare)
