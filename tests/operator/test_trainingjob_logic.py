import json
from typing import Any

import pytest

from modelfactory_operator.logic import names, validate
from modelfactory_operator.logic import trainingjob as tj
from modelfactory_operator.logic.plans import RunObservation, config_hash
from tests.operator.conftest import TJ_BODY as BODY
from tests.operator.conftest import tj_decide as decide
from tests.operator.conftest import tj_plan as plan

pytestmark = pytest.mark.unit


def result(p: tj.RunPlan, ok: bool = True, version: int = 1) -> dict[str, Any]:
    if not ok:
        return {
            "runId": p.run_id,
            "succeeded": False,
            "reason": "TargetNotFound",
            "message": "dataset: column 'y' (target) not found",
        }
    return {
        "runId": p.run_id,
        "succeeded": True,
        "metric": "accuracy",
        "metrics": {"test_accuracy": 0.97, "cv_mean": 0.95},
        "bestParams": {"C": 1.0},
        "model": {
            "version": version,
            "uri": f"s3://models/iris/{version}",
            "digest": "sha256:" + "a" * 64,
        },
    }


def test_render_builds_job_values_and_runtime_config() -> None:
    p = plan()
    assert p.mode == "job" and p.release == "tj-iris"
    assert p.chart_values["jobName"].startswith("iris-")
    assert p.chart_values["image"] == {
        "repository": "ghcr.io/modelfactory/training",
        "tag": "0.1.0",
        "pullPolicy": "IfNotPresent",
    }
    assert "MF_TRAINING_CONFIG" in p.chart_values["env"]
    assert p.runtime.job.uid == "u-1"


def test_workers_select_rayjob_and_suspend_keeps_the_run() -> None:
    assert plan(compute={"workers": 2}).mode == "rayjob"
    assert plan(suspend=True).run_id == plan().run_id
    assert plan(model={"estimator": "sklearn.svm.SVC"}).run_id != plan().run_id


def test_new_resource_launches() -> None:
    d = decide({}, RunObservation("absent"))
    assert d.launch and d.status["phase"] == "Pending"
    assert d.status["runId"] == plan().run_id


def test_running_then_result_succeeds() -> None:
    p = plan()
    d = decide({"runId": p.run_id, "appliedHash": p.hash}, RunObservation("running"), p)
    assert not d.launch and d.status["phase"] == "Running"
    d2 = decide({**d.status, "result": result(p)}, RunObservation("succeeded"), p)
    assert d2.status["phase"] == "Succeeded"
    assert d2.status["model"]["version"] == 1 and d2.status["score"] == 0.97
    assert any(e[1] == "TrainingSucceeded" for e in d2.events)
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in d2.status["conditions"])


def test_finished_job_without_result_fails_saying_so() -> None:
    p = plan()
    d = decide({"runId": p.run_id}, RunObservation("succeeded"), p)
    assert d.status["phase"] == "Failed"
    failed = next(c for c in d.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "NoResult" and "without reporting a result" in failed["message"]


def test_reported_failure_is_shown() -> None:
    p = plan()
    d = decide({"runId": p.run_id, "result": result(p, ok=False)}, RunObservation("failed"), p)
    failed = next(c for c in d.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "TargetNotFound" and "column 'y'" in failed["message"]


def test_result_of_an_older_run_is_ignored() -> None:
    old = plan()
    new = plan(model={"estimator": "sklearn.svm.SVC"})
    d = decide({"runId": old.run_id, "result": result(old)}, RunObservation("absent"), new)
    assert d.launch and d.status["phase"] == "Pending"


def test_failed_run_is_not_relaunched_when_its_job_is_gone() -> None:
    p = plan()
    d = decide({"runId": p.run_id}, RunObservation("failed", reason="BackoffLimitExceeded"), p)
    d2 = decide(d.status, RunObservation("absent"), p)
    assert not d2.launch and d2.status["phase"] == "Failed"


def test_missing_rayjob_crd_fails_with_a_clear_message() -> None:
    p = plan(compute={"workers": 2})
    d = decide({}, RunObservation("absent"), p, rayjob_available=False)
    assert not d.launch and d.status["phase"] == "Failed"
    assert "RayJob CRD" in next(
        c["message"] for c in d.status["conditions"] if c["type"] == "Failed"
    )


def test_invalid_spec_fails_without_launching() -> None:
    d = tj.decide(1, {}, None, "spec.model.estimator: nope", RunObservation("absent"), True, "t")
    assert not d.launch and d.status["phase"] == "Failed"


def test_deciding_twice_changes_nothing() -> None:
    p = plan()
    d = decide({"runId": p.run_id, "result": result(p)}, RunObservation("succeeded"), p)
    d2 = decide(d.status, RunObservation("succeeded"), p)
    assert d2.status == d.status and d2.events == []


def test_history_keeps_every_good_version() -> None:
    p = plan()
    d = decide({"runId": p.run_id, "result": result(p)}, RunObservation("succeeded"), p)
    p2 = plan(model={"estimator": "sklearn.svm.SVC"})
    d2 = decide({**d.status, "result": result(p2, version=2)}, RunObservation("succeeded"), p2)
    assert [m["version"] for m in d2.status["history"]] == [1, 2]


def test_ray_is_sized_from_the_compute_spec() -> None:
    sizing = plan(compute={"cpu": "1500m", "memory": "4Gi"}).runtime.ray
    assert sizing is not None
    assert sizing.numCpus == 2
    assert sizing.memoryBytes == 4 * 2**30
    assert sizing.objectStoreBytes == int(4 * 2**30 * 0.3)
    assert sizing.heap_bytes == sizing.memoryBytes - sizing.objectStoreBytes
    # A fraction of a CPU is still one CPU to Ray; the object store has Ray's minimum.
    small = plan(compute={"cpu": "250m", "memory": "128Mi"}).runtime.ray
    assert small is not None
    assert small.numCpus == 1 and small.objectStoreBytes == 75 * 2**20
    # The same figures reach the pod (MF_TRAINING_CONFIG) and a local process.
    config = json.loads(plan().chart_values["env"]["MF_TRAINING_CONFIG"])
    assert config["ray"] == {
        "numCpus": 1,
        "memoryBytes": 2 * 2**30,
        "objectStoreBytes": int(2 * 2**30 * 0.3),
    }
    assert "pod" not in config["spec"]


def test_pod_settings_reach_the_chart_values() -> None:
    p = plan(
        pod={
            "serviceAccountName": "trainer",
            "imagePullSecrets": ["regcred"],
            "nodeSelector": {"pool": "ml"},
            "tolerations": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
            "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "settings"}}],
        }
    )
    assert p.chart_values["pod"] == {
        "serviceAccountName": "trainer",
        "imagePullSecrets": ["regcred"],
        "nodeSelector": {"pool": "ml"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}}],
    }
    assert plan().chart_values["pod"] == {
        "serviceAccountName": None,
        "imagePullSecrets": [],
        "nodeSelector": {},
        "tolerations": [],
        "env": [],
        "envFrom": [],
    }


def test_pod_settings_make_a_new_run_but_their_absence_keeps_old_run_ids() -> None:
    # A Job's pod template cannot change: new pod settings are a new run.
    assert plan(pod={"nodeSelector": {"pool": "ml"}}).run_id != plan().run_id
    # Runs started before spec.pod existed keep their id.
    spec = validate.trainingjob_spec(BODY["spec"])
    before = spec.model_dump(mode="json", exclude={*tj.RUN_CONTROL_FIELDS, "pod"})
    assert plan().run_id == names.run_id("u-1", config_hash(before), None)


def test_a_pending_run_says_why() -> None:
    p = plan()
    why = "waiting for the training pod to start: pod x: container training: ImagePullBackOff"
    d = decide(
        {"runId": p.run_id, "appliedHash": p.hash}, RunObservation("pending", message=why), p
    )
    running = next(c for c in d.status["conditions"] if c["type"] == "Running")
    assert running["reason"] == "Pending" and running["message"] == why


def upgraded(body: dict[str, Any], image: str) -> tj.RunPlan:
    """The plan an operator with another default image renders for the same resource."""
    return tj.render(body, validate.trainingjob_spec(body["spec"]), image)


def test_finished_runs_are_never_applied_again() -> None:
    """An operator upgrade changes the default image, so the rendered values and their hash;
    applying a finished run's Job again fails with "field is immutable", forever."""
    old = plan()
    applied = {"runId": old.run_id, "appliedHash": old.hash}
    body = {**BODY, "status": applied}
    new = upgraded(body, "ghcr.io/modelfactory/training:0.2.0")
    for obs, status in (
        (RunObservation("succeeded"), {**applied, "result": result(old)}),
        (RunObservation("running"), {**applied, "result": result(old)}),
        (RunObservation("failed"), applied),
        (RunObservation("absent"), {**applied, "result": result(old, ok=False)}),
    ):
        d = tj.decide(1, status, new, None, obs, True, "2026-01-01T00:00:00Z")
        assert not d.launch, (obs, d.status)


def test_a_run_keeps_its_image_across_operator_upgrades() -> None:
    first = plan()
    launched = decide({}, RunObservation("absent"), first)
    assert launched.launch and launched.status["runImage"] == "ghcr.io/modelfactory/training:0.1.0"
    body = {**BODY, "status": {**launched.status, "appliedHash": first.hash}}
    later = upgraded(body, "ghcr.io/modelfactory/training:0.2.0")
    assert later.image == first.image and later.hash == first.hash
    # A still-running run whose run control changes is applied again with its own image.
    body_suspended = {**body, "spec": {**BODY["spec"], "suspend": True}}
    again = upgraded(body_suspended, "ghcr.io/modelfactory/training:0.2.0")
    assert again.chart_values["image"]["tag"] == "0.1.0"
    d = tj.decide(1, body["status"], again, None, RunObservation("running"), True, "now")
    assert d.launch
    # A new run (a new spec) takes the new default.
    changed = {**body, "spec": {**BODY["spec"], "model": {"estimator": "sklearn.svm.SVC"}}}
    assert upgraded(changed, "ghcr.io/modelfactory/training:0.2.0").image.endswith(":0.2.0")


def test_run_control_stays_out_of_the_pod_template() -> None:
    """A Job's pod template is immutable: changing run control (which also bumps the
    generation) must not change the workload's configuration (its environment)."""
    base = plan()
    launched = decide({}, RunObservation("absent"), base)
    assert launched.status["runGeneration"] == 1
    for change in (
        {"suspend": True},
        {"activeDeadlineSeconds": 60},
        {"backoffLimit": 3},
        {"ttlSecondsAfterFinished": 5},
    ):
        body = {
            **BODY,
            "metadata": {**BODY["metadata"], "generation": 2},
            "status": launched.status,
        }
        changed = plan(body, **change)
        assert changed.chart_values["env"] == base.chart_values["env"], change
        assert changed.run_id == base.run_id
