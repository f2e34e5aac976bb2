"""Map observed child objects (Job, RayJob, Deployment) to launcher-neutral observations."""

from __future__ import annotations

from typing import Any

from modelfactory_operator.logic.names import MODEL_VERSION_ANNOTATION
from modelfactory_operator.logic.plans import RunObservation, ServiceObservation


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def job(job: dict[str, Any] | None) -> RunObservation:
    if job is None:
        return RunObservation(state="absent")
    status = job.get("status") or {}
    conds = _conditions(job)
    attempts = (
        int(status.get("failed") or 0)
        + int(status.get("succeeded") or 0)
        + int(status.get("active") or 0)
    )
    common: dict[str, Any] = {"start_time": status.get("startTime"), "attempts": attempts}
    failed = conds.get("Failed")
    if failed and failed.get("status") == "True":
        return RunObservation(
            state="failed",
            reason=failed.get("reason") or "JobFailed",
            message=f"training Job failed: {failed.get('message') or failed.get('reason')}",
            completion_time=failed.get("lastTransitionTime"),
            **common,
        )
    complete = conds.get("Complete")
    if complete and complete.get("status") == "True":
        return RunObservation(
            state="succeeded", completion_time=status.get("completionTime"), **common
        )
    suspended = conds.get("Suspended")
    if (suspended and suspended.get("status") == "True") or (job.get("spec") or {}).get("suspend"):
        return RunObservation(state="suspended", **common)
    if int(status.get("ready") or 0) > 0 or (
        int(status.get("active") or 0) > 0 and status.get("ready") is None
    ):
        return RunObservation(state="running", **common)
    return RunObservation(
        state="pending", message="waiting for the training pod to start", **common
    )


def rayjob(rayjob: dict[str, Any] | None) -> RunObservation:
    if rayjob is None:
        return RunObservation(state="absent")
    status = rayjob.get("status") or {}
    deployment = status.get("jobDeploymentStatus") or ""
    job_status = status.get("jobStatus") or ""
    common: dict[str, Any] = {
        "start_time": status.get("startTime"),
        "attempts": int(status.get("failed") or 0) + int(status.get("succeeded") or 0) + 1,
    }
    if deployment == "Failed" or job_status in ("FAILED", "STOPPED"):
        return RunObservation(
            state="failed",
            reason=status.get("reason") or "RayJobFailed",
            message=f"RayJob failed: {status.get('message') or job_status}",
            completion_time=status.get("endTime"),
            **common,
        )
    if deployment == "Complete" or job_status == "SUCCEEDED":
        return RunObservation(state="succeeded", completion_time=status.get("endTime"), **common)
    if deployment == "Suspended" or (rayjob.get("spec") or {}).get("suspend"):
        return RunObservation(state="suspended", **common)
    if deployment == "Running" or job_status == "RUNNING":
        return RunObservation(state="running", **common)
    return RunObservation(
        state="pending", message=f"RayJob is {deployment or 'starting'}", **common
    )


def deployment(dep: dict[str, Any] | None, url: str) -> ServiceObservation:
    if dep is None:
        return ServiceObservation(exists=False, url=url, message="the Deployment does not exist")
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas") or 0)
    replicas = int(status.get("replicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    current = int(status.get("observedGeneration") or 0) >= int(
        (dep.get("metadata") or {}).get("generation") or 0
    )
    rolled_out = current and updated >= want and replicas == updated and ready >= want > 0
    annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    raw_version = annotations.get(MODEL_VERSION_ANNOTATION)
    version = int(raw_version) if raw_version and str(raw_version).isdigit() else None
    unavailable = _conditions(dep).get("Available", {})
    return ServiceObservation(
        exists=True,
        replicas=replicas,
        ready_replicas=ready,
        rolled_out=rolled_out,
        served_version=version,
        url=url,
        message="" if ready else (unavailable.get("message") or f"0/{want} replicas ready"),
    )
