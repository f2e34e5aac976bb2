"""BatchPrediction: its runs score a dataset with a model version; render a run plan from the
spec and decide the status from what is observed, on the shared run lifecycle (logic/runs.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from modelfactory_api.batchprediction import BatchPredictionSpec, BatchResult
from modelfactory_api.run import RunReason
from modelfactory_api.runtime import BatchRuntimeConfig, JobIdentity, ReportSpec
from modelfactory_api.trainingjob import RetrainSpec
from modelfactory_operator.logic import conditions as cond
from modelfactory_operator.logic import names, retrain, runs, storage
from modelfactory_operator.logic.kinds import BATCHPREDICTION
from modelfactory_operator.logic.modelservice import ResolvedModel
from modelfactory_operator.logic.plans import Decision, RunObservation, RunPlan, config_hash
from modelfactory_operator.logic.trainingjob import ray_sizing

# A scoring run retries once on an infrastructure failure (a pod evicted); its output is only
# committed when it finishes, so a retry never duplicates rows.
BACKOFF_LIMIT = 1


def run_id(body: dict[str, Any], spec: BatchPredictionSpec) -> str:
    """One run per spec and scheduled time: a restarted operator computes the same id and never
    starts a second."""
    what = spec.model_dump(mode="json", exclude={"schedule"})
    trigger = ((body.get("status") or {}).get("lastTrigger") or {}).get("id")
    return names.run_id(body["metadata"]["uid"], config_hash(what), trigger)


def schedule(
    spec: BatchPredictionSpec, status: dict[str, Any], created: str | None, now: dt.datetime
) -> retrain.TriggerDecision:
    """A scheduled time that is due fires (into status.lastTrigger) as a TrainingJob's retrain
    schedule does; its id is part of the run id, so it is a new run."""
    decided = retrain.decide(
        RetrainSpec(schedule=spec.schedule, minIntervalSeconds=0), status, created, None, now
    )
    decided.events = [
        (kind, "ScheduledRun", message.replace("retraining for", "scoring for"))
        if reason == "ScheduledRetrain"
        else (kind, reason, message)
        for kind, reason, message in decided.events
    ]
    return decided


def run_model(status: dict[str, Any], rid: str, resolved: ResolvedModel | None) -> ResolvedModel:
    """The version a run scores with: the one it started with, for its whole life (a
    TrainingJob promoting another meanwhile does not change a running run)."""
    if status.get("runId") == rid and status.get("model"):
        m = status["model"]
        return ResolvedModel(uri=m["uri"], digest=m["digest"], version=m.get("version"))
    assert resolved is not None
    return resolved


def render(
    body: dict[str, Any],
    spec: BatchPredictionSpec,
    model: ResolvedModel,
    image: str,
    report_kind: str = "kubernetes",
    mount_root: str = storage.CLUSTER_MOUNT_ROOT,
) -> RunPlan:
    meta = body["metadata"]
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    rid = run_id(body, spec)
    start = runs.run_start(body, rid, spec.image, image)
    workload_input = spec.input.model_copy(
        update={"uri": storage.to_workload(spec.input.uri, mount_root, "spec.input.uri")}
    )
    workload_output = spec.output.model_copy(
        update={"uri": storage.to_workload(spec.output.uri, mount_root, "spec.output.uri")}
    )
    runtime = BatchRuntimeConfig(
        modelUri=storage.to_workload(model.uri, mount_root, "spec.model.uri"),
        modelDigest=model.digest,
        modelVersion=model.version,
        input=workload_input,
        output=workload_output,
        runtime=spec.runtime,
        batchSize=spec.batchSize,
        job=JobIdentity(namespace=namespace, name=name, uid=uid, generation=start.generation),
        runId=rid,
        report=ReportSpec(kind=report_kind),  # type: ignore[arg-type]
        ray=ray_sizing(spec.compute),
    )
    return runs.run_plan(
        BATCHPREDICTION,
        body,
        rid,
        start,
        runtime,
        spec.compute,
        spec.pod,
        "scorer",
        {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": None,
            "ttlSecondsAfterFinished": None,
            "suspend": False,
        },
        storage.mounts(
            list(dict.fromkeys([spec.input.uri, spec.output.uri, model.uri])),
            mount_root,
            read_only=False,
        ),
        mount_root,
    )


class ScoringRules(runs.RunRules):
    """What a BatchPrediction adds to the run lifecycle: a run scores with one model version
    and commits its output with a manifest; the resource is Ready once that output is
    committed."""

    kind = BATCHPREDICTION

    what = "scoring"
    running_reason = RunReason.SCORING
    failed_reason = RunReason.SCORING_FAILED
    waiting = "no committed output from this run yet"
    suspendable = False
    run_scoped = ("manifest", "drifted")
    result_model = BatchResult

    def __init__(self, model: ResolvedModel | None) -> None:
        self.model = model

    def prepare(self, new: dict[str, Any], plan: RunPlan) -> None:
        if self.model is not None:
            m = self.model
            new["model"] = {"uri": m.uri, "digest": m.digest, "version": m.version}

    def progress(self, result: BatchResult, new: dict[str, Any]) -> None:
        if not result.succeeded:
            return
        progress = dict(new.get("progress") or {})
        progress.update(rowsRead=result.rowsRead, rowsWritten=result.rowsWritten)
        if progress.get("bytesTotal"):
            progress["percent"] = 100.0
        new["progress"] = progress

    def succeeded(
        self, new: dict[str, Any], result: BatchResult, plan: RunPlan, now: str
    ) -> tuple[str, str, list[tuple[str, str, str]]]:
        new["manifest"] = (
            storage.from_workload(result.manifest, plan.mount_root) if result.manifest else None
        )
        new["drifted"] = (result.drift or {}).get("drifted")
        message = (
            f"{result.rowsWritten} rows scored in {result.seconds or 0:.1f}s; "
            f"manifest {result.manifest}"
        )
        return RunReason.SCORED, message, []

    def running_detail(self, new: dict[str, Any], status: dict[str, Any]) -> str:
        progress = new.get("progress") or {}
        pct = progress.get("percent")
        return f": {progress.get('rowsWritten', 0)} rows written" + (
            f" ({pct:.0f}%)" if isinstance(pct, int | float) else ""
        )

    def ready(self, new: dict[str, Any], conditions: cond.Conditions) -> tuple[bool, str, str]:
        if cond.is_true(conditions, "Complete"):
            return True, RunReason.OUTPUT_COMMITTED, f"output committed: {new.get('manifest')}"
        failed = cond.get(conditions, "Failed") or {}
        if failed.get("status") == "True":
            return False, str(failed.get("reason")), str(failed.get("message"))
        return False, RunReason.NO_OUTPUT_YET, "no committed output from the current run yet"


def decide(
    generation: int | None,
    status: dict[str, Any],
    plan: RunPlan | None,
    spec_error: str | None,
    unresolved: tuple[str, str] | None,
    model: ResolvedModel | None,
    observation: RunObservation,
    rayjob_available: bool,
    now: str,
) -> Decision:
    """The next status of a BatchPrediction, and whether its run must be launched.
    `unresolved`: why no model version could be found (reason, message); `model`: the version
    the run scores with."""
    blocked = None
    if spec_error is not None:
        blocked = runs.invalid(spec_error)
    elif plan is None:
        reason, message = unresolved or (RunReason.RESOLVING_MODEL, "resolving the model")
        blocked = runs.Blocked(False, reason, message)
    return runs.decide(
        ScoringRules(model), generation, status, plan, blocked, observation, rayjob_available, now
    )
