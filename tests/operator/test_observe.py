"""Why a training run does not start: pods, claims and events in, one message out."""

from typing import Any

import pytest

from modelfactory_operator.logic import observe
from modelfactory_operator.logic.plans import RunObservation

pytestmark = pytest.mark.unit


def pod(name: str = "iris-1a2b-xyz", phase: str = "Pending", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": phase, **status}}


def waiting(reason: str, message: str | None = None, **extra: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"reason": reason}
    if message:
        state["message"] = message
    return {"containerStatuses": [{"name": "training", "state": {"waiting": state}, **extra}]}


def unscheduled(message: str) -> dict[str, Any]:
    return {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
            }
        ]
    }


def claim(phase: str | None) -> dict[str, Any]:
    return {"metadata": {"name": "models"}, "status": {"phase": phase} if phase else {}}


def event(
    reason: str, message: str, when: str, kind: str = "Warning", name: str = "models"
) -> dict[str, Any]:
    return {
        "type": kind,
        "reason": reason,
        "message": message,
        "lastTimestamp": when,
        "involvedObject": {"kind": "PersistentVolumeClaim", "name": name},
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            waiting("ImagePullBackOff", 'Back-off pulling image "ghcr.io/x/training:9"'),
            "pod iris-1a2b-xyz: container training: ImagePullBackOff: Back-off pulling image "
            '"ghcr.io/x/training:9"',
        ),
        (
            waiting("ErrImagePull", "pull access denied"),
            "pod iris-1a2b-xyz: container training: ErrImagePull: pull access denied",
        ),
        (
            waiting("CreateContainerConfigError", 'secret "s3-credentials" not found'),
            "pod iris-1a2b-xyz: container training: CreateContainerConfigError: "
            'secret "s3-credentials" not found',
        ),
        (
            unscheduled("0/1 nodes are available: 1 Insufficient cpu."),
            "pod iris-1a2b-xyz is not scheduled: Unschedulable: 0/1 nodes are available: "
            "1 Insufficient cpu.",
        ),
        (
            unscheduled(
                "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
            ),
            "pod iris-1a2b-xyz is not scheduled: Unschedulable: 0/3 nodes are available: "
            "pod has unbound immediate PersistentVolumeClaims.",
        ),
    ],
)
def test_pod_problems_are_named(status: dict[str, Any], expected: str) -> None:
    assert observe.pod_problem(pod(**status)) == expected


def test_crash_loop_says_how_the_container_last_ended() -> None:
    status = waiting(
        "CrashLoopBackOff",
        "back-off 40s restarting failed container",
        lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
    )
    assert observe.pod_problem(pod(phase="Running", **status)) == (
        "pod iris-1a2b-xyz: container training: CrashLoopBackOff: back-off 40s restarting "
        "failed container: last exit code 137 (OOMKilled)"
    )


def test_starting_and_finished_pods_are_no_problem() -> None:
    assert observe.pod_problem(pod(**waiting("ContainerCreating"))) is None
    assert observe.pod_problem(pod()) is None
    assert observe.pod_problem(pod(phase="Failed", **waiting("ImagePullBackOff"))) is None


def test_a_waiting_container_comes_before_scheduling() -> None:
    init = {
        "initContainerStatuses": [
            {"name": "wait", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
        ]
    }
    assert observe.pod_problem(pod(**init)) == "pod iris-1a2b-xyz: container wait: ImagePullBackOff"


def test_long_messages_are_cut() -> None:
    problem = observe.pod_problem(pod(**unscheduled("x " * 1000)))
    assert problem is not None and len(problem) == observe.DETAIL_CHARS
    assert problem.endswith("...")


def test_pending_claim_shows_its_latest_warning() -> None:
    events = [
        event("ProvisioningFailed", "old failure", "2026-01-01T00:00:01Z"),
        event(
            "ProvisioningFailed",
            'failed to provision volume with StorageClass "standard": '
            "access mode ReadWriteMany not supported",
            "2026-01-01T00:00:09Z",
        ),
        event(
            "ExternalProvisioning", "waiting for a volume", "2026-01-01T00:00:10Z", kind="Normal"
        ),
        event("ProvisioningFailed", "about another claim", "2026-01-01T00:00:11Z", name="data"),
    ]
    assert observe.claim_problem("models", claim("Pending"), events) == (
        "PersistentVolumeClaim models is Pending: ProvisioningFailed: failed to provision volume "
        'with StorageClass "standard": access mode ReadWriteMany not supported'
    )
    assert observe.claim_problem("models", claim(None), []) == (
        "PersistentVolumeClaim models is Pending"
    )
    assert observe.claim_problem("models", claim("Bound"), events) is None
    assert observe.claim_problem("models", None, events) == (
        "PersistentVolumeClaim models does not exist in this namespace"
    )


def test_pending_reason_puts_pods_then_claims() -> None:
    pods = [
        pod(
            "b",
            **unscheduled(
                "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
            ),
        ),
        pod("a", **waiting("ContainerCreating")),
    ]
    events = [event("ProvisioningFailed", "no default storage class", "2026-01-01T00:00:01Z")]
    reason = observe.pending_reason(
        pods, {"models": claim("Pending"), "data": claim("Bound")}, events
    )
    assert reason == (
        "pod b is not scheduled: Unschedulable: 0/1 nodes are available: pod has unbound "
        "immediate PersistentVolumeClaims.; PersistentVolumeClaim models is Pending: "
        "ProvisioningFailed: no default storage class"
    )
    # Claims that could not be read are left out; so is a list of pods that all start normally.
    assert observe.pending_reason([pod(**waiting("ContainerCreating"))], {}, []) == ""


def test_several_pods_in_trouble_are_counted() -> None:
    pods = [pod(f"w{i}", **waiting("ErrImagePull")) for i in range(3)]
    assert observe.pending_reason(pods, {}, []) == (
        "pod w0: container training: ErrImagePull; 2 more pod(s) not starting"
    )


def test_explain_pending_extends_only_a_pending_observation() -> None:
    job = {"status": {"active": 1, "ready": 0}}
    pending = observe.job(job)
    assert pending.message == "waiting for the training pod to start"
    explained = observe.explain_pending(pending, "pod x: container training: ErrImagePull")
    assert explained.message == (
        "waiting for the training pod to start: pod x: container training: ErrImagePull"
    )
    assert observe.explain_pending(pending, "") == pending
    running = RunObservation("running")
    assert observe.explain_pending(running, "anything") == running


def test_a_refusing_server_says_why_and_a_starting_one_does_not() -> None:
    refused = b'{"reason": "UntrustedType", "message": "refusing posix.system"}'
    assert observe.readiness_failure(refused) == "UntrustedType: refusing posix.system"
    assert observe.readiness_failure(b'{"reason": "Loading", "message": "x"}') is None
    assert observe.readiness_failure(b"<html>bad gateway</html>") is None
    assert observe.readiness_failure(b'["UntrustedType"]') is None
    long = observe.readiness_failure(b'{"reason": "R", "message": "' + b"x" * 5000 + b'"}')
    assert long is not None and len(long) <= observe.DETAIL_CHARS


def test_refused_storage_credentials_reach_the_condition_message() -> None:
    body = (
        b'{"ready": false, "reason": "StorageAccessDenied", "message": "cannot read '
        b"s3://models/churn/3: the storage refused the credentials (InvalidAccessKeyId); "
        b'check the Secret, ServiceAccount or environment that spec.pod gives the pods"}'
    )
    failure = observe.readiness_failure(body)
    assert failure is not None and failure.startswith(
        "StorageAccessDenied: cannot read s3://models/churn/3: the storage refused the credentials"
    )
    seen = observe.with_server_failure(
        observe.deployment(None, "http://m.ns.svc.cluster.local"), failure
    )
    assert seen.message == f"the model server is not ready: {failure}"


def serving_pod(name: str, phase: str, running: bool, ready: bool, created: str) -> dict:
    state = {"running": {}} if running else {"waiting": {"reason": "ContainerCreating"}}
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"phase": phase, "containerStatuses": [{"state": state, "ready": ready}]},
    }


def test_only_started_servers_that_are_not_ready_are_asked() -> None:
    pods = [
        serving_pod("old-ready", "Running", True, True, "2026-01-01T00:00:00Z"),
        serving_pod("creating", "Pending", False, False, "2026-01-01T00:00:03Z"),
        serving_pod("new-a", "Running", True, False, "2026-01-01T00:00:01Z"),
        serving_pod("new-b", "Running", True, False, "2026-01-01T00:00:02Z"),
        serving_pod("new-c", "Running", True, False, "2026-01-01T00:00:00Z"),
    ]
    assert observe.probe_candidates(pods) == ["new-b", "new-a"]


def test_the_servers_reason_replaces_the_deployments_message() -> None:
    seen = observe.deployment(None, "http://x")
    assert observe.with_server_failure(seen, None) is seen
    told = observe.with_server_failure(seen, "UntrustedType: refusing posix.system")
    assert told.message == "the model server is not ready: UntrustedType: refusing posix.system"


def _rayjob(**status: Any) -> dict[str, Any]:
    return {"spec": {}, "status": status}


@pytest.mark.parametrize(
    "status, state",
    [
        ({}, "pending"),
        ({"jobDeploymentStatus": "Initializing"}, "pending"),
        ({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, "running"),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, "succeeded"),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}, "failed"),
        ({"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}, "failed"),
        ({"jobDeploymentStatus": "ValidationFailed"}, "failed"),
        ({"jobDeploymentStatus": "Suspended"}, "suspended"),
    ],
)
def test_rayjob_states(status: dict[str, Any], state: str) -> None:
    assert observe.rayjob(_rayjob(**status)).state == state


def test_a_retrying_rayjob_is_not_a_failed_run() -> None:
    # KubeRay keeps the failed attempt's jobStatus and endTime while it starts the next one.
    for deployment in ("Retrying", "", "Initializing"):
        seen = observe.rayjob(
            _rayjob(
                jobDeploymentStatus=deployment,
                jobStatus="FAILED",
                failed=1,
                succeeded=0,
                endTime="2026-01-01T00:00:00Z",
                reason="AppFailed",
                message="trial driver exited 1",
            )
        )
        assert seen.state == "pending", deployment
        assert seen.completion_time is None
        assert seen.attempts == 2
        assert "retrying after 1 failed attempt" in seen.message
        assert "trial driver exited 1" in seen.message
    running = observe.rayjob(_rayjob(jobDeploymentStatus="Running", jobStatus="FAILED", failed=1))
    assert running.state == "running"


def test_a_rayjob_out_of_retries_fails_with_its_reason() -> None:
    seen = observe.rayjob(
        _rayjob(
            jobDeploymentStatus="Failed",
            jobStatus="FAILED",
            failed=2,
            succeeded=0,
            endTime="2026-01-01T00:10:00Z",
            reason="AppFailed",
            message="driver exited 1",
        )
    )
    assert (seen.state, seen.reason, seen.attempts) == ("failed", "AppFailed", 3)
    assert seen.message == "RayJob failed: driver exited 1"
    assert seen.completion_time == "2026-01-01T00:10:00Z"
