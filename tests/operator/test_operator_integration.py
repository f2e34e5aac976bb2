"""The operator, run as a process, reconciling real resources on the real control plane."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Kube, eventually
from tests.operator.conftest import (
    DIGEST,
    EXAMPLES,
    MOUNT_ROOT,
    OperatorProcess,
    apply,
    condition,
    get,
    helm_releases,
    report_result,
    status,
)

pytestmark = pytest.mark.integration


def test_iris_example_trains_then_serves(
    operator: OperatorProcess, kube: Kube, namespace: str, example_claim: str
) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "iris-classifier.yaml"))
    job = eventually(
        lambda: kube.kubectl_json("get", "jobs", "-n", namespace)["items"], what="training Job"
    )[0]
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].startswith("ghcr.io/modelfactory/training")
    env = {e["name"]: e.get("value") for e in container["env"]}
    config = json.loads(env["MF_TRAINING_CONFIG"])
    assert config["spec"]["dataset"]["uri"] == "sklearn://iris"
    assert config["spec"]["output"]["storageUri"] == f"file://{MOUNT_ROOT}/{example_claim}/iris"
    # Ray in the pod is sized to the pod's requests, which the memory limit matches.
    assert config["ray"]["numCpus"] == 1 and config["ray"]["memoryBytes"] == 2 * 2**30
    assert container["resources"]["limits"] == {"memory": "2Gi"}
    assert [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ] == [example_claim]
    assert pod["serviceAccountName"] == "iris-trainer"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "TrainingJob"
    role = get(kube, "role", "iris-trainer", namespace)
    assert role["rules"][0]["resourceNames"] == ["iris"]
    assert "tj-iris" in helm_releases(kube, namespace)

    # The ModelService waits for a model and says so.
    ms = eventually(
        lambda: (
            (m := get(kube, "msvc", "iris", namespace))
            and condition(m, "ModelResolved").get("reason") == "NoModelYet"
            and m
        ),
        what="ModelResolved=False/NoModelYet",
    )
    assert ms["status"]["phase"] == "Pending"

    # The training pod's ServiceAccount may write this resource's status, and nothing else.
    refused = kube.run(
        "kubectl",
        "patch",
        "msvc",
        "iris",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{}}',
        f"--as=system:serviceaccount:{namespace}:iris-trainer",
        check=False,
    )
    assert refused.returncode != 0 and "forbidden" in refused.stderr
    report_result(kube, namespace, "iris")
    tj = eventually(
        lambda: (
            (t := get(kube, "tj", "iris", namespace)).get("status", {}).get("phase") == "Succeeded"
            and t
        ),
        what="TrainingJob Succeeded",
    )
    assert tj["status"]["model"] == {
        "version": 1,
        "uri": f"pvc://{example_claim}/iris/1",
        "digest": DIGEST,
    }
    assert condition(tj, "Ready")["status"] == "True"
    columns = kube.kubectl("get", "tj", "iris", "-n", namespace, "--no-headers").split()
    assert columns[:5] == ["iris", "Succeeded", "accuracy", "0.96", "1"]

    # ... and the ModelService rolls out version 1; kwok runs its pods.
    dep = eventually(
        lambda: kube.kubectl_json("get", "deployments", "-n", namespace)["items"], what="Deployment"
    )[0]
    template = dep["spec"]["template"]
    assert template["metadata"]["annotations"]["modelfactory.dev/model-version"] == "1"
    server = template["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in server["env"]}["MF_MODEL_URI"] == (
        f"file://{MOUNT_ROOT}/{example_claim}/iris/1"
    )
    assert server["resources"]["limits"] == {"memory": "512Mi"}
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    eventually(
        lambda: status(kube, "msvc", "iris", namespace).get("phase") == "Ready",
        what="ModelService Ready",
    )
    ms = get(kube, "msvc", "iris", namespace)
    assert ms["status"]["modelVersion"] == 1 and ms["status"]["readyReplicas"] >= 1
    assert ms["status"]["url"] == f"http://iris.{namespace}.svc"
    hpa = get(kube, "hpa", "iris", namespace)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    get(kube, "pdb", "iris", namespace)
    columns = kube.kubectl("get", "msvc", "iris", "-n", namespace, "--no-headers").split()
    assert columns[:5] == ["iris", "Ready", "1", "1", f"http://iris.{namespace}.svc"]
    reasons = {e["reason"] for e in kube.kubectl_json("get", "events", "-n", namespace)["items"]}
    assert {"TrainingSucceeded", "ModelAvailable", "ServingModel"} <= reasons

    # Retraining makes version 2, and the service rolls to it.
    kube.kubectl("annotate", "tj", "iris", "-n", namespace, "modelfactory.dev/retrain=2")
    eventually(
        lambda: (
            len(kube.kubectl_json("get", "jobs", "-n", namespace)["items"]) == 1
            and kube.kubectl_json("get", "jobs", "-n", namespace)["items"][0]["metadata"]["name"]
            != job["metadata"]["name"]
        ),
        what="a new run's Job",
    )
    report_result(kube, namespace, "iris", version=2)
    eventually(
        lambda: status(kube, "msvc", "iris", namespace).get("modelVersion") == 2,
        what="ModelService serving version 2",
    )
    tj = get(kube, "tj", "iris", namespace)
    assert [m["version"] for m in tj["status"]["history"]] == [1, 2]


def test_ray_example_makes_a_rayjob(operator: OperatorProcess, kube: Kube, namespace: str) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "ray-cluster.yaml"))
    rayjob = eventually(
        lambda: kube.kubectl_json("get", "rayjobs", "-n", namespace)["items"], what="RayJob"
    )[0]
    cluster = rayjob["spec"]["rayClusterSpec"]
    assert cluster["workerGroupSpecs"][0]["replicas"] == 2
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert any(e["name"] == "MF_TRAINING_CONFIG" for e in head["env"])
    assert rayjob["spec"]["shutdownAfterJobFinishes"] is True


@pytest.mark.parametrize(
    ("example", "name"),
    [
        ("diabetes-regressor.yaml", "diabetes"),
        ("csv-churn.yaml", "churn"),
        ("iris-on-a-claim.yaml", "iris-claim"),
    ],
)
def test_other_examples_apply(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    example_claim: str,
    example: str,
    name: str,
) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / example))
    eventually(
        lambda: kube.kubectl_json("get", "jobs", "-n", namespace)["items"], what="training Job"
    )
    eventually(
        lambda: (
            condition(get(kube, "msvc", name, namespace), "ModelResolved").get("reason")
            == "NoModelYet"
        ),
        what="ModelService waiting for a model",
    )


def test_finished_job_without_result_fails_saying_so(
    operator: OperatorProcess, kube: Kube, namespace: str, example_claim: str
) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "diabetes-regressor.yaml"))
    tj = eventually(
        lambda: (
            (t := get(kube, "tj", "diabetes", namespace)).get("status", {}).get("phase") == "Failed"
            and t
        ),
        what="Failed",
        timeout=90,
    )
    failed = condition(tj, "Failed")
    assert failed["reason"] == "NoResult" and "without reporting a result" in failed["message"]
    events = kube.kubectl("get", "events", "-n", namespace, "--field-selector=reason=NoResult")
    assert "diabetes" in events


def test_reported_failure_lands_in_failed_phase(
    operator: OperatorProcess, kube: Kube, namespace: str, example_claim: str
) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "csv-churn.yaml"))
    report_result(kube, namespace, "churn", ok=False)
    tj = eventually(
        lambda: (
            (t := get(kube, "tj", "churn", namespace)).get("status", {}).get("phase") == "Failed"
            and t
        ),
        what="Failed",
    )
    assert condition(tj, "Failed")["reason"] == "TargetNotFound"
    assert "column 'label'" in condition(tj, "Failed")["message"]


def test_modelservice_status_follows_its_pods(
    operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    apply(
        kube,
        namespace,
        {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": "pinned"},
            "spec": {
                "model": {"uri": "s3://models/iris/3", "digest": DIGEST},
                "replicas": {"min": 2, "max": 4},
            },
        },
    )
    eventually(
        lambda: status(kube, "msvc", "pinned", namespace).get("phase") == "Ready", what="Ready"
    )
    assert get(kube, "msvc", "pinned", namespace)["status"]["readyReplicas"] == 2
    # No pod may run any more: the service degrades and says so.
    apply(
        kube,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "no-pods"},
            "spec": {"hard": {"pods": "0"}},
        },
    )
    kube.kubectl(
        "delete", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=pinned", "--wait=false"
    )
    ms = eventually(
        lambda: (
            (m := get(kube, "msvc", "pinned", namespace)).get("status", {}).get("phase")
            == "Degraded"
            and m
        ),
        what="Degraded",
    )
    assert condition(ms, "Available")["status"] == "False"
    kube.kubectl("delete", "resourcequota", "no-pods", "-n", namespace)
    eventually(
        lambda: status(kube, "msvc", "pinned", namespace).get("phase") == "Ready",
        what="Ready again",
        timeout=120,
    )


def test_delete_removes_releases_and_children(
    operator: OperatorProcess, kube: Kube, namespace: str, example_claim: str
) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "iris-classifier.yaml"))
    report_result(kube, namespace, "iris")
    eventually(
        lambda: kube.kubectl_json("get", "deployments", "-n", namespace)["items"], what="Deployment"
    )
    assert helm_releases(kube, namespace) == ["msvc-iris", "tj-iris"]
    kube.kubectl(
        "delete", "-n", namespace, "-f", str(EXAMPLES / "iris-classifier.yaml"), "--timeout=60s"
    )
    eventually(lambda: helm_releases(kube, namespace) == [], what="releases uninstalled")
    for kind in (
        "jobs",
        "deployments",
        "services",
        "hpa",
        "pdb",
        "serviceaccounts",
        "roles",
        "rolebindings",
    ):
        items = [
            i["metadata"]["name"] for i in kube.kubectl_json("get", kind, "-n", namespace)["items"]
        ]
        leftovers = [i for i in items if i != "default" and not i.startswith("kube-")]
        assert leftovers == [], f"orphaned {kind}: {leftovers}"


def test_pvc_storage_is_mounted_where_the_workloads_look(
    operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    apply(
        kube,
        namespace,
        {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "onclaim"},
            "spec": {
                "dataset": {"uri": "pvc://data/train.csv", "target": "y"},
                "model": {"estimator": "sklearn.linear_model.Ridge"},
                "output": {"storageUri": "pvc://models/onclaim"},
            },
        },
    )
    job = eventually(
        lambda: kube.kubectl_json("get", "jobs", "-n", namespace)["items"], what="training Job"
    )[0]
    pod = job["spec"]["template"]["spec"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"data", "models"}
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/mnt/pvc/data", "/mnt/pvc/models"} <= mounts
    report_result(kube, namespace, "onclaim")
    eventually(
        lambda: (
            status(kube, "tj", "onclaim", namespace).get("model", {}).get("uri")
            == "pvc://models/onclaim/1"
        ),
        what="model on the claim",
    )
    apply(
        kube,
        namespace,
        {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": "onclaim"},
            "spec": {"model": {"trainingJob": "onclaim"}},
        },
    )
    dep = eventually(
        lambda: kube.kubectl_json("get", "deployments", "-n", namespace)["items"], what="Deployment"
    )[0]
    spec = dep["spec"]["template"]["spec"]
    assert [
        v["persistentVolumeClaim"] for v in spec["volumes"] if "persistentVolumeClaim" in v
    ] == [{"claimName": "models", "readOnly": True}]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["MF_MODEL_URI"] == "file:///mnt/pvc/models/onclaim/1"


def test_a_run_that_cannot_start_says_why(
    operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    """The training pod waits for a claim that does not exist: the TrainingJob says so, from
    the pod's scheduling condition and the claim itself."""
    apply(
        kube,
        namespace,
        {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "noclaim"},
            "spec": {
                "dataset": {"uri": "sklearn://iris"},
                "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
                "output": {"storageUri": "pvc://absent/noclaim"},
            },
        },
    )
    eventually(
        lambda: kube.kubectl_json("get", "pods", "-n", namespace)["items"], what="training pod"
    )

    def running_message() -> str:
        # Pods are not watched: touch the resource so that it is reconciled now, not at the
        # next resync.
        kube.kubectl(
            "annotate",
            "tj",
            "noclaim",
            "-n",
            namespace,
            "--overwrite",
            f"test.modelfactory.dev/poke={time.monotonic()}",
        )
        message = condition(get(kube, "tj", "noclaim", namespace), "Running").get("message", "")
        return message if "PersistentVolumeClaim absent does not exist" in message else ""

    message = eventually(
        running_message, timeout=60, interval=2, what="Running condition naming the missing claim"
    )
    assert message.startswith("waiting for the training pod to start: pod noclaim-"), message
    assert "is not scheduled: Unschedulable" in message, message
    assert status(kube, "tj", "noclaim", namespace)["phase"] == "Pending"


def test_pod_settings_reach_the_workloads(
    operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    pod = {
        "serviceAccountName": "s3-reader",
        "imagePullSecrets": ["registry-credentials"],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
        "env": [{"name": "AWS_REGION", "value": "eu-west-1"}],
        "envFrom": [{"secretRef": {"name": "s3-credentials", "optional": True}}],
    }
    kube.kubectl("create", "serviceaccount", "s3-reader", "-n", namespace)
    apply(
        kube,
        namespace,
        {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "podded"},
            "spec": {
                "dataset": {"uri": "sklearn://iris"},
                "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
                "output": {"storageUri": "s3://models/podded"},
                "pod": pod,
            },
        },
    )
    job = eventually(
        lambda: kube.kubectl_json("get", "jobs", "-n", namespace)["items"], what="training Job"
    )[0]
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "s3-reader"
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    container = spec["containers"][0]
    assert container["env"][-1] == {"name": "AWS_REGION", "value": "eu-west-1"}
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials", "optional": True}}]
    # The user's ServiceAccount replaces the chart's, and still may report the result.
    sas = [s["metadata"]["name"] for s in kube.kubectl_json("get", "sa", "-n", namespace)["items"]]
    assert "podded-trainer" not in sas
    run_id = eventually(lambda: status(kube, "tj", "podded", namespace).get("runId"), what="runId")
    kube.kubectl(
        "patch",
        "tj",
        "podded",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "result": {
                        "runId": run_id,
                        "succeeded": True,
                        "metric": "accuracy",
                        "metrics": {"test_accuracy": 0.9},
                        "model": {"version": 1, "uri": "s3://models/podded/1", "digest": DIGEST},
                    }
                }
            }
        ),
        f"--as=system:serviceaccount:{namespace}:s3-reader",
    )
    eventually(
        lambda: status(kube, "tj", "podded", namespace).get("phase") == "Succeeded",
        what="TrainingJob Succeeded",
    )
    apply(
        kube,
        namespace,
        {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": "podded"},
            "spec": {"model": {"trainingJob": "podded"}, "pod": pod},
        },
    )
    dep = eventually(
        lambda: kube.kubectl_json("get", "deployments", "-n", namespace)["items"], what="Deployment"
    )[0]
    spec = dep["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "s3-reader"
    assert spec["automountServiceAccountToken"] is False
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
    server = spec["containers"][0]
    assert server["env"][-1] == {"name": "AWS_REGION", "value": "eu-west-1"}
    assert server["envFrom"] == [{"secretRef": {"name": "s3-credentials", "optional": True}}]
