"""One run lifecycle for every kind that starts runs (TrainingJob, BatchPrediction, and kinds to
come). A run is one Job, one KubeRay RayJob or one local process whose workload reports its own
result into the resource's status; this module renders the parts every run shares and decides,
from what is observed, the conditions, the phase and whether to launch. A kind plugs in its own
render of the workload and a `RunRules` object: how its result reads, what success records, and
when it is Ready."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from modelfactory_api.run import ExitCode, RunPhase, RunReason
from modelfactory_api.runtime import RAY_VERSION, BatchRuntimeConfig, TrainingRuntimeConfig
from modelfactory_operator.logic import conditions as cond
from modelfactory_operator.logic import kinds, names, pod
from modelfactory_operator.logic.kinds import Kind
from modelfactory_operator.logic.plans import Decision, RunObservation, RunPlan

Event = tuple[str, str, str]
# KubeRay derives further names from a RayJob's: it takes at most 47 characters.
RAYJOB_NAME_MAX = 47
# What a new run starts without: the last run's times and progress.
RUN_SCOPED = ("startTime", "completionTime", "progress")


# --- render: what every run's chart values share


def split_image(image: str) -> dict[str, str]:
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return {"repository": image, "tag": "latest", "pullPolicy": "IfNotPresent"}
    return {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"}


def job_name(kind: Kind, name: str, run_id: str, mode: str) -> str:
    """The run's Job or RayJob: a RayJob's name takes at most 47 characters and a letter first."""
    if mode == "rayjob":
        first = name if name[0].isalpha() else f"{kind.prefix}-{name}"
        return names.dns_name(first, run_id, max_len=RAYJOB_NAME_MAX)
    return names.dns_name(name, run_id)


@dataclass(frozen=True)
class RunStart:
    """What a run keeps for its whole life once started: a Job's pod template is immutable, so
    an operator upgraded meanwhile (a new default image) or a run-control edit (a new
    generation) must not change the run it renders."""

    same_run: bool
    image: str
    generation: int | None


def run_start(
    body: dict[str, Any], run_id: str, spec_image: str | None, default_image: str
) -> RunStart:
    status = body.get("status") or {}
    same = status.get("runId") == run_id
    image = (status.get("runImage") if same else None) or spec_image or default_image
    generation = (status.get("runGeneration") if same else None) or body["metadata"].get(
        "generation"
    )
    return RunStart(same, image, generation)


def run_plan(
    kind: Kind,
    body: dict[str, Any],
    run_id: str,
    start: RunStart,
    runtime: TrainingRuntimeConfig | BatchRuntimeConfig,
    compute: Any,
    pod_spec: Any,
    service_account_suffix: str,
    run_control: dict[str, Any],
    mounts: dict[str, Any],
    mount_root: str,
    **kind_fields: Any,
) -> RunPlan:
    """A run's plan: the values of the run chart (charts/training-job, the same chart for every
    kind's runs) and what the launchers and the lifecycle need of them. `workers > 0` makes the
    run a KubeRay RayJob, otherwise a Job (or a local process)."""
    meta = body["metadata"]
    name = meta["name"]
    mode = "rayjob" if compute.workers > 0 else "job"
    values = {
        "owner": {
            "apiVersion": body.get("apiVersion", "modelfactory.dev/v1alpha1"),
            "kind": kind.kind,
            "name": name,
            "uid": meta["uid"],
        },
        "labels": names.labels(kind.component, name, kind.app),
        "mode": mode,
        "jobName": job_name(kind, name, run_id, mode),
        "runId": run_id,
        "serviceAccountName": names.dns_name(name, service_account_suffix),
        "resourceName": name,
        "statusResource": f"{kind.plural}/status",
        "image": split_image(start.image),
        "command": [kind.entrypoint],
        "env": runtime.to_env(),
        "resources": {"cpu": compute.cpu, "memory": compute.memory},
        "workers": compute.workers,
        "ray": {"version": RAY_VERSION},
        "permanentExitCode": int(ExitCode.PERMANENT),
        **run_control,
        "pod": pod.values(pod_spec),
        **mounts,
    }
    return RunPlan(
        kind=kind,
        namespace=meta["namespace"],
        name=name,
        uid=meta["uid"],
        run_id=run_id,
        release=names.release_name(kind.prefix, name),
        job_name=values["jobName"],
        mode=mode,  # type: ignore[arg-type]
        suspend=bool(run_control["suspend"]),
        runtime=runtime,
        chart_values=values,
        mount_root=mount_root,
        image=start.image,
        **kind_fields,
    )


# --- decide


def ended_without_result(
    observation: RunObservation,
    before: list[dict[str, Any]],
    failed_before: bool,
    run_id: str,
    what: str,
) -> tuple[str, str] | None:
    """(reason, message) of a run that ended with no result reported (or whose failure is
    already on record while its Job is gone); None while it has not ended."""
    if observation.state == "succeeded":
        return (
            RunReason.NO_RESULT,
            f"the {what} run finished without reporting a result (status.result was never "
            f"written for run {run_id})",
        )
    if observation.state == "failed":
        return (
            observation.reason or f"{what.capitalize()}Failed",
            observation.message or f"the {what} run failed without reporting a result",
        )
    if observation.state == "absent" and failed_before:
        prev = cond.get(before, "Failed") or {}
        return str(prev.get("reason")), str(prev.get("message"))
    return None


def apply_again(
    result_seen: bool, observation: RunObservation, applied_hash: str | None, plan_hash: str
) -> bool:
    """Run control changed (e.g. suspend), or an earlier apply was cut short: the same run is
    applied again, which is idempotent. A finished run is never applied again."""
    finished = result_seen or observation.state in ("succeeded", "failed")
    return not finished and observation.state != "absent" and applied_hash != plan_hash


def rayjob_missing(plan: RunPlan) -> str:
    """Why a run with workers cannot start where KubeRay is not installed."""
    return (
        f"spec.compute.workers is {plan.chart_values['workers']}, which runs a KubeRay "
        "RayJob, but the RayJob CRD (rayjobs.ray.io) is not installed in this cluster: "
        "install KubeRay or set spec.compute.workers to 0"
    )


def phase(conditions: cond.Conditions) -> RunPhase:
    if cond.is_true(conditions, "Failed"):
        return RunPhase.FAILED
    if cond.is_true(conditions, "Complete"):
        return RunPhase.SUCCEEDED
    if cond.is_true(conditions, "Suspended"):
        return RunPhase.SUSPENDED
    if cond.is_true(conditions, "Running"):
        return RunPhase.RUNNING
    return RunPhase.PENDING


@dataclass(frozen=True)
class Blocked:
    """Why no run can be planned: an invalid spec (failed) or something still missing, such as
    the model a BatchPrediction scores with (pending)."""

    failed: bool
    reason: str
    message: str


def invalid(message: str) -> Blocked:
    """An invalid spec: the resource fails with a message naming the field."""
    return Blocked(True, RunReason.INVALID_SPEC, message)


class RunRules:
    """What a kind adds to the run lifecycle (a subclass per kind)."""

    kind: ClassVar[Kind]

    # Words of its conditions: "training" / "scoring", and its reasons while it runs and when
    # it fails without saying why.
    what: ClassVar[str]
    running_reason: ClassVar[str]
    failed_reason: ClassVar[str]
    # The Complete condition's message while the run has no result.
    waiting: ClassVar[str]
    # Whether spec.suspend exists for the kind (a Suspended condition).
    suspendable: ClassVar[bool] = False
    # Status fields of one run besides RUN_SCOPED, dropped when a new run starts.
    run_scoped: ClassVar[tuple[str, ...]] = ()
    result_model: ClassVar[type[BaseModel]]

    def prepare(self, new: dict[str, Any], plan: RunPlan) -> None:
        """Before deciding: status the plan fixes (e.g. the model version a run scores with)."""

    def progress(self, result: Any, new: dict[str, Any]) -> None:
        """Progress a result (succeeded or not) carries into the status."""

    def succeeded(
        self, new: dict[str, Any], result: Any, plan: RunPlan, now: str
    ) -> tuple[str, str, list[Event]]:
        """Record a succeeded run's result into `new`: (reason, message, events)."""
        raise NotImplementedError

    def running_detail(self, new: dict[str, Any], status: dict[str, Any]) -> str:
        """What the Running condition adds while the run runs (e.g. ": 3/8 trials")."""
        return ""

    def launched(self, new: dict[str, Any], plan: RunPlan) -> None:
        """Status a run keeps for its whole life, written when it is launched."""

    def ready(self, new: dict[str, Any], conditions: cond.Conditions) -> tuple[bool, str, str]:
        """The Ready condition: (status, reason, message)."""
        raise NotImplementedError


def _finish(conds: cond.Rewrite, failed: bool, reason: str, message: str) -> None:
    conds.set("Failed", failed, reason, message)
    conds.set("Running", False, reason, message)
    conds.set("Complete", not failed, reason, message)


def decide(
    rules: RunRules,
    generation: int | None,
    status: dict[str, Any],
    plan: RunPlan | None,
    blocked: Blocked | None,
    observation: RunObservation,
    rayjob_available: bool,
    now: str,
) -> Decision:
    """The next status of a resource that starts runs, and whether its run must be launched."""
    conds = cond.Rewrite(status.get("conditions") or [], generation, now)
    new = kinds.declared(rules.kind, status)
    launch = False
    kind_events: list[Event] = []
    if plan is None or blocked is not None:
        why = blocked or Blocked(True, RunReason.INVALID_SPEC, "invalid spec")
        if why.failed:
            _finish(conds, True, why.reason, why.message)
        else:
            conds.set("Failed", False, RunReason.NO_FAILURE, "")
            conds.set("Running", False, why.reason, why.message)
            conds.set("Complete", False, why.reason, why.message)
    elif plan.mode == "rayjob" and not rayjob_available:
        _finish(conds, True, RunReason.RAYJOB_CRD_MISSING, rayjob_missing(plan))
    else:
        launch, kind_events = _decide_run(rules, status, new, conds, plan, observation, now)
    if rules.suspendable and plan is not None and blocked is None:
        if plan.suspend:
            conds.set("Suspended", True, RunReason.SUSPENDED, "spec.suspend is true")
        else:
            conds.set("Suspended", False, RunReason.NOT_SUSPENDED, "")
    ready, reason, message = rules.ready(new, conds.conditions)
    conds.set("Ready", ready, reason, message)
    new["conditions"] = conds.conditions
    new["observedGeneration"] = generation
    new["phase"] = phase(conds.conditions)
    kinds.checked(rules.kind, new)
    return Decision(status=new, launch=launch, events=kind_events + transition_events(conds))


def _decide_run(
    rules: RunRules,
    status: dict[str, Any],
    new: dict[str, Any],
    conds: cond.Rewrite,
    plan: RunPlan,
    observation: RunObservation,
    now: str,
) -> tuple[bool, list[Event]]:
    before = conds.before
    raw = status.get("result")
    result = rules.result_model.model_validate(raw) if raw else None
    if result is not None and getattr(result, "runId", None) != plan.run_id:
        result = None
    same_run = status.get("runId") == plan.run_id
    failed_before = same_run and cond.is_true(before, "Failed")
    new["runId"] = plan.run_id
    new["attempts"] = observation.attempts
    rules.prepare(new, plan)
    if not same_run:
        for key in (*RUN_SCOPED, *rules.run_scoped):
            new.pop(key, None)
    if observation.start_time:
        new["startTime"] = observation.start_time
    done = new.get("completionTime") or observation.completion_time or now
    launch = False
    events: list[Event] = []
    if result is not None:
        rules.progress(result, new)
    if result is not None and result.succeeded:  # type: ignore[attr-defined]
        new["completionTime"] = done
        reason, message, events = rules.succeeded(new, result, plan, now)
        _finish(conds, False, reason, message)
    elif result is not None:
        new["completionTime"] = done
        _finish(
            conds,
            True,
            result.reason or rules.failed_reason,  # type: ignore[attr-defined]
            result.message or f"{rules.what} failed",  # type: ignore[attr-defined]
        )
    elif (
        ended := ended_without_result(observation, before, failed_before, plan.run_id, rules.what)
    ) is not None:
        new["completionTime"] = done
        _finish(conds, True, *ended)
    else:
        conds.set("Failed", False, RunReason.NO_FAILURE, "")
        conds.set("Complete", False, rules.running_reason, rules.waiting)
        if observation.state == "absent" and not plan.suspend:
            launch = True
            conds.set(
                "Running", False, RunReason.LAUNCHING, f"starting {rules.what} run {plan.run_id}"
            )
        elif observation.state == "suspended" or plan.suspend:
            conds.set("Running", False, RunReason.SUSPENDED, "spec.suspend is true")
        elif observation.state == "running":
            detail = rules.running_detail(new, status)
            conds.set(
                "Running",
                True,
                rules.running_reason,
                f"run {plan.run_id} is {rules.what}{detail}",
            )
        else:
            conds.set(
                "Running",
                False,
                RunReason.PENDING,
                observation.message or f"run {plan.run_id} is waiting to start",
            )
    if apply_again(result is not None, observation, status.get("appliedHash"), plan.hash):
        launch = True
    if launch:
        new["runImage"] = plan.image
        new["runGeneration"] = plan.generation
        rules.launched(new, plan)
    return launch, events


def transition_events(conds: cond.Rewrite) -> list[Event]:
    """An Event for each condition that became true, and for Ready changing (but its first
    False: a new resource is not ready yet, which says nothing)."""
    events = []
    for change in conds.changes():
        if change["type"] == "Ready":
            if change["status"] == "False" and cond.get(conds.before, "Ready") is None:
                continue
        elif change["status"] != "True":
            continue
        kind = "Warning" if change["type"] == "Failed" else "Normal"
        events.append((kind, change["reason"], change["message"] or change["type"]))
    return events
