"""What a run's workload did not say: a TrainingJob's training run and a BatchPrediction's
scoring run are both one Job, RayJob or process whose workload reports its own result; these
decide the cases where it did not."""

from __future__ import annotations

from typing import Any

from modelfactory_operator.logic import conditions as cond
from modelfactory_operator.logic.plans import RunObservation, TrainingPlan


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
            "NoResult",
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


def rayjob_missing(plan: TrainingPlan) -> str:
    """Why a run with workers cannot start where KubeRay is not installed."""
    return (
        f"spec.compute.workers is {plan.chart_values['workers']}, which runs a KubeRay "
        "RayJob, but the RayJob CRD (rayjobs.ray.io) is not installed in this cluster: "
        "install KubeRay or set spec.compute.workers to 0"
    )
