"""A TrainingJob's turn: a person's promotion and the retrain triggers first (a trigger that
fires is a new run id for the plan rendered next), then the shared run turn; ModelServices and
BatchPredictions that follow it look again when its promoted model changes."""

from __future__ import annotations

import asyncio
from typing import Any

from modelfactory_operator.io import kube
from modelfactory_operator.logic import kinds, promotion, retrain, runs, validate
from modelfactory_operator.logic import modelservice as mslogic
from modelfactory_operator.logic import trainingjob as tjlogic

from .reconciler import Key, Reconciler, log, now
from .run_turn import Prepared, run_turn


async def prepare(r: Reconciler, body: dict[str, Any], status: dict[str, Any]) -> Prepared:
    meta = body["metadata"]
    key = (kinds.TRAININGJOB.plural, meta["namespace"], meta["name"])
    prepared = Prepared(rules=tjlogic.TrainingRules())
    try:
        spec = validate.trainingjob_spec(body.get("spec") or {}, r.launcher.name)
        prepared.events += promotion.manual(
            status,
            (meta.get("annotations") or {}).get(promotion.PROMOTE_ANNOTATION),
            now(),
        )
        prepared.events += await retrain_triggers(r, key, spec, status, meta)
        prepared.plan = tjlogic.render(
            {**body, "status": status},
            spec,
            r.settings.training_image,
            r.report_kind,
            r.mount_root,
        )
    except validate.SpecError as exc:
        prepared.blocked = runs.invalid(str(exc))
    return prepared


async def retrain_triggers(
    r: Reconciler, key: Key, spec: Any, status: dict[str, Any], meta: dict[str, Any]
) -> list[runs.Event]:
    """Fire the schedule or drift trigger that is due, into `status`."""
    if spec.retrain is None:
        return []
    service = None
    if spec.retrain.onDrift is not None:
        service = await asyncio.to_thread(
            kube.get_modelservice, key[1], spec.retrain.onDrift.modelService
        )
    decided = retrain.decide(
        spec.retrain, status, meta.get("creationTimestamp"), service, r.utcnow()
    )
    r.apply_trigger(key, decided, status)
    return decided.events


async def trainingjob_turn(r: Reconciler, namespace: str, name: str, coalesce: bool) -> None:
    done = await run_turn(r, kinds.TRAININGJOB, namespace, name, coalesce, prepare)
    if done is None:
        return
    body, status = done
    if (body.get("status") or {}).get("model") != status.get("model"):
        await followers(r, namespace, name)


async def followers(r: Reconciler, namespace: str, trainingjob: str) -> None:
    services = await asyncio.to_thread(kube.list_modelservices, namespace)
    for ms in mslogic.following(services, trainingjob):
        key = (kinds.MODELSERVICE.plural, namespace, ms["metadata"]["name"])
        try:
            await r.reconcile(key, coalesce=True)
        except Exception:
            log.exception("updating ModelService %s after a new model failed", key[2])
    # BatchPredictions waiting for the TrainingJob's first model start now.
    batches = await asyncio.to_thread(kube.list_batchpredictions, namespace)
    for bp in mslogic.following(batches, trainingjob):
        if (bp.get("status") or {}).get("runId") is None:
            await r.nudge((kinds.BATCHPREDICTION.plural, namespace, bp["metadata"]["name"]))
