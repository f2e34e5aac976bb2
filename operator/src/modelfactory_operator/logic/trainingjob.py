"""TrainingJob: render a run plan from the spec, decide the status from what is observed."""

from __future__ import annotations

from typing import Any

from modelfactory_api import quantity
from modelfactory_api.pod import PodSettings
from modelfactory_api.runtime import JobIdentity, RaySizing, ReportSpec, TrainingRuntimeConfig
from modelfactory_api.trainingjob import ComputeSpec, TrainingJobSpec, TrainingResult
from modelfactory_operator.logic import conditions as cond
from modelfactory_operator.logic import names, pod, storage
from modelfactory_operator.logic.plans import (
    Decision,
    RunObservation,
    TrainingPlan,
    config_hash,
)

HISTORY_LIMIT = 20
# Spec fields that change how a run is executed but not what it produces.
RUN_CONTROL_FIELDS = ("suspend", "ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit")
# Ray's own default share of memory for its object store, taken of the pod's memory instead of
# the node's; Ray refuses an object store below 75 MiB.
OBJECT_STORE_SHARE = 0.3
OBJECT_STORE_MIN_BYTES = 75 * 2**20


def split_image(image: str) -> dict[str, str]:
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return {"repository": image, "tag": "latest", "pullPolicy": "IfNotPresent"}
    return {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"}


def current_run_id(body: dict[str, Any], spec: TrainingJobSpec) -> str:
    """A new run for a new spec (ignoring run control) or a new retrain annotation."""
    meta = body["metadata"]
    what = spec.model_dump(mode="json", exclude=set(RUN_CONTROL_FIELDS))
    if spec.pod == PodSettings():
        # Runs from before spec.pod existed keep their ids (and are not run again).
        what.pop("pod")
    retrain = (meta.get("annotations") or {}).get(names.RETRAIN_ANNOTATION)
    return names.run_id(meta["uid"], config_hash(what), retrain)


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
    # The workload reads and writes file paths where pvc:// claims are mounted.
    workload_spec = spec.model_copy(deep=True)
    workload_spec.dataset.uri = storage.to_workload(spec.dataset.uri, mount_root)
    workload_spec.output.storageUri = storage.to_workload(spec.output.storageUri, mount_root)
    runtime = TrainingRuntimeConfig(
        spec=workload_spec,
        job=JobIdentity(namespace=namespace, name=name, uid=uid, generation=meta.get("generation")),
        runId=rid,
        report=ReportSpec(kind=report_kind),  # type: ignore[arg-type]
        ray=ray_sizing(spec.compute),
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
        "image": split_image(spec.image or image),
        "command": ["modelfactory-train"],
        "env": runtime.to_env(),
        "resources": {"cpu": spec.compute.cpu, "memory": spec.compute.memory},
        "workers": spec.compute.workers,
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
    )


def _with_history(history: list[dict[str, Any]], model: dict[str, Any]) -> list[dict[str, Any]]:
    kept = [m for m in history if m.get("version") != model.get("version")]
    kept.append(model)
    kept.sort(key=lambda m: int(m.get("version") or 0))
    return kept[-HISTORY_LIMIT:]


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
    if spec_error is not None or plan is None:
        message = spec_error or "invalid spec"
        setc("Failed", True, "InvalidSpec", message)
        setc("Running", False, "InvalidSpec", message)
        setc("Complete", False, "InvalidSpec", message)
    elif plan.mode == "rayjob" and not rayjob_available:
        message = (
            f"spec.compute.workers is {plan.chart_values['workers']}, which runs a KubeRay "
            "RayJob, but the RayJob CRD (rayjobs.ray.io) is not installed in this cluster: "
            "install KubeRay or set spec.compute.workers to 0"
        )
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
            model = result.model.model_dump()
            model["uri"] = storage.from_workload(model["uri"], plan.mount_root)
            new["model"] = model
            new["history"] = _with_history(list(status.get("history") or []), model)
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
        elif observation.state in ("succeeded", "failed") or (
            observation.state == "absent" and failed_before
        ):
            if observation.state == "succeeded":
                reason, msg = (
                    "NoResult",
                    (
                        "the training run finished without reporting a result "
                        "(status.result was never written for run " + plan.run_id + ")"
                    ),
                )
            elif observation.state == "failed":
                reason = observation.reason or "TrainingFailed"
                msg = observation.message or "the training run failed without reporting a result"
            else:
                prev = cond.get(before, "Failed") or {}
                reason, msg = str(prev.get("reason")), str(prev.get("message"))
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
        if observation.state != "absent" and status.get("appliedHash") != plan.hash:
            # Run control changed (e.g. suspend), or an earlier apply was cut short: apply the
            # same run again, which is idempotent.
            launch = True
        if plan.suspend:
            setc("Suspended", True, "Suspended", "spec.suspend is true")
        else:
            setc("Suspended", False, "NotSuspended", "")
    if new.get("model"):
        setc("Ready", True, "ModelAvailable", f"model version {new['model']['version']} is ready")
    else:
        setc("Ready", False, "NoModelYet", "no model version has been trained yet")
    new["conditions"] = conds.conditions
    new["observedGeneration"] = generation
    new["phase"] = cond.trainingjob_phase(conds.conditions)
    events = []
    for change in conds.changes():
        if change["type"] == "Ready" and change["status"] == "False" and not before:
            continue
        if change["status"] != "True" and change["type"] not in ("Ready",):
            continue
        kind = "Warning" if change["type"] == "Failed" else "Normal"
        events.append((kind, change["reason"], change["message"] or change["type"]))
    return Decision(status=new, launch=launch, events=events)
