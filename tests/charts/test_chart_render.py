"""The three charts rendered with `helm template` (no cluster): what each object says."""

from __future__ import annotations

import filecmp
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import (
    CHART_NAMES,
    CHARTS,
    ROOT,
    Helm,
    assert_restricted,
    by_kind,
    cache_dir,
    example_values,
    one,
    pod_specs,
)

pytestmark = pytest.mark.unit

OPERATOR_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
}


def example(chart: str) -> dict[str, Any]:
    return yaml.safe_load(example_values(chart).read_text())


def training_env(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The training containers' environment: the values' env, HOME=/tmp unless it says, then
    pod.env as given."""
    env = {"HOME": "/tmp", **values["env"]}
    return [{"name": k, "value": v} for k, v in sorted(env.items())] + values["pod"]["env"]


def placement(podspec: dict[str, Any], values: dict[str, Any]) -> None:
    """spec.pod's pull secrets, node selector and tolerations, as the pod spec has them."""
    pod = values["pod"]
    assert podspec["imagePullSecrets"] == [{"name": n} for n in pod["imagePullSecrets"]]
    assert podspec["nodeSelector"] == pod["nodeSelector"]
    assert podspec["tolerations"] == pod["tolerations"]


# ----------------------------------------------------------------------------- every chart


@pytest.mark.parametrize("chart", CHART_NAMES)
@pytest.mark.parametrize("with_values", [False, True], ids=["defaults", "example-values"])
def test_lint_strict(helm: Helm, chart: str, with_values: bool) -> None:
    args = ["lint", "--strict", str(CHARTS / chart)]
    if with_values:
        args += ["-f", str(example_values(chart))]
    res = helm.run(*args)
    assert "0 chart(s) failed" in res.stdout


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_defaults_render(helm: Helm, chart: str) -> None:
    docs = helm.template(chart, values=False)
    assert docs
    for doc in docs:
        assert doc["metadata"]["name"]


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_chart_files(chart: str) -> None:
    base = CHARTS / chart
    for name in (
        "Chart.yaml",
        "values.yaml",
        "values.schema.json",
        "README.md",
        "ci/example-values.yaml",
        "templates/_helpers.tpl",
    ):
        assert (base / name).is_file(), f"{chart}/{name} is missing"
    schema = json.loads((base / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert schema["required"]
    # every top-level value is documented in the README
    readme = (base / "README.md").read_text()
    for key in schema["properties"]:
        assert f"`{key}" in readme, f"{chart}: value {key} is not documented in README.md"


@pytest.mark.parametrize("chart", ["training-job", "model-service"])
def test_every_object_labelled_and_owned(helm: Helm, chart: str) -> None:
    values = example(chart)
    docs = helm.template(chart)
    for doc in docs:
        meta = doc["metadata"]
        what = f"{doc['kind']}/{meta['name']}"
        assert meta["namespace"] == "ml", what
        labels = meta["labels"]
        assert set(labels) >= OPERATOR_LABELS, what
        for key, value in values["labels"].items():
            assert labels[key] == value, what
        assert labels["app.kubernetes.io/part-of"] == "modelfactory"
        assert labels["app.kubernetes.io/managed-by"] == "modelfactory-operator"
        assert meta["ownerReferences"] == [
            {**values["owner"], "controller": True, "blockOwnerDeletion": False}
        ], what
        for where, template in pod_specs(doc):
            assert set(template["metadata"]["labels"]) >= OPERATOR_LABELS, where


@pytest.mark.parametrize("chart", ["training-job", "model-service"])
def test_no_owner_no_owner_references(helm: Helm, chart: str) -> None:
    for doc in helm.template(chart, sets={"owner": "null"}):
        assert "ownerReferences" not in doc["metadata"]


@pytest.mark.parametrize(
    ("chart", "sets"),
    [
        ("training-job", {}),
        ("training-job", {"mode": "rayjob", "workers": "2"}),
        ("model-service", {}),
        ("modelfactory", {}),
    ],
    ids=["job", "rayjob", "model-service", "operator"],
)
def test_pods_are_restricted(helm: Helm, chart: str, sets: dict[str, str]) -> None:
    templates = [t for doc in helm.template(chart, sets=sets) for t in pod_specs(doc)]
    assert templates
    for where, template in templates:
        assert_restricted(where, template)


@pytest.mark.parametrize(
    ("chart", "sets", "message"),
    [
        ("training-job", {"mode": "foo"}, "mode"),
        ("training-job", {"unknownKey": "1"}, "unknownKey"),
        ("training-job", {"image.pullPolicy": "Sometimes"}, "pullPolicy"),
        ("training-job", {"backoffLimit": "-1"}, "backoffLimit"),
        ("training-job", {"workers": "-1"}, "workers"),
        ("training-job", {"resources.memory": "lots"}, "memory"),
        ("training-job", {"jobName": "Not_A_Name"}, "jobName"),
        ("training-job", {"labels.app\\.kubernetes\\.io/instance": "bad value!"}, "labels"),
        ("training-job", {"env.BAD-NAME": "x"}, "BAD-NAME"),
        ("training-job", {"owner.uid": "null"}, "owner"),
        ("training-job", {"mode": "rayjob", "workers": "0"}, "workers"),
        ("training-job", {"mode": "rayjob", "workers": "1", "jobName": "a" * 48}, "jobName"),
        ("training-job", {"mode": "rayjob", "workers": "1", "jobName": "1abc"}, "jobName"),
        ("model-service", {"autoscaling.metric": "gpu"}, "metric"),
        ("model-service", {"autoscaling.targetUtilization": "0"}, "targetUtilization"),
        ("model-service", {"replicas.min": "0"}, "min"),
        ("model-service", {"port": "80"}, "port"),
        ("model-service", {"name": "9svc"}, "name"),
        ("model-service", {"terminationGracePeriodSeconds": "2"}, "terminationGracePeriod"),
        ("model-service", {"resources.cpuLimit": "much"}, "cpuLimit"),
        ("model-service", {"extra": "1"}, "extra"),
        ("training-job", {"pod.env[0].name": "MF_TRAINING_CONFIG"}, "/pod/env/0/name"),
        ("model-service", {"pod.env[0].name": "MF_MODEL_URI"}, "/pod/env/0/name"),
        ("training-job", {"pod.envFrom[0].prefix": "MF_"}, "prefix"),
        ("model-service", {"pod.imagePullSecrets[0]": "Not_A_Name"}, "imagePullSecrets"),
        ("training-job", {"pod.serviceAccountName": "Trainer"}, "serviceAccountName"),
        ("model-service", {"pod.tolerations[0].operator": "Maybe"}, "operator"),
        ("training-job", {"pod.nodeSelector.zone": "bad value!"}, "nodeSelector"),
        ("training-job", {"pod.hostNetwork": "true"}, "hostNetwork"),
        ("modelfactory", {"watchNamespaces[0]": "Bad_NS"}, "watchNamespaces"),
        ("modelfactory", {"image.pullPolicy": "Sometimes"}, "pullPolicy"),
        ("modelfactory", {"livenessPort": "http"}, "livenessPort"),
        ("modelfactory", {"rbac": "false"}, "rbac"),
    ],
)
def test_schema_rejects(helm: Helm, chart: str, sets: dict[str, str], message: str) -> None:
    err = helm.template_fails(chart, sets=sets)
    assert "schema" in err, err
    assert message in err, err


def test_rayjob_entrypoint_rejects_shell_metacharacters(helm: Helm) -> None:
    err = helm.template_fails(
        "training-job",
        sets={"mode": "rayjob", "workers": "1"},
        extra=("--set-json", 'command=["train","$(rm -rf /)"]'),
    )
    assert "command" in err and "schema" in err
    helm.template("training-job", extra=("--set-json", 'command=["train","$(echo job)"]'))


def test_model_service_rejects_min_above_max(helm: Helm) -> None:
    err = helm.template_fails("model-service", sets={"replicas.min": "4", "replicas.max": "2"})
    assert "replicas.min (4) must not exceed replicas.max (2)" in err


# ----------------------------------------------------------------------------- training-job


def test_training_job_mode_job(helm: Helm) -> None:
    values = example("training-job")
    docs = helm.template("training-job")
    assert sorted(d["kind"] for d in docs) == ["Job", "Role", "RoleBinding", "ServiceAccount"]
    assert all(d["metadata"]["labels"]["app.kubernetes.io/component"] == "training" for d in docs)

    sa = one(docs, "ServiceAccount")
    assert sa["metadata"]["name"] == "iris-trainer"
    assert sa["automountServiceAccountToken"] is False

    job = one(docs, "Job")
    assert job["apiVersion"] == "batch/v1"
    assert job["metadata"]["name"] == "iris-1a2b3c4d"
    assert job["metadata"]["labels"]["modelfactory.dev/run-id"] == "1a2b3c4d"
    spec = job["spec"]
    assert spec["backoffLimit"] == 1
    assert spec["activeDeadlineSeconds"] == 3600
    assert spec["ttlSecondsAfterFinished"] == 86400
    assert spec["suspend"] is False
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in rules
    fail = [r for r in rules if r["action"] == "FailJob"]
    assert fail == [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "training", "operator": "In", "values": [2]},
        }
    ]

    pod = spec["template"]
    assert pod["metadata"]["labels"]["modelfactory.dev/run-id"] == "1a2b3c4d"
    podspec = pod["spec"]
    assert podspec["restartPolicy"] == "Never"
    assert podspec["serviceAccountName"] == "iris-trainer"
    assert podspec["automountServiceAccountToken"] is True
    placement(podspec, values)
    (container,) = podspec["containers"]
    assert container["name"] == "training"
    assert container["image"] == "ghcr.io/modelfactory/training:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["modelfactory-train"]
    assert container["env"] == training_env(values)
    assert container["envFrom"] == values["pod"]["envFrom"]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"memory": "2Gi"},
    }
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", "/dev/shm": "dshm", "/models": "models"}
    volumes = {v["name"]: v for v in podspec["volumes"]}
    assert volumes["tmp"]["emptyDir"] == {}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models"}


def test_training_job_role_is_least_privilege(helm: Helm) -> None:
    docs = helm.template("training-job")
    role = one(docs, "Role")
    assert role["rules"] == [
        {
            "apiGroups": ["modelfactory.dev"],
            "resources": ["trainingjobs/status"],
            "resourceNames": ["iris"],
            "verbs": ["get", "patch"],
        }
    ]
    binding = one(docs, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "iris-trainer", "namespace": "ml"}
    ]


def test_training_job_null_limits_are_left_out(helm: Helm) -> None:
    job = one(
        helm.template(
            "training-job",
            sets={"activeDeadlineSeconds": "null", "ttlSecondsAfterFinished": "null"},
        ),
        "Job",
    )
    assert "activeDeadlineSeconds" not in job["spec"]
    assert "ttlSecondsAfterFinished" not in job["spec"]
    job = one(
        helm.template("training-job", sets={"ttlSecondsAfterFinished": "0", "suspend": "true"}),
        "Job",
    )
    assert job["spec"]["ttlSecondsAfterFinished"] == 0
    assert job["spec"]["suspend"] is True


def test_training_job_env_values_stay_strings(helm: Helm) -> None:
    job = one(
        helm.template(
            "training-job",
            extra=(
                "--set-string",
                "env.MF_A=1",
                "--set-string",
                "env.MF_B=true",
                "--set-string",
                "env.MF_C=2.50",
            ),
        ),
        "Job",
    )
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MF_A"] == "1" and env["MF_B"] == "true" and env["MF_C"] == "2.50"
    assert env["HOME"] == "/tmp"
    job = one(helm.template("training-job", sets={"env.HOME": "/home/trainer"}), "Job")
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["HOME"] == "/home/trainer"


def test_training_job_pod_env_may_set_home_once(helm: Helm) -> None:
    job = one(
        helm.template(
            "training-job", extra=("--set-json", 'pod.env=[{"name":"HOME","value":"/data"}]')
        ),
        "Job",
    )
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e for e in env if e["name"] == "HOME"] == [{"name": "HOME", "value": "/data"}]


def test_training_job_without_pod_settings(helm: Helm) -> None:
    """Empty pod settings render nothing: no empty keys in the pod spec or the container."""
    empty = '{"imagePullSecrets":[],"nodeSelector":{},"tolerations":[],"env":[],"envFrom":[]}'
    for mode in ("job", "rayjob"):
        docs = helm.template(
            "training-job",
            sets={"mode": mode, "workers": "1"},
            extra=("--set-json", f"pod={empty}"),
        )
        for where, template in [t for d in docs for t in pod_specs(d)]:
            podspec = template["spec"]
            for key in ("imagePullSecrets", "nodeSelector", "tolerations"):
                assert key not in podspec, f"{where}: {key}"
            for c in podspec["containers"]:
                assert "envFrom" not in c, where
                assert [e["name"] for e in c["env"] if not e["name"].startswith("MF_")] == [
                    "HOME"
                ], where


@pytest.mark.parametrize("mode", ["job", "rayjob"])
def test_training_job_runs_as_the_users_serviceaccount(helm: Helm, mode: str) -> None:
    """The pods run as pod.serviceAccountName; the chart creates no ServiceAccount and binds
    its Role (status of this TrainingJob only) to the user's, so the result still comes back."""
    docs = helm.template(
        "training-job", sets={"mode": mode, "workers": "1", "pod.serviceAccountName": "s3-reader"}
    )
    assert not by_kind(docs, "ServiceAccount")
    assert one(docs, "Role")["metadata"]["name"] == "iris-trainer"
    binding = one(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == "iris-trainer"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "s3-reader", "namespace": "ml"}
    ]
    templates = [t for d in docs for t in pod_specs(d)]
    assert templates
    for where, template in templates:
        assert template["spec"]["serviceAccountName"] == "s3-reader", where


def test_training_job_mode_rayjob(helm: Helm) -> None:
    values = example("training-job")
    docs = helm.template(
        "training-job",
        sets={"mode": "rayjob", "workers": "3"},
        extra=("--set-json", 'command=["modelfactory-train","--verbose"]'),
    )
    assert sorted(d["kind"] for d in docs) == ["RayJob", "Role", "RoleBinding", "ServiceAccount"]
    rayjob = one(docs, "RayJob")
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert rayjob["metadata"]["name"] == "iris-1a2b3c4d"
    assert rayjob["metadata"]["labels"]["modelfactory.dev/run-id"] == "1a2b3c4d"
    spec = rayjob["spec"]
    assert spec["entrypoint"] == "modelfactory-train --verbose"
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == 86400
    assert spec["activeDeadlineSeconds"] == 3600
    assert spec["backoffLimit"] == 1
    assert spec["suspend"] is False

    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == values["ray"]["version"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"] == {"dashboard-host": "0.0.0.0", "num-cpus": "0"}
    head_pod = head["template"]["spec"]
    assert head_pod["serviceAccountName"] == "iris-trainer"
    assert head_pod["automountServiceAccountToken"] is True
    placement(head_pod, values)
    (head_c,) = head_pod["containers"]
    assert head_c["image"] == "ghcr.io/modelfactory/training:0.1.0"
    assert {p["containerPort"] for p in head_c["ports"]} == {6379, 8265, 10001, 52365}
    assert {p["name"] for p in head_c["ports"]} == {"gcs-server", "dashboard", "client", "agent"}
    expected_env = training_env(values)
    resources = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    assert head_c["env"] == expected_env
    assert head_c["envFrom"] == values["pod"]["envFrom"]
    assert head_c["resources"] == resources

    (group,) = cluster["workerGroupSpecs"]
    assert group["groupName"] == "workers"
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 3
    worker_pod = group["template"]["spec"]
    assert worker_pod["serviceAccountName"] == "iris-trainer"
    assert worker_pod["automountServiceAccountToken"] is False
    placement(worker_pod, values)
    (worker_c,) = worker_pod["containers"]
    assert worker_c["image"] == head_c["image"]
    assert worker_c["env"] == expected_env
    assert worker_c["envFrom"] == values["pod"]["envFrom"]
    assert worker_c["resources"] == resources
    # Probes of their own, over HTTP: KubeRay's injected ones exec wget, which the image lacks.
    assert head_c["readinessProbe"]["httpGet"] == {"path": "/api/gcs_healthz", "port": "dashboard"}
    for c in (head_c, worker_c):
        for probe in ("readinessProbe", "livenessProbe"):
            assert set(c[probe]) & {"httpGet", "exec"} == {"httpGet"}, (c["name"], probe)
    assert worker_c["livenessProbe"]["httpGet"]["path"] == "/api/local_raylet_healthz"
    for where, template in pod_specs(rayjob):
        assert template["metadata"]["labels"]["modelfactory.dev/run-id"] == "1a2b3c4d", where
        mounts = {m["mountPath"] for c in template["spec"]["containers"] for m in c["volumeMounts"]}
        if "submitter" not in where:
            assert {"/tmp", "/dev/shm", "/models"} <= mounts, where

    submitter = spec["submitterPodTemplate"]["spec"]
    assert submitter["restartPolicy"] == "Never"
    assert submitter["automountServiceAccountToken"] is False
    placement(submitter, values)
    assert "command" not in submitter["containers"][0]
    # It only submits the job: none of the training's environment.
    assert submitter["containers"][0]["env"] == [{"name": "HOME", "value": "/tmp"}]
    assert "envFrom" not in submitter["containers"][0]


def test_training_job_rayjob_crd_fields(helm: Helm) -> None:
    """Every field the RayJob sets exists in KubeRay v1.5.1's RayJob CRD (when it is built)."""
    crd_file = cache_dir() / "kuberay-crds" / "v1.5.1" / "ray.io_rayjobs.yaml"
    if not crd_file.exists():
        pytest.skip("KubeRay CRDs not built yet (python3 hack/cluster.py build)")
    crd = yaml.safe_load(crd_file.read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    rayjob = one(helm.template("training-job", sets={"mode": "rayjob", "workers": "1"}), "RayJob")

    def check(value: Any, schema: dict[str, Any], path: str) -> None:
        if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
            return
        if isinstance(value, dict):
            props = schema.get("properties")
            if props is None:
                assert "additionalProperties" in schema, path
                for k, v in value.items():
                    check(v, schema["additionalProperties"], f"{path}.{k}")
                return
            for k, v in value.items():
                assert k in props, f"{path}.{k} is not in the RayJob CRD"
                check(v, props[k], f"{path}.{k}")
            for k in schema.get("required", []):
                assert k in value, f"{path}.{k} is required by the RayJob CRD"
        elif isinstance(value, list):
            for i, item in enumerate(value):
                check(item, schema["items"], f"{path}[{i}]")
        elif "enum" in schema:
            assert value in schema["enum"], path

    check(rayjob["spec"], v1["schema"]["openAPIV3Schema"]["properties"]["spec"], "spec")


# ----------------------------------------------------------------------------- model-service


def test_model_service_deployment(helm: Helm) -> None:
    values = example("model-service")
    docs = helm.template("model-service")
    assert sorted(d["kind"] for d in docs) == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]
    assert {d["metadata"]["name"] for d in docs} == {"iris-svc"}
    assert all(d["metadata"]["labels"]["app.kubernetes.io/component"] == "serving" for d in docs)

    deploy = one(docs, "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    selector = spec["selector"]["matchLabels"]
    pod = spec["template"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    annotations = pod["metadata"]["annotations"]
    assert annotations["modelfactory.dev/model-version"] == "1"
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"

    podspec = pod["spec"]
    assert podspec["terminationGracePeriodSeconds"] == 30
    assert podspec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in podspec
    placement(podspec, values)
    (c,) = podspec["containers"]
    assert c["image"] == "ghcr.io/modelfactory/serving:0.1.0"
    assert c["command"] == ["modelfactory-serve"]
    assert c["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "health", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert (
        c["env"]
        == [{"name": "MF_HEALTH_PORT", "value": "8081"}]
        + [{"name": k, "value": v} for k, v in sorted(values["env"].items())]
        + values["pod"]["env"]
    )
    assert c["envFrom"] == values["pod"]["envFrom"]
    # Probes go to the health listener, which a saturated event loop does not delay.
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "health"}
    startup = c["startupProbe"]
    assert startup["httpGet"] == {"path": "/v2/health/ready", "port": "health"}
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 120
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert c["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp", "/models"}


def test_model_service_new_version_changes_pod_template(helm: Helm) -> None:
    def template(version: str) -> dict[str, Any]:
        docs = helm.template("model-service", sets={"modelVersion": version})
        return one(docs, "Deployment")["spec"]["template"]

    assert template("1") != template("2")
    assert template("2")["metadata"]["annotations"]["modelfactory.dev/model-version"] == "2"


def test_model_service_memory_is_always_limited(helm: Helm) -> None:
    """memoryLimit defaults to the request; CPU is limited only when cpuLimit says so."""
    deploy = one(
        helm.template("model-service", sets={"resources.memoryLimit": "null"}), "Deployment"
    )
    resources = deploy["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"memory": "512Mi"} == {"memory": resources["requests"]["memory"]}
    deploy = one(helm.template("model-service", sets={"resources.cpuLimit": "2"}), "Deployment")
    limits = deploy["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "2", "memory": "1Gi"}
    deploy = one(helm.template("model-service", values=False), "Deployment")
    limits = deploy["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"memory": "512Mi"}


def test_model_service_pod_settings(helm: Helm) -> None:
    deploy = one(
        helm.template("model-service", sets={"pod.serviceAccountName": "s3-reader"}), "Deployment"
    )
    podspec = deploy["spec"]["template"]["spec"]
    assert podspec["serviceAccountName"] == "s3-reader"
    # It still gets no API token: the server never calls the API.
    assert podspec["automountServiceAccountToken"] is False
    deploy = one(helm.template("model-service", values=False), "Deployment")
    podspec = deploy["spec"]["template"]["spec"]
    for key in ("serviceAccountName", "imagePullSecrets", "nodeSelector", "tolerations"):
        assert key not in podspec, key
    # Only the health listener's port, which the chart's probes rely on.
    assert podspec["containers"][0]["env"] == [{"name": "MF_HEALTH_PORT", "value": "8081"}]
    assert "envFrom" not in podspec["containers"][0]
    deploy = one(
        helm.template(
            "model-service",
            values=False,
            extra=("--set-json", 'pod.env=[{"name":"LOG_FORMAT","value":"json"}]'),
        ),
        "Deployment",
    )
    assert deploy["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "MF_HEALTH_PORT", "value": "8081"},
        {"name": "LOG_FORMAT", "value": "json"},
    ]


def test_model_service_service_hpa_pdb(helm: Helm) -> None:
    docs = helm.template(
        "model-service",
        sets={
            "replicas.min": "2",
            "replicas.max": "5",
            "autoscaling.metric": "memory",
            "autoscaling.targetUtilization": "80",
        },
    )
    deploy = one(docs, "Deployment")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["replicas"] == 2

    svc = one(docs, "Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}
    ]
    assert svc["spec"]["selector"].items() <= pod_labels.items()

    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "iris-svc",
    }
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["maxReplicas"] == 5
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "memory",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        }
    ]

    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


# ----------------------------------------------------------------------------- modelfactory

NAMESPACED_RULES = [
    (
        "modelfactory.dev",
        ["trainingjobs", "modelservices", "batchpredictions"],
        ["get", "list", "watch", "patch", "update"],
    ),
    (
        "modelfactory.dev",
        ["trainingjobs/status", "modelservices/status", "batchpredictions/status"],
        ["get", "patch", "update"],
    ),
    (
        "modelfactory.dev",
        ["trainingjobs/finalizers", "modelservices/finalizers", "batchpredictions/finalizers"],
        ["update"],
    ),
    ("", ["events"], ["get", "list", "watch", "create", "patch"]),
    ("events.k8s.io", ["events"], ["create", "patch"]),
    ("", ["secrets"], ["get", "list", "create", "update", "patch", "delete"]),
    (
        "",
        ["serviceaccounts", "services"],
        ["get", "list", "watch", "create", "update", "patch", "delete"],
    ),
    (
        "rbac.authorization.k8s.io",
        ["roles", "rolebindings"],
        ["get", "list", "watch", "create", "update", "patch", "delete"],
    ),
    ("batch", ["jobs"], ["get", "list", "watch", "create", "update", "patch", "delete"]),
    ("apps", ["deployments"], ["get", "list", "watch", "create", "update", "patch", "delete"]),
    (
        "autoscaling",
        ["horizontalpodautoscalers"],
        ["get", "list", "watch", "create", "update", "patch", "delete"],
    ),
    (
        "policy",
        ["poddisruptionbudgets"],
        ["get", "list", "watch", "create", "update", "patch", "delete"],
    ),
    ("ray.io", ["rayjobs"], ["get", "list", "watch", "create", "update", "patch", "delete"]),
    (
        "gateway.networking.k8s.io",
        ["httproutes"],
        ["get", "list", "watch", "create", "update", "patch", "delete"],
    ),
    ("", ["pods", "persistentvolumeclaims"], ["get", "list", "watch"]),
    # A model server's readiness answer, read through the API server: GET only.
    ("", ["pods/proxy"], ["get", "create"]),
]
CRD_RULE = ("apiextensions.k8s.io", ["customresourcedefinitions"], ["get", "list", "watch"])
NAMESPACES_RULE = ("", ["namespaces"], ["get", "list", "watch"])


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in rules:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    out.add((group, resource, verb))
    return out


def expected(*rules: tuple[str, list[str], list[str]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for g, resources, verbs in rules for r in resources for v in verbs}


def test_operator_rbac_cluster_wide(helm: Helm) -> None:
    docs = helm.template("modelfactory", values=False, release="mf", namespace="mf-system")
    assert not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding")
    role = one(docs, "ClusterRole")
    assert grants(role["rules"]) == expected(*NAMESPACED_RULES, CRD_RULE, NAMESPACES_RULE)
    binding = one(docs, "ClusterRoleBinding")
    sa = one(docs, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "mf-system"}
    ]
    deploy = one(docs, "Deployment")
    assert "--all-namespaces" in deploy["spec"]["template"]["spec"]["containers"][0]["args"]


def test_operator_rbac_namespaced(helm: Helm) -> None:
    docs = helm.template("modelfactory", release="mf", namespace="mf-system")
    sa_name = one(docs, "ServiceAccount")["metadata"]["name"]
    assert sa_name == "modelfactory-operator"
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml-team-a", "ml-team-b"]
    for role in roles:
        assert grants(role["rules"]) == expected(*NAMESPACED_RULES)
    bindings = by_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ml-team-a", "ml-team-b"]
    for b in bindings:
        assert b["roleRef"]["kind"] == "Role"
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": sa_name, "namespace": "mf-system"}
        ]
    cluster_role = one(docs, "ClusterRole")
    assert grants(cluster_role["rules"]) == expected(CRD_RULE, NAMESPACES_RULE)
    crb = one(docs, "ClusterRoleBinding")
    assert crb["roleRef"]["name"] == cluster_role["metadata"]["name"]
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:4] == ["--namespace", "ml-team-a", "--namespace", "ml-team-b"]
    assert "--all-namespaces" not in args


def test_operator_deployment(helm: Helm) -> None:
    docs = helm.template("modelfactory", release="mf", namespace="mf-system")
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert set(labels) >= OPERATOR_LABELS, doc["kind"]
        assert labels["app.kubernetes.io/part-of"] == "modelfactory"
        assert labels["app.kubernetes.io/component"] == "operator"
    deploy = one(docs, "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "modelfactory-operator"
    (c,) = pod["containers"]
    assert c["image"] == "ghcr.io/modelfactory/operator:0.1.0"
    assert c["command"] == ["modelfactory-operator"]
    assert c["args"][-2:] == ["--liveness-port", "8080"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["MF_TRAINING_IMAGE"] == "ghcr.io/modelfactory/training:0.1.0"
    assert env["MF_SERVING_IMAGE"] == "ghcr.io/modelfactory/serving:0.1.0"
    assert env["MF_LOG_LEVEL"] == "info"
    assert env["HELM_CACHE_HOME"].startswith("/tmp/")


def test_operator_image_tags_default_to_app_version(helm: Helm) -> None:
    app_version = yaml.safe_load((CHARTS / "modelfactory" / "Chart.yaml").read_text())["appVersion"]
    deploy = one(
        helm.template(
            "modelfactory", values=False, sets={"servingImage.repository": "registry.local/serve"}
        ),
        "Deployment",
    )
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert c["image"] == f"ghcr.io/modelfactory/operator:{app_version}"
    assert env["MF_SERVING_IMAGE"] == f"registry.local/serve:{app_version}"


# ----------------------------------------------------------------------------- CRDs


def repo_crds() -> list[Path]:
    return sorted((ROOT / "crds").glob("*.yaml"))


def test_chart_crds_are_the_repository_crds() -> None:
    chart_crds = CHARTS / "modelfactory" / "crds"
    assert repo_crds(), "no CRDs in crds/"
    assert sorted(p.name for p in chart_crds.iterdir()) == [p.name for p in repo_crds()]
    for src in repo_crds():
        link = chart_crds / src.name
        assert link.is_symlink(), f"{link} should be a symbolic link to ../../../crds/"
        assert os.readlink(link) == f"../../../crds/{src.name}"
        assert filecmp.cmp(link, src, shallow=False)


def test_include_crds_renders_them(helm: Helm) -> None:
    docs = helm.template("modelfactory", values=False, extra=("--include-crds",))
    rendered = {d["metadata"]["name"]: d for d in by_kind(docs, "CustomResourceDefinition")}
    for src in repo_crds():
        crd = yaml.safe_load(src.read_text())
        assert rendered.get(crd["metadata"]["name"]) == crd
    assert not by_kind(helm.template("modelfactory", values=False), "CustomResourceDefinition")


def test_package_contains_the_crds(helm: Helm, tmp_path: Path) -> None:
    helm.run("package", str(CHARTS / "modelfactory"), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("modelfactory-*.tgz")
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        packaged = sorted(n for n in members if n.startswith("modelfactory/crds/"))
        assert packaged == [f"modelfactory/crds/{p.name}" for p in repo_crds()]
        for src in repo_crds():
            member = members[f"modelfactory/crds/{src.name}"]
            assert member.isfile()
            data = tar.extractfile(member)
            assert data is not None and data.read() == src.read_bytes()
        assert not any(n.startswith("modelfactory/ci/") for n in members)


def test_model_service_candidate_has_its_own_deployment_and_service(
    helm: Helm, tmp_path: Path
) -> None:
    """During a rollout: the other version's Deployment and Service, which the stable ones'
    selectors never match, with fixed replicas and no autoscaler or disruption budget."""
    candidate = {
        "candidate": {
            "name": "iris-svc-candidate",
            "labels": {
                "app.kubernetes.io/name": "modelfactory-serving-candidate",
                "app.kubernetes.io/instance": "iris",
                "app.kubernetes.io/part-of": "modelfactory",
                "app.kubernetes.io/managed-by": "modelfactory-operator",
                "modelfactory.dev/track": "candidate",
            },
            "env": {"MF_MODEL_URI": "/models/iris/2", "MF_ROUTE_TRACK": "candidate"},
            "modelVersion": "2",
            "replicas": 2,
        }
    }
    extra = tmp_path / "candidate.yaml"
    extra.write_text(yaml.safe_dump(candidate))
    docs = helm.template("model-service", extra=("-f", str(extra)))
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("Deployment", "iris-svc"),
        ("Deployment", "iris-svc-candidate"),
        ("HorizontalPodAutoscaler", "iris-svc"),
        ("PodDisruptionBudget", "iris-svc"),
        ("Service", "iris-svc"),
        ("Service", "iris-svc-candidate"),
    ]
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    services = {d["metadata"]["name"]: d for d in by_kind(docs, "Service")}
    stable, cand = deployments["iris-svc"], deployments["iris-svc-candidate"]
    assert cand["spec"]["replicas"] == 2
    cand_pod = cand["spec"]["template"]
    assert cand_pod["metadata"]["annotations"]["modelfactory.dev/model-version"] == "2"
    env = {e["name"]: e.get("value") for e in cand_pod["spec"]["containers"][0]["env"]}
    assert env["MF_MODEL_URI"] == "/models/iris/2" and env["MF_ROUTE_TRACK"] == "candidate"
    # Each selector matches its own pods only.
    for name, other in (("iris-svc", cand_pod), ("iris-svc-candidate", stable["spec"]["template"])):
        selector = services[name]["spec"]["selector"]
        assert not selector.items() <= other["metadata"]["labels"].items()
        assert (
            not deployments[name]["spec"]["selector"]["matchLabels"].items()
            <= other["metadata"]["labels"].items()
        )
    assert cand["metadata"]["ownerReferences"] == stable["metadata"]["ownerReferences"]


def test_model_service_http_route_carries_weights_and_pins(helm: Helm, tmp_path: Path) -> None:
    values = {
        "httpRoute": {
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "http"}],
            "hostnames": ["models.example.com"],
            "backends": [
                {"name": "iris-svc", "weight": 90},
                {"name": "iris-svc-candidate", "weight": 10},
            ],
            "pins": [
                {"header": "x-model-variant", "value": "canary", "backend": "iris-svc-candidate"}
            ],
        }
    }
    extra = tmp_path / "route.yaml"
    extra.write_text(yaml.safe_dump(values))
    route = one(helm.template("model-service", extra=("-f", str(extra))), "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public",
            "namespace": "gateways",
            "sectionName": "http",
        }
    ]
    assert route["spec"]["hostnames"] == ["models.example.com"]
    pin, split = route["spec"]["rules"]
    assert pin["matches"][0]["headers"] == [
        {"type": "Exact", "name": "x-model-variant", "value": "canary"}
    ]
    assert pin["backendRefs"] == [{"name": "iris-svc-candidate", "port": 80}]
    assert split["backendRefs"] == [
        {"name": "iris-svc", "port": 80, "weight": 90},
        {"name": "iris-svc-candidate", "port": 80, "weight": 10},
    ]
    assert route["metadata"]["ownerReferences"][0]["kind"] == "ModelService"
    # None by default; a weight out of range is refused by the chart's schema.
    assert not by_kind(helm.template("model-service"), "HTTPRoute")
    values["httpRoute"]["backends"][0]["weight"] = 101  # type: ignore[index]
    extra.write_text(yaml.safe_dump(values))
    assert "weight" in helm.template_fails("model-service", extra=("-f", str(extra)))
