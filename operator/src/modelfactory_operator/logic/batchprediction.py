"""BatchPrediction: render a scoring run from the spec, decide the status from what is
observed. A run is one Job (or RayJob, or local process) like a training run, so it reuses the
training-job chart and the launchers' run handling; the workload is `modelfactory-batch`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from modelfactory_api.batchprediction import (
    BATCHPREDICTION_KIND,
    BATCHPREDICTION_PLURAL,
    BatchPredictionSpec,
    BatchResult,
)
from modelfactory_api.runtime import RAY_VERSION, BatchRuntimeConfig, JobIdentity, ReportSpec
from modelfactory_api.trainingjob import RetrainSpec
from modelfactory_operator.logic import conditions as cond
from modelfactory_operator.logic import names, pod, retrain, runs, storage
from modelfactory_operator.logic.modelservice import ResolvedModel
from modelfactory_operator.logic.plans import Decision, RunObservation, TrainingPlan, config_hash
from modelfactory_operator.logic.trainingjob import ray_sizing, split_image

ENTRYPOINT = "modelfactory-batch"
APP = "modelfactory-batch"
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
) -> TrainingPlan:
    meta = body["metadata"]
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    rid = run_id(body, spec)
    status = body.get("status") or {}
    same_run = status.get("runId") == rid
    run_image = (status.get("runImage") if same_run else None) or spec.image or image
    generation = (status.get("runGeneration") if same_run else None) or meta.get("generation")
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
        job=JobIdentity(namespace=namespace, name=name, uid=uid, generation=generation),
        runId=rid,
        report=ReportSpec(kind=report_kind),  # type: ignore[arg-type]
        ray=ray_sizing(spec.compute),
    )
    mode = "rayjob" if spec.compute.workers > 0 else "job"
    job_name = (
        names.dns_name(name if name[0].isalpha() else f"bp-{name}", rid, max_len=47)
        if mode == "rayjob"
        else names.dns_name(name, rid)
    )
    values: dict[str, Any] = {
        "owner": {
            "apiVersion": body.get("apiVersion", "modelfactory.dev/v1alpha1"),
            "kind": BATCHPREDICTION_KIND,
            "name": name,
            "uid": uid,
        },
        "labels": names.labels("batch", name, APP),
        "mode": mode,
        "jobName": job_name,
        "runId": rid,
        "serviceAccountName": names.dns_name(name, "scorer"),
        "trainingJobName": name,
        "statusResource": f"{BATCHPREDICTION_PLURAL}/status",
        "image": split_image(run_image),
        "command": [ENTRYPOINT],
        "env": runtime.to_env(),
        "resources": {"cpu": spec.compute.cpu, "memory": spec.compute.memory},
        "workers": spec.compute.workers,
        "ray": {"version": RAY_VERSION},
        "backoffLimit": BACKOFF_LIMIT,
        "activeDeadlineSeconds": None,
        "ttlSecondsAfterFinished": None,
        "suspend": False,
        "pod": pod.values(spec.pod),
        **storage.mounts(
            list(dict.fromkeys([spec.input.uri, spec.output.uri, model.uri])),
            mount_root,
            read_only=False,
        ),
    }
    return TrainingPlan(
        namespace=namespace,
        name=name,
        uid=uid,
        run_id=rid,
        release=names.release_name("bp", name),
        job_name=job_name,
        mode=mode,  # type: ignore[arg-type]
        suspend=False,
        runtime=runtime,
        chart_values=values,
        mount_root=mount_root,
        image=run_image,
        plural=BATCHPREDICTION_PLURAL,
        entrypoint=ENTRYPOINT,
    )


def _finish(setc: Any, failed: bool, reason: str, message: str) -> None:
    setc("Failed", failed, reason, message)
    setc("Running", False, reason, message)
    setc("Complete", not failed, reason, message)


def decide(
    generation: int | None,
    status: dict[str, Any],
    plan: TrainingPlan | None,
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
    conds = cond.Rewrite(status.get("conditions") or [], generation, now)
    before = conds.before
    new = dict(status)
    setc = conds.set
    launch = False
    if spec_error is not None:
        _finish(setc, True, "InvalidSpec", spec_error)
    elif plan is None:
        reason, message = unresolved or ("Pending", "resolving the model")
        setc("Failed", False, "NoFailure", "")
        setc("Running", False, reason, message)
        setc("Complete", False, reason, message)
    elif plan.mode == "rayjob" and not rayjob_available:
        _finish(setc, True, "RayJobCRDMissing", runs.rayjob_missing(plan))
    else:
        raw = status.get("result")
        result = BatchResult.model_validate(raw) if raw else None
        if result is not None and result.runId != plan.run_id:
            result = None
        same_run = status.get("runId") == plan.run_id
        failed_before = same_run and cond.is_true(before, "Failed")
        new["runId"] = plan.run_id
        new["attempts"] = observation.attempts
        if model is not None:
            new["model"] = {"uri": model.uri, "digest": model.digest, "version": model.version}
        if not same_run:
            for key in ("startTime", "completionTime", "progress", "manifest", "drifted"):
                new.pop(key, None)
        if observation.start_time:
            new["startTime"] = observation.start_time
        done = new.get("completionTime") or observation.completion_time or now
        if result is not None and result.succeeded:
            new["completionTime"] = done
            new["manifest"] = (
                storage.from_workload(result.manifest, plan.mount_root) if result.manifest else None
            )
            drift = result.drift or {}
            new["drifted"] = drift.get("drifted")
            progress = dict(new.get("progress") or {})
            progress.update(rowsRead=result.rowsRead, rowsWritten=result.rowsWritten)
            if progress.get("bytesTotal"):
                progress["percent"] = 100.0
            new["progress"] = progress
            _finish(
                setc,
                False,
                "Scored",
                f"{result.rowsWritten} rows scored in {result.seconds or 0:.1f}s; "
                f"manifest {result.manifest}",
            )
        elif result is not None:
            new["completionTime"] = done
            _finish(setc, True, result.reason or "ScoringFailed", result.message or "failed")
        elif (
            ended := runs.ended_without_result(
                observation, before, failed_before, plan.run_id, "scoring"
            )
        ) is not None:
            new["completionTime"] = done
            _finish(setc, True, *ended)
        else:
            setc("Failed", False, "NoFailure", "")
            setc("Complete", False, "Scoring", "no committed output from this run yet")
            if observation.state == "absent":
                launch = True
                setc("Running", False, "Launching", f"starting scoring run {plan.run_id}")
            elif observation.state == "running":
                progress = new.get("progress") or {}
                pct = progress.get("percent")
                detail = f": {progress.get('rowsWritten', 0)} rows written" + (
                    f" ({pct:.0f}%)" if isinstance(pct, int | float) else ""
                )
                setc("Running", True, "Scoring", f"run {plan.run_id} is scoring{detail}")
            else:
                setc(
                    "Running",
                    False,
                    "Pending",
                    observation.message or f"run {plan.run_id} is waiting to start",
                )
        if runs.apply_again(result is not None, observation, status.get("appliedHash"), plan.hash):
            launch = True
        if launch:
            new["runImage"] = plan.image
            new["runGeneration"] = plan.runtime.job.generation
    new["conditions"] = conds.conditions
    new["observedGeneration"] = generation
    new["phase"] = cond.trainingjob_phase(conds.conditions)
    events = []
    for change in conds.changes():
        if change["status"] != "True":
            continue
        kind = "Warning" if change["type"] == "Failed" else "Normal"
        events.append((kind, change["reason"], change["message"] or change["type"]))
    return Decision(status=new, launch=launch, events=events)
