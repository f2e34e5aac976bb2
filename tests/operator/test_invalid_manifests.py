"""Invalid manifests: rejected by the API server (schema, CEL), or Failed with a message; the
message always names the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.conftest import Kube, eventually
from tests.operator.conftest import OperatorProcess, condition, get

pytestmark = pytest.mark.integration

TJ: dict[str, Any] = {
    "apiVersion": "modelfactory.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "bad"},
    "spec": {
        "dataset": {"uri": "sklearn://iris"},
        "model": {"estimator": "sklearn.ensemble.RandomForestClassifier"},
        "tuning": {"searchSpace": {"n_estimators": {"values": [10, 20]}}},
        "output": {"storageUri": "s3://models/bad"},
    },
}
MS: dict[str, Any] = {
    "apiVersion": "modelfactory.dev/v1alpha1",
    "kind": "ModelService",
    "metadata": {"name": "bad"},
    "spec": {"model": {"trainingJob": "iris"}},
}


def change(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = obj
    for p in parents:
        node = node.setdefault(p, {})
    if value is DELETE:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return obj


DELETE = object()

REJECTED = [
    (TJ, "spec.dataset.uri", "ftp://data/x.csv", "spec.dataset.uri"),
    (TJ, "spec.dataset.uri", "sklearn://mnist", "spec.dataset.uri"),
    (TJ, "spec.dataset.uri", "file:///data/x.csv", "spec.dataset.target"),
    (TJ, "spec.dataset.testSize", 1.5, "spec.dataset.testSize"),
    (TJ, "spec.dataset.format", "excel", "spec.dataset.format"),
    (TJ, "spec.model.estimator", "os.system", "spec.model.estimator"),
    (TJ, "spec.model.estimator", 42, "spec.model.estimator"),
    (TJ, "spec.model.preprocessing", "sometimes", "spec.model.preprocessing"),
    (TJ, "spec.tuning.trials", 0, "spec.tuning.trials"),
    (TJ, "spec.tuning.trials", "ten", "spec.tuning.trials"),
    (TJ, "spec.tuning.cvFolds", 1, "spec.tuning.cvFolds"),
    (TJ, "spec.tuning.algorithm", "bayes", "spec.tuning.algorithm"),
    (TJ, "spec.tuning.direction", "up", "spec.tuning.direction"),
    # Every scikit-learn scorer is greater-is-better: minimize would pick the worst model.
    (TJ, "spec.tuning.direction", "minimize", "spec.tuning.direction"),
    (TJ, "spec.tuning.timeBudgetSeconds", 0, "spec.tuning.timeBudgetSeconds"),
    (
        change(TJ, "spec.tuning.timeBudgetSeconds", 600),
        "spec.activeDeadlineSeconds",
        600,
        "spec.tuning.timeBudgetSeconds",
    ),
    (TJ, "spec.model.maxCategories", 1, "spec.model.maxCategories"),
    (TJ, "spec.tuning.searchSpace", {"max_depth": {"low": 3}}, "spec.tuning.searchSpace"),
    (TJ, "spec.compute.workers", -1, "spec.compute.workers"),
    (TJ, "spec.compute.memory", "lots", "spec.compute.memory"),
    (TJ, "spec.output", DELETE, "spec.output"),
    (TJ, "spec.backoffLimit", -2, "spec.backoffLimit"),
    (TJ, "spec.unknownField", 1, "unknownField"),
    (MS, "spec.replicas", {"min": -1, "max": 2}, "spec.replicas.min"),
    (MS, "spec.replicas", {"min": 5, "max": 2}, "spec.replicas"),
    (
        MS,
        "spec.model",
        {"trainingJob": "a", "uri": "s3://b/1", "digest": "sha256:" + "a" * 64},
        "spec.model",
    ),
    (MS, "spec.model", {"uri": "s3://b/m/1"}, "spec.model"),
    (MS, "spec.model", {"uri": "s3://b/m/1", "digest": "md5:abc"}, "spec.model.digest"),
    (
        MS,
        "spec.model",
        {"uri": "s3://b/m/1", "digest": "sha256:" + "a" * 64, "version": 2},
        "spec.model",
    ),
    (MS, "spec.autoscaling", {"metric": "gpu"}, "spec.autoscaling.metric"),
    (MS, "spec.batching", {"maxBatchSize": 0}, "spec.batching.maxBatchSize"),
    (
        MS,
        "spec.batching",
        {"maxBatchSize": 64, "maxQueueRows": 32},
        "spec.batching.maxQueueRows must be at least spec.batching.maxBatchSize",
    ),
    (MS, "spec.resources", {"cpu": "two"}, "spec.resources.cpu"),
    (TJ, "spec.pod", {"env": [{"name": "MF_TRAINING_CONFIG", "value": "{}"}]}, "spec.pod.env[0]"),
    (
        MS,
        "spec.pod",
        {"envFrom": [{"prefix": "MF_", "configMapRef": {"name": "c"}}]},
        "spec.pod.envFrom[0]",
    ),
    (
        TJ,
        "spec.pod",
        {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
        "spec.pod.env",
    ),
    (MS, "spec.pod", {"env": [{"name": "A", "valueFrom": {}}]}, "spec.pod.env[0].valueFrom"),
    (MS, "spec.pod", {"tolerations": [{"value": "x"}]}, "spec.pod.tolerations[0]"),
    (TJ, "spec.pod", {"imagePullSecrets": ["Bad_Name"]}, "spec.pod.imagePullSecrets[0]"),
    (TJ, "spec.pod", {"nodeSelector": {f"k{i}": "v" for i in range(33)}}, "spec.pod.nodeSelector"),
    (MS, "spec.pod", {"hostNetwork": True}, "hostNetwork"),
    # Names: every child carries the name as a label value (at most 63 characters), and a
    # ModelService's name is its Service's (RFC 1035).
    (TJ, "metadata.name", "t" * 64, "metadata.name must be at most 63"),
    (MS, "metadata.name", "m" * 70, "metadata.name must be at most 63"),
    (MS, "metadata.name", "1st-model", "metadata.name must start with a letter"),
    (MS, "metadata.name", "iris.v2", "metadata.name must start with a letter"),
    # A storage URI may not step out of the place it names.
    (TJ, "spec.output.storageUri", "pvc://c/../../etc", "spec.output.storageUri"),
    (TJ, "spec.output.storageUri", "s3://models/a/%2e%2e/b", "spec.output.storageUri"),
    (TJ, "spec.dataset", {"uri": "pvc://data/../secrets/x.csv", "target": "y"}, "spec.dataset.uri"),
    (
        MS,
        "spec.model",
        {"uri": "pvc://c/../../etc", "digest": "sha256:" + "a" * 64},
        "spec.model.uri",
    ),
    (MS, "spec.model", {"uri": "gs://b/m/..", "digest": "sha256:" + "a" * 64}, "spec.model.uri"),
]

FAILED_PHASE = [
    ("spec.model.estimator", "sklearn.ensemble.NoSuchForest", "spec.model.estimator"),
    ("spec.model.params", {"n_trees": 3}, "spec.model.params"),
    ("spec.tuning.searchSpace", {"depth": {"values": [1, 2]}}, "spec.tuning.searchSpace"),
    (
        "spec.tuning",
        {"algorithm": "grid", "searchSpace": {"max_depth": {"low": 1, "high": 4}}},
        "spec.tuning.searchSpace",
    ),
    (
        "spec.tuning.searchSpace",
        {"max_depth": {"values": [1], "low": 1, "high": 3}},
        "spec.tuning.searchSpace",
    ),
]


# A pod's own filesystem is gone when the pod ends: the kubernetes launcher refuses it.
POD_LOCAL_STORAGE = [
    (TJ, "spec.output.storageUri", "file:///tmp/models/bad", "spec.output.storageUri"),
    (TJ, "spec.output.storageUri", "/models/bad", "spec.output.storageUri"),
    (TJ, "spec.dataset", {"uri": "file:///data/train.csv", "target": "y"}, "spec.dataset.uri"),
    (
        MS,
        "spec.model",
        {"uri": "file:///models/iris/1", "digest": "sha256:" + "a" * 64},
        "spec.model.uri",
    ),
]


@pytest.mark.parametrize(
    ("base", "path", "value", "field"),
    REJECTED,
    ids=[f"{b['kind']}:{p}={v!r}"[:60] for b, p, v, _ in REJECTED],
)
def test_api_server_rejects(
    crds: Kube, namespace: str, base: dict[str, Any], path: str, value: Any, field: str
) -> None:
    res = crds.run(
        "kubectl",
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input_text=json.dumps(change(base, path, value)),
    )
    assert res.returncode != 0, f"accepted: {path}={value!r}"
    assert field in res.stderr, res.stderr


@pytest.mark.parametrize(
    ("path", "value", "field"), FAILED_PHASE, ids=[f"{p}={v!r}"[:60] for p, v, _ in FAILED_PHASE]
)
def test_operator_fails_with_a_message(
    operator: OperatorProcess, kube: Kube, namespace: str, path: str, value: Any, field: str
) -> None:
    kube.kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=json.dumps(change(TJ, path, value))
    )
    tj = eventually(
        lambda: (
            (t := get(kube, "tj", "bad", namespace)).get("status", {}).get("phase") == "Failed"
            and t
        ),
        what="Failed",
    )
    failed = condition(tj, "Failed")
    assert failed["reason"] == "InvalidSpec" and field in failed["message"]
    assert kube.kubectl_json("get", "jobs", "-n", namespace)["items"] == []
    # No retry storm: the operator does not keep re-handling an invalid spec.
    log_lines = operator.log.read_text().count(f'"{namespace}"')
    assert log_lines < 50


def test_storage_uri_is_immutable(operator: OperatorProcess, kube: Kube, namespace: str) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(TJ))
    res = kube.run(
        "kubectl",
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input_text=json.dumps(change(TJ, "spec.output.storageUri", "s3://else/x")),
    )
    assert res.returncode != 0 and "spec.output.storageUri is immutable" in res.stderr


def test_missing_rayjob_crd_is_reported(
    operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    """With workers > 0 and no KubeRay the TrainingJob says so instead of retrying forever."""
    crd = kube.kubectl_json("get", "crd", "rayjobs.ray.io")
    kube.kubectl("delete", "crd", "rayjobs.ray.io")
    try:
        kube.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input_text=json.dumps(change(TJ, "spec.compute.workers", 2)),
        )
        tj = eventually(
            lambda: (
                (t := get(kube, "tj", "bad", namespace)).get("status", {}).get("phase") == "Failed"
                and t
            ),
            what="Failed",
        )
        failed = condition(tj, "Failed")
        assert failed["reason"] == "RayJobCRDMissing"
        assert "install KubeRay or set spec.compute.workers to 0" in failed["message"]
    finally:
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            crd["metadata"].pop(key, None)
        crd.pop("status", None)
        kube.kubectl("create", "-f", "-", input_text=json.dumps(crd))


@pytest.mark.parametrize(
    ("base", "path", "value", "field"),
    POD_LOCAL_STORAGE,
    ids=[f"{b['kind']}:{p}={v!r}"[:60] for b, p, v, _ in POD_LOCAL_STORAGE],
)
def test_pod_local_storage_fails_under_the_kubernetes_launcher(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    base: dict[str, Any],
    path: str,
    value: Any,
    field: str,
) -> None:
    obj = change(base, path, value)
    kube.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(obj))
    kind = "tj" if base["kind"] == "TrainingJob" else "msvc"
    found = eventually(
        lambda: (
            (o := get(kube, kind, "bad", namespace)).get("status", {}).get("phase") == "Failed"
            and o
        ),
        what="Failed",
    )
    failed = condition(found, "Failed")
    assert failed["reason"] == "InvalidSpec", failed
    assert failed["message"].startswith(field), failed["message"]
    assert "pvc://<claim>/<path>" in failed["message"] and "s3://" in failed["message"]
    assert kube.kubectl_json("get", "jobs,deployments", "-n", namespace)["items"] == []
