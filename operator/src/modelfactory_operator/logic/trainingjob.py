"""TrainingJob: render a run plan from the spec, decide the status from what is observed."""

from __future__ import annotations

from typing import Any

from modelfactory_api import quantity
from modelfactory_api.pod import PodSettings
from modelfactory_api.runtime import (
    RAY_VERSION,
    JobIdentity,
    RaySizing,
    ReportSpec,
    TrainingRuntimeConfig,
)
from modelfactory_api.trainingjob import (
    ComputeSpec,
    ModelRef,
    ModelVersion,
    TrainingJobSpec,
    TrainingResult,
    Trigger,
)
from modelfactory_operator.logic import conditions as cond
from modelfactory_operator.logic import names, pod, promotion, runs, storage
from modelfactory_operator.logic.plans import (
    Decision,
    RunObservation,
    TrainingPlan,
    config_hash,
)

HISTORY_LIMIT = 20
# Spec fields that change how a run is executed but not what it produces.
RUN_CONTROL_FIELDS = (
    "suspend",
    "ttlSecondsAfterFinished",
    "activeDeadlineSeconds",
    "backoffLimit",
    "retrain",
    "promotion",
)
# Ray's own default share of memory for its object store, taken of the pod's memory instead of
# the node's; Ray refuses an object store below 75 MiB.
OBJECT_STORE_SHARE = 0.3
OBJECT_STORE_MIN_BYTES = 75 * 2**20


def split_image(image: str) -> dict[str, str]:
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return {"repository": image, "tag": "latest", "pullPolicy": "IfNotPresent"}
    return {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"}


def run_inputs(body: dict[str, Any], spec: TrainingJobSpec) -> dict[str, str]:
    """What a run is made from: the spec (without run control), the retrain annotation (a
    person) and the last schedule or drift trigger."""
    meta = body["metadata"]
    what = spec.model_dump(mode="json", exclude=set(RUN_CONTROL_FIELDS))
    if spec.pod == PodSettings():
        # Runs from before spec.pod existed keep their ids (and are not run again).
        what.pop("pod")
    trigger = ((body.get("status") or {}).get("lastTrigger") or {}).get("id") or ""
    return {
        "spec": config_hash(what),
        "manual": (meta.get("annotations") or {}).get(names.RETRAIN_ANNOTATION) or "",
        "auto": trigger,
    }


def current_run_id(body: dict[str, Any], spec: TrainingJobSpec) -> str:
    """A new run for a new spec, a new retrain annotation or a new trigger."""
    inputs = run_inputs(body, spec)
    token = f"{inputs['manual']}|{inputs['auto']}" if inputs["auto"] else inputs["manual"]
    return names.run_id(body["metadata"]["uid"], inputs["spec"], token or None)


def run_trigger(status: dict[str, Any], inputs: dict[str, str]) -> Trigger:
    """Why a new run with these inputs starts: what differs from the last run's."""
    before = status.get("runInputs") or {}
    if before and before.get("spec") != inputs["spec"]:
        return "spec"
    if inputs["manual"] != before.get("manual", ""):
        return "manual" if inputs["manual"] else "spec"
    if inputs["auto"] and inputs["auto"] != before.get("auto", ""):
        kind = (status.get("lastTrigger") or {}).get("kind")
        return "drift" if kind == "drift" else "schedule"
    return "spec"


def ray_sizing(compute: ComputeSpec) -> RaySizing:
    """A Ray that fits the pod's requests, not the node (or laptop) under it."""
    memory = quantity.memory_bytes(compute.memory)
    store = max(int(memory * OBJECT_STORE_SHARE), OBJECT_STORE_MIN_BYTES)
    return RaySizing(
        numCpus=quantity.whole_cpus(compute.cpu), memoryBytes=memory, objectStoreBytes=store
    )


def render(
    body: dict[str, Any],
    spec: TrainingJobSpec,
    image: str,
    report_kind: str = "kubernetes",
    mount_root: str = storage.CLUSTER_MOUNT_ROOT,
) -> TrainingPlan:
    meta = body["metadata"]
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    rid = current_run_id(body, spec)
    inputs = run_inputs(body, spec)
    # A run keeps the image it started with: an operator upgraded meanwhile (a new default image)
    # must not change the pod template of a Job that already exists. So do its trigger and the
    # promoted version it compares with.
    status = body.get("status") or {}
    same_run = status.get("runId") == rid
    trigger: Trigger = (
        status.get("runTrigger") or "spec" if same_run else run_trigger(status, inputs)
    )
    baseline = status.get("runBaseline") if same_run else status.get("model")
    run_image = (status.get("runImage") if same_run else None) or spec.image or image
    # Likewise the generation the run started from (a run-control edit bumps the generation).
    generation = status.get("runGeneration") if same_run else None
    generation = generation or meta.get("generation")
    # The workload reads and writes file paths where pvc:// claims are mounted.
    # Run control is the Job's business, not the workload's: leaving it out of the workload's
    # configuration keeps the pod template (immutable in a Job) the same when it changes.
    workload_spec = spec.model_copy(
        deep=True,
        update={f: TrainingJobSpec.model_fields[f].default for f in RUN_CONTROL_FIELDS},
    )
    workload_spec.dataset.uri = storage.to_workload(
        spec.dataset.uri, mount_root, "spec.dataset.uri"
    )
    workload_spec.output.storageUri = storage.to_workload(
        spec.output.storageUri, mount_root, "spec.output.storageUri"
    )
    runtime = TrainingRuntimeConfig(
        spec=workload_spec,
        job=JobIdentity(namespace=namespace, name=name, uid=uid, generation=generation),
        runId=rid,
        report=ReportSpec(kind=report_kind),  # type: ignore[arg-type]
        ray=ray_sizing(spec.compute),
        trigger=trigger,
        baseline=(
            ModelRef(
                version=baseline["version"],
                uri=storage.to_workload(baseline["uri"], mount_root, "status.model.uri"),
                digest=baseline["digest"],
            )
            if baseline
            else None
        ),
        gateMetric=spec.promotion.metric,
    )
    mode = "rayjob" if spec.compute.workers > 0 else "job"
    # KubeRay derives further names from a RayJob's: it takes at most 47 characters and a letter
    # first.
    job_name = (
        names.dns_name(name if name[0].isalpha() else f"tj-{name}", rid, max_len=47)
        if mode == "rayjob"
        else names.dns_name(name, rid)
    )
    values: dict[str, Any] = {
        "owner": {
            "apiVersion": body.get("apiVersion", "modelfactory.dev/v1alpha1"),
            "kind": "TrainingJob",
            "name": name,
            "uid": uid,
        },
        "labels": names.labels("training", name, "modelfactory-training"),
        "mode": mode,
        "jobName": job_name,
        "runId": rid,
        "serviceAccountName": names.dns_name(name, "trainer"),
        "trainingJobName": name,
        "image": split_image(run_image),
        "command": ["modelfactory-train"],
        "env": runtime.to_env(),
        "resources": {"cpu": spec.compute.cpu, "memory": spec.compute.memory},
        "workers": spec.compute.workers,
        "ray": {"version": RAY_VERSION},
        "backoffLimit": spec.backoffLimit,
        "activeDeadlineSeconds": spec.activeDeadlineSeconds,
        "ttlSecondsAfterFinished": spec.ttlSecondsAfterFinished,
        "suspend": spec.suspend,
        "pod": pod.values(spec.pod),
        **storage.mounts([spec.dataset.uri, spec.output.storageUri], mount_root, read_only=False),
    }
    return TrainingPlan(
        namespace=namespace,
        name=name,
        uid=uid,
        run_id=rid,
        release=names.release_name("tj", name),
        job_name=job_name,
        mode=mode,  # type: ignore[arg-type]
        suspend=spec.suspend,
        runtime=runtime,
        chart_values=values,
        mount_root=mount_root,
        image=run_image,
        run_inputs=inputs,
        baseline=dict(baseline) if baseline else None,
        promotion=spec.promotion,
    )


def training(plan: TrainingPlan) -> TrainingRuntimeConfig:
    """A TrainingJob's plan carries a training configuration (a BatchPrediction's does not)."""
    assert isinstance(plan.runtime, TrainingRuntimeConfig)
    return plan.runtime


def _with_history(history: list[dict[str, Any]], model: dict[str, Any]) -> list[dict[str, Any]]:
    """The history with `model` in it: the newest HISTORY_LIMIT versions, and the promoted one
    whatever its age (followers serve it)."""
    kept = [m for m in history if m.get("version") != model.get("version")]
    kept.append(model)
    kept.sort(key=lambda m: int(m.get("version") or 0))
    while len(kept) > HISTORY_LIMIT:
        oldest = next((m for m in kept if m.get("phase") != "Promoted"), kept[0])
        kept.remove(oldest)
    return kept


def record_version(
    new: dict[str, Any], result: TrainingResult, plan: TrainingPlan, now: str
) -> list[tuple[str, str, str]]:
    """Put the run's version in the history and let the gate decide on it (once)."""
    assert result.model is not None
    model = result.model.model_dump()
    model["uri"] = storage.from_workload(model["uri"], plan.mount_root)
    history = list(new.get("history") or [])
    known = next((m for m in history if m.get("version") == model["version"]), None)
    new["latestVersion"] = model["version"]
    if known is not None and known.get("phase"):
        return []  # decided on an earlier pass
    phase, message = promotion.judge(result, plan.promotion)
    baseline = result.baseline
    entry = ModelVersion(
        **model,
        phase="Candidate" if phase == "Promoted" else phase,  # type: ignore[arg-type]
        trigger=result.trigger or training(plan).trigger,
        dataDigest=result.dataDigest,
        metric=plan.promotion.metric or result.metric,
        score=result.score,
        baselineVersion=baseline.version if baseline else None,
        baselineScore=baseline.score if baseline else None,
        decidedBy=promotion.BY_GATE if phase != "Candidate" else None,
        message=message,
        trainedAt=now,
    ).model_dump(exclude_none=True)
    new["history"] = _with_history(history, entry)
    version = model["version"]
    if phase == "Promoted":
        promotion.promote(new, version, promotion.BY_GATE, message, now)
        return [("Normal", "Promoted", f"version {version} promoted: {message}")]
    if phase == "Rejected":
        return [("Warning", "Rejected", f"version {version} rejected: {message}")]
    return [("Normal", "Candidate", f"version {version} is a candidate: {message}")]


def decide(
    generation: int | None,
    status: dict[str, Any],
    plan: TrainingPlan | None,
    spec_error: str | None,
    observation: RunObservation,
    rayjob_available: bool,
    now: str,
) -> Decision:
    """The next status of a TrainingJob, and whether its run must be (re)launched."""
    conds = cond.Rewrite(status.get("conditions") or [], generation, now)
    before = conds.before
    new = dict(status)
    setc = conds.set

    launch = False
    gate_events: list[tuple[str, str, str]] = []
    if spec_error is not None or plan is None:
        message = spec_error or "invalid spec"
        setc("Failed", True, "InvalidSpec", message)
        setc("Running", False, "InvalidSpec", message)
        setc("Complete", False, "InvalidSpec", message)
    elif plan.mode == "rayjob" and not rayjob_available:
        message = runs.rayjob_missing(plan)
        setc("Failed", True, "RayJobCRDMissing", message)
        setc("Running", False, "RayJobCRDMissing", message)
        setc("Complete", False, "RayJobCRDMissing", message)
    else:
        raw = status.get("result")
        result = TrainingResult.model_validate(raw) if raw else None
        if result is not None and result.runId != plan.run_id:
            result = None
        same_run = status.get("runId") == plan.run_id
        failed_before = same_run and cond.is_true(before, "Failed")
        new["runId"] = plan.run_id
        new["attempts"] = observation.attempts
        if observation.start_time:
            new["startTime"] = observation.start_time
        elif not same_run:
            new.pop("startTime", None)
        if not same_run:
            new.pop("completionTime", None)
            new.pop("progress", None)
        if result is not None:
            new["progress"] = result.progress.model_dump()
        if result is not None and result.succeeded and result.model is not None:
            gate_events = record_version(new, result, plan, now)
            new["metric"] = result.metric
            new["metrics"] = result.metrics
            new["bestParams"] = result.bestParams
            new["score"] = result.metrics.get(f"test_{result.metric}")
            new["completionTime"] = new.get("completionTime") or observation.completion_time or now
            msg = f"model version {result.model.version} written to {result.model.uri}"
            setc("Complete", True, "TrainingSucceeded", msg)
            setc("Running", False, "TrainingSucceeded", msg)
            setc("Failed", False, "TrainingSucceeded", msg)
        elif result is not None:
            msg = result.message or "training failed"
            new["completionTime"] = new.get("completionTime") or observation.completion_time or now
            setc("Failed", True, result.reason or "TrainingFailed", msg)
            setc("Running", False, result.reason or "TrainingFailed", msg)
            setc("Complete", False, result.reason or "TrainingFailed", msg)
        elif (
            ended := runs.ended_without_result(
                observation, before, failed_before, plan.run_id, "training"
            )
        ) is not None:
            reason, msg = ended
            new["completionTime"] = new.get("completionTime") or observation.completion_time or now
            setc("Failed", True, reason, msg)
            setc("Running", False, reason, msg)
            setc("Complete", False, reason, msg)
        else:
            setc("Failed", False, "NoFailure", "")
            setc("Complete", False, "Training", "no model from this run yet")
            if observation.state == "absent" and not plan.suspend:
                launch = True
                setc("Running", False, "Launching", f"starting training run {plan.run_id}")
            elif observation.state == "suspended" or plan.suspend:
                setc("Running", False, "Suspended", "spec.suspend is true")
            elif observation.state == "running":
                progress = status.get("progress") or {}
                done = progress.get("trialsCompleted", 0)
                total = progress.get("trialsTotal", 0)
                detail = f": {done}/{total} trials" if total else ""
                setc("Running", True, "Training", f"run {plan.run_id} is training{detail}")
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
            new["runTrigger"] = training(plan).trigger
            new["runInputs"] = plan.run_inputs
            if plan.baseline:
                new["runBaseline"] = plan.baseline
            else:
                new.pop("runBaseline", None)
        if plan.suspend:
            setc("Suspended", True, "Suspended", "spec.suspend is true")
        else:
            setc("Suspended", False, "NotSuspended", "")
    if new.get("model") and not new.get("promotedVersion"):
        new["promotedVersion"] = new["model"]["version"]  # a status from before the gate
    if new.get("model"):
        setc(
            "Ready",
            True,
            "ModelAvailable",
            f"model version {new['model']['version']} is promoted and ready",
        )
    else:
        setc("Ready", False, "NoModelYet", "no model version has been trained yet")
    new["conditions"] = conds.conditions
    new["observedGeneration"] = generation
    new["phase"] = cond.trainingjob_phase(conds.conditions)
    events = list(gate_events)
    for change in conds.changes():
        if change["type"] == "Ready" and change["status"] == "False" and not before:
            continue
        if change["status"] != "True" and change["type"] not in ("Ready",):
            continue
        kind = "Warning" if change["type"] == "Failed" else "Normal"
        events.append((kind, change["reason"], change["message"] or change["type"]))
    return Decision(status=new, launch=launch, events=events)


def retraining_on(trainingjobs: list[dict[str, Any]], modelservice: str) -> list[dict[str, Any]]:
    """TrainingJobs that retrain when this ModelService drifts."""
    return [
        tj
        for tj in trainingjobs
        if (((tj.get("spec") or {}).get("retrain") or {}).get("onDrift") or {}).get("modelService")
        == modelservice
    ]
