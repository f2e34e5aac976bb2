"""TrainingJob: its runs train model versions; render a run plan from the spec and decide the
status from what is observed, on the shared run lifecycle (logic/runs.py)."""

from __future__ import annotations

from typing import Any

from modelfactory_api import quantity
from modelfactory_api.pod import PodSettings
from modelfactory_api.run import RunReason
from modelfactory_api.runtime import (
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
from modelfactory_operator.logic import names, promotion, runs, storage
from modelfactory_operator.logic.kinds import TRAININGJOB
from modelfactory_operator.logic.plans import (
    Decision,
    RunObservation,
    RunPlan,
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
) -> RunPlan:
    meta = body["metadata"]
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    rid = current_run_id(body, spec)
    inputs = run_inputs(body, spec)
    start = runs.run_start(body, rid, spec.image, image)
    # A run keeps its trigger and the promoted version it compares with, as it keeps its image.
    status = body.get("status") or {}
    trigger: Trigger = (
        status.get("runTrigger") or "spec" if start.same_run else run_trigger(status, inputs)
    )
    baseline = status.get("runBaseline") if start.same_run else status.get("model")
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
        job=JobIdentity(namespace=namespace, name=name, uid=uid, generation=start.generation),
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
    return runs.run_plan(
        TRAININGJOB,
        body,
        rid,
        start,
        runtime,
        spec.compute,
        spec.pod,
        "trainer",
        {
            "backoffLimit": spec.backoffLimit,
            "activeDeadlineSeconds": spec.activeDeadlineSeconds,
            "ttlSecondsAfterFinished": spec.ttlSecondsAfterFinished,
            "suspend": spec.suspend,
        },
        storage.mounts([spec.dataset.uri, spec.output.storageUri], mount_root, read_only=False),
        mount_root,
        run_inputs=inputs,
        baseline=dict(baseline) if baseline else None,
        promotion=spec.promotion,
    )


def training(plan: RunPlan) -> TrainingRuntimeConfig:
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
    new: dict[str, Any], result: TrainingResult, plan: RunPlan, now: str
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


class TrainingRules(runs.RunRules):
    """What a TrainingJob adds to the run lifecycle: a succeeded run is a new model version
    that the promotion gate decides on; the resource is Ready once a version is promoted."""

    kind = TRAININGJOB

    what = "training"
    running_reason = RunReason.TRAINING
    failed_reason = RunReason.TRAINING_FAILED
    waiting = "no model from this run yet"
    suspendable = True
    run_scoped = ()
    result_model = TrainingResult

    def progress(self, result: TrainingResult, new: dict[str, Any]) -> None:
        new["progress"] = result.progress.model_dump()

    def succeeded(
        self, new: dict[str, Any], result: TrainingResult, plan: RunPlan, now: str
    ) -> tuple[str, str, list[tuple[str, str, str]]]:
        assert result.model is not None
        events = record_version(new, result, plan, now)
        new["metric"] = result.metric
        new["metrics"] = result.metrics
        new["bestParams"] = result.bestParams
        new["score"] = result.metrics.get(f"test_{result.metric}")
        message = f"model version {result.model.version} written to {result.model.uri}"
        return RunReason.TRAINING_SUCCEEDED, message, events

    def running_detail(self, new: dict[str, Any], status: dict[str, Any]) -> str:
        progress = status.get("progress") or {}
        done, total = progress.get("trialsCompleted", 0), progress.get("trialsTotal", 0)
        return f": {done}/{total} trials" if total else ""

    def launched(self, new: dict[str, Any], plan: RunPlan) -> None:
        new["runTrigger"] = training(plan).trigger
        new["runInputs"] = plan.run_inputs
        if plan.baseline:
            new["runBaseline"] = plan.baseline
        else:
            new.pop("runBaseline", None)

    def ready(self, new: dict[str, Any], conditions: cond.Conditions) -> tuple[bool, str, str]:
        if new.get("model") and not new.get("promotedVersion"):
            new["promotedVersion"] = new["model"]["version"]  # a status from before the gate
        if new.get("model"):
            version = new["model"]["version"]
            return True, RunReason.MODEL_AVAILABLE, f"model version {version} is promoted and ready"
        return False, RunReason.NO_MODEL_YET, "no model version has been trained yet"


def decide(
    generation: int | None,
    status: dict[str, Any],
    plan: RunPlan | None,
    spec_error: str | None,
    observation: RunObservation,
    rayjob_available: bool,
    now: str,
) -> Decision:
    """The next status of a TrainingJob, and whether its run must be (re)launched."""
    blocked = None if spec_error is None else runs.invalid(spec_error)
    return runs.decide(
        TrainingRules(), generation, status, plan, blocked, observation, rayjob_available, now
    )


def retraining_on(trainingjobs: list[dict[str, Any]], modelservice: str) -> list[dict[str, Any]]:
    """TrainingJobs that retrain when this ModelService drifts."""
    return [
        tj
        for tj in trainingjobs
        if (((tj.get("spec") or {}).get("retrain") or {}).get("onDrift") or {}).get("modelService")
        == modelservice
    ]
