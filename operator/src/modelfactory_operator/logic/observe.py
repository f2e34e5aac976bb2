"""Map observed child objects (Job, RayJob, Deployment) to launcher-neutral observations."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from modelfactory_operator.logic.names import MODEL_VERSION_ANNOTATION
from modelfactory_operator.logic.plans import RunObservation, ServiceObservation

# Waiting reasons that only mean "still starting"; every other one says what is wrong.
STARTING_REASONS = ("ContainerCreating", "PodInitializing")
# Each piece of a pending message is cut to this; kubelet and scheduler messages can be long.
DETAIL_CHARS = 400


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
    """Only KubeRay's terminal deployment states end a run: while it retries (`backoffLimit`) the
    previous attempt's `jobStatus: FAILED` is history, not the outcome."""
    if rayjob is None:
        return RunObservation(state="absent")
    status = rayjob.get("status") or {}
    deployment = status.get("jobDeploymentStatus") or ""
    job_status = status.get("jobStatus") or ""
    failures = int(status.get("failed") or 0)
    common: dict[str, Any] = {
        "start_time": status.get("startTime"),
        "attempts": failures + int(status.get("succeeded") or 0) + 1,
    }
    if deployment in ("Failed", "ValidationFailed") or (
        deployment == "Complete" and job_status != "SUCCEEDED"
    ):
        return RunObservation(
            state="failed",
            reason=status.get("reason") or "RayJobFailed",
            message=f"RayJob failed: {status.get('message') or job_status or deployment}",
            completion_time=status.get("endTime"),
            **common,
        )
    if deployment == "Complete":
        return RunObservation(state="succeeded", completion_time=status.get("endTime"), **common)
    if deployment in ("Suspended", "Suspending") or (rayjob.get("spec") or {}).get("suspend"):
        return RunObservation(state="suspended", **common)
    if deployment == "Running":
        return RunObservation(state="running", **common)
    if deployment == "Retrying" or failures:
        cause = status.get("message") or status.get("reason") or "the previous attempt failed"
        return RunObservation(
            state="pending",
            message=f"RayJob retrying after {failures} failed attempt(s): {_clip(cause)}",
            **common,
        )
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


# --- why a run does not start: pods, their claims and the claims' events


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def _with(head: str, *details: str | None) -> str:
    return ": ".join([head, *(d for d in details if d)])


def _waiting(status: dict[str, Any]) -> str | None:
    """The first container (init containers first) that waits for something other than start-up."""
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if not reason or reason in STARTING_REASONS:
            continue
        last = (cs.get("lastState") or {}).get("terminated") or {}
        exited = (
            f"last exit code {last.get('exitCode')} ({last.get('reason') or 'Error'})"
            + (f": {last['message']}" if last.get("message") else "")
            if last
            else None
        )
        return _with(f"container {cs.get('name')}", reason, waiting.get("message"), exited)
    return None


def pod_problem(pod: dict[str, Any]) -> str | None:
    """Why a pod does not run: a container that cannot start, or a pod that is not scheduled."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return None
    name = (pod.get("metadata") or {}).get("name", "?")
    waiting = _waiting(status)
    if waiting:
        return _clip(f"pod {name}: {waiting}")
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            reason = c.get("reason") or "Unschedulable"
            return _clip(_with(f"pod {name} is not scheduled", reason, c.get("message")))
    return None


def _event_time(event: dict[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or (event.get("series") or {}).get("lastObservedTime")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def latest_warning(events: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    about = [
        e
        for e in events
        if e.get("type") == "Warning"
        and (e.get("involvedObject") or {}).get("kind") == kind
        and (e.get("involvedObject") or {}).get("name") == name
    ]
    return max(about, key=_event_time) if about else None


def claim_bound(claim: dict[str, Any] | None) -> bool:
    return claim is not None and (claim.get("status") or {}).get("phase") == "Bound"


def claim_problem(
    name: str, claim: dict[str, Any] | None, events: list[dict[str, Any]]
) -> str | None:
    """A claim that is missing or not bound, with the latest warning about it (provisioning)."""
    if claim is None:
        return f"PersistentVolumeClaim {name} does not exist in this namespace"
    if claim_bound(claim):
        return None
    phase = (claim.get("status") or {}).get("phase") or "Pending"
    warning = latest_warning(events, "PersistentVolumeClaim", name)
    detail = _with(str(warning.get("reason")), warning.get("message")) if warning else None
    return _clip(_with(f"PersistentVolumeClaim {name} is {phase}", detail))


def pending_reason(
    pods: list[dict[str, Any]],
    claims: dict[str, dict[str, Any] | None],
    events: list[dict[str, Any]],
) -> str:
    """Why a run's pods do not start, from what could be read: its pods, the claims they mount
    (None: the claim does not exist; absent: it could not be read) and the claims' events."""
    by_name = sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name")))
    problems = [p for p in (pod_problem(pod) for pod in by_name) if p]
    parts = problems[:1]
    if len(problems) > 1:
        parts.append(f"{len(problems) - 1} more pod(s) not starting")
    parts += [
        c for c in (claim_problem(n, claim, events) for n, claim in sorted(claims.items())) if c
    ]
    return "; ".join(parts)


def explain_pending(observation: RunObservation, reason: str) -> RunObservation:
    if observation.state != "pending" or not reason:
        return observation
    return dataclasses.replace(observation, message=f"{observation.message}: {reason}")


# --- why a model server is not ready: the body of its readiness answer

# Not-ready reasons that only mean "not yet"; any other one is why the server will not serve.
TRANSIENT_NOT_READY = ("Loading", "ShuttingDown")


def readiness_failure(body: bytes | str) -> str | None:
    """ "Reason: message" from a server's 503 readiness answer, when it says it will never be
    ready (an artifact it refuses); None while it is only starting or the body says nothing."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    reason = answer.get("reason") if isinstance(answer, dict) else None
    if not isinstance(reason, str) or reason in TRANSIENT_NOT_READY:
        return None
    return _clip(f"{reason}: {answer.get('message') or ''}".rstrip(": "))


def probe_candidates(pods: list[dict[str, Any]], limit: int = 2) -> list[str]:
    """Serving pods worth asking why they are not ready: running, their server started, not
    ready (newest first, a few at most)."""
    found = []
    for pod in sorted(
        pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True
    ):
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        containers = status.get("containerStatuses") or []
        if containers and all(
            "running" in (c.get("state") or {}) and not c.get("ready") for c in containers
        ):
            found.append(pod["metadata"]["name"])
    return found[:limit]


def with_server_failure(seen: ServiceObservation, failure: str | None) -> ServiceObservation:
    if failure is None:
        return seen
    return dataclasses.replace(seen, message=f"the model server is not ready: {failure}")
