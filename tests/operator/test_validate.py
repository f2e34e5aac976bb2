import pytest

from modelfactory_operator.logic import validate

pytestmark = pytest.mark.unit

GOOD = {
    "dataset": {"uri": "sklearn://iris"},
    "model": {"estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"n_jobs": 1}},
    "tuning": {"searchSpace": {"n_estimators": {"values": [10, 50]}}},
    "output": {"storageUri": "s3://models/iris"},
}


def with_(path: str, value: object) -> dict:
    spec = {k: dict(v) for k, v in GOOD.items()}
    head, _, leaf = path.partition(".")
    spec[head][leaf] = value
    return spec


def test_good_spec_passes() -> None:
    assert validate.trainingjob_spec(GOOD).model.estimator.endswith("RandomForestClassifier")


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("model.estimator", "sklearn.ensemble.NoSuchForest", "spec.model.estimator"),
        ("model.estimator", "os.system", "spec.model.estimator"),
        ("model.params", {"n_trees": 3}, "spec.model.params"),
        ("tuning.searchSpace", {"depth": {"values": [1]}}, "spec.tuning.searchSpace"),
        ("tuning.cvFolds", 1, "spec.tuning.cvFolds"),
        ("dataset.testSize", 1.5, "spec.dataset.testSize"),
        ("output.storageUri", "ftp://x", "spec.output.storageUri"),
        ("tuning.searchSpace", {"max_depth": {"low": 5, "high": 1}}, "spec.tuning.searchSpace"),
        ("tuning.direction", "minimize", "spec.tuning.direction"),
        ("tuning.timeBudgetSeconds", 0, "spec.tuning.timeBudgetSeconds"),
        ("model.maxCategories", 1, "spec.model.maxCategories"),
    ],
)
def test_bad_specs_name_the_field(path: str, value: object, field: str) -> None:
    with pytest.raises(validate.SpecError) as err:
        validate.trainingjob_spec(with_(path, value))
    assert field in str(err.value)


def test_grid_search_needs_values() -> None:
    spec = {
        **GOOD,
        "tuning": {"algorithm": "grid", "searchSpace": {"max_depth": {"low": 1, "high": 5}}},
    }
    with pytest.raises(validate.SpecError, match="grid search needs values"):
        validate.trainingjob_spec(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"model": {}}, "exactly one of trainingJob and uri"),
        ({"model": {"uri": "s3://b/m/1"}}, "digest is required"),
        ({"model": {"trainingJob": "t"}, "replicas": {"min": 3, "max": 2}}, "min must not exceed"),
        ({"model": {"trainingJob": "t"}, "replicas": {"min": -1}}, "spec.replicas.min"),
    ],
)
def test_bad_modelservice_specs(spec: dict, message: str) -> None:
    with pytest.raises(validate.SpecError, match=message):
        validate.modelservice_spec(spec)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("output.storageUri", "file:///tmp/models/iris", "spec.output.storageUri"),
        ("output.storageUri", "/models/iris", "spec.output.storageUri"),
        ("dataset.uri", "file:///data/train.csv", "spec.dataset.uri"),
        ("dataset.uri", "/data/train.csv", "spec.dataset.uri"),
    ],
)
def test_pod_local_storage_is_refused_in_a_cluster(path: str, value: str, field: str) -> None:
    spec = with_(path, value)
    spec["dataset"].setdefault("target", "y")
    with pytest.raises(validate.SpecError) as err:
        validate.trainingjob_spec(spec, launcher="kubernetes")
    message = str(err.value)
    assert message.startswith(field) and "lost when the pod ends" in message
    assert "pvc://<claim>/<path>" in message and "s3:// / gs://" in message
    # The local launcher runs the workload on this machine: a local path is fine there.
    assert validate.trainingjob_spec(spec, launcher="local")


@pytest.mark.parametrize("uri", ["pvc://models/iris", "s3://b/iris", "gs://b/iris"])
def test_shared_storage_is_accepted_in_a_cluster(uri: str) -> None:
    assert validate.trainingjob_spec(with_("output.storageUri", uri), launcher="kubernetes")


def test_modelservice_uri_on_the_pods_filesystem_is_refused_in_a_cluster() -> None:
    spec = {"model": {"uri": "file:///models/iris/1", "digest": "sha256:" + "a" * 64}}
    with pytest.raises(validate.SpecError, match=r"^spec\.model\.uri: .*pvc://"):
        validate.modelservice_spec(spec, launcher="kubernetes")
    assert validate.modelservice_spec(spec, launcher="local").model.uri == "file:///models/iris/1"
    # A model that follows a TrainingJob is where the TrainingJob put it.
    assert validate.modelservice_spec({"model": {"trainingJob": "iris"}}, launcher="kubernetes")


@pytest.mark.parametrize(
    ("pod", "field", "message"),
    [
        ({"env": [{"name": "MF_MODEL_URI", "value": "x"}]}, "spec.pod.env.0.name", "reserved"),
        (
            {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
            "spec.pod.env",
            "unique",
        ),
        (
            {
                "env": [
                    {
                        "name": "A",
                        "value": "1",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                    }
                ]
            },
            "spec.pod.env.0",
            "not both",
        ),
        ({"env": [{"name": "A", "valueFrom": {}}]}, "spec.pod.env.0.valueFrom", "exactly one"),
        ({"env": [{"name": "bad-name", "value": "1"}]}, "spec.pod.env.0.name", "pattern"),
        ({"env": [{"name": f"V{i}", "value": "x"} for i in range(65)]}, "spec.pod.env", "64"),
        (
            {"envFrom": [{"prefix": "MF_", "configMapRef": {"name": "c"}}]},
            "spec.pod.envFrom.0",
            "reserved",
        ),
        (
            {"envFrom": [{"configMapRef": {"name": "c"}, "secretRef": {"name": "s"}}]},
            "spec.pod.envFrom.0",
            "one of",
        ),
        ({"imagePullSecrets": ["Not_A_Name"]}, "spec.pod.imagePullSecrets.0", "pattern"),
        ({"imagePullSecrets": [f"s{i}" for i in range(17)]}, "spec.pod.imagePullSecrets", "16"),
        ({"nodeSelector": {"bad key!": "x"}}, "spec.pod.nodeSelector", "not label keys"),
        ({"nodeSelector": {"zone": "bad value!"}}, "spec.pod.nodeSelector.zone", "pattern"),
        ({"nodeSelector": {f"k{i}": "v" for i in range(33)}}, "spec.pod.nodeSelector", "32"),
        (
            {"tolerations": [{"operator": "Equal", "value": "x"}]},
            "spec.pod.tolerations.0",
            "without key",
        ),
        (
            {"tolerations": [{"key": "k", "operator": "Exists", "value": "x"}]},
            "spec.pod.tolerations.0",
            "takes no value",
        ),
        (
            {"tolerations": [{"key": "k", "tolerationSeconds": 5}]},
            "spec.pod.tolerations.0",
            "NoExecute",
        ),
        ({"serviceAccountName": "Trainer"}, "spec.pod.serviceAccountName", "pattern"),
        ({"hostNetwork": True}, "spec.pod.hostNetwork", "Extra inputs"),
    ],
)
def test_bad_pod_settings_name_the_field(pod: dict, field: str, message: str) -> None:
    for check, spec in (
        (validate.trainingjob_spec, {**GOOD, "pod": pod}),
        (validate.modelservice_spec, {"model": {"trainingJob": "t"}, "pod": pod}),
    ):
        with pytest.raises(validate.SpecError) as err:
            check(spec)
        assert field in str(err.value) and message in str(err.value), str(err.value)


def test_good_pod_settings_pass() -> None:
    pod = {
        "serviceAccountName": "trainer",
        "imagePullSecrets": ["registry-credentials"],
        "nodeSelector": {"cloud.google.com/gke-nodepool": "ml", "kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
            {"operator": "Exists"},
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 30,
            },
        ],
        "env": [
            {"name": "AWS_REGION", "value": "eu-west-1"},
            {
                "name": "AWS_SECRET_ACCESS_KEY",
                "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret-key"}},
            },
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "envFrom": [
            {"configMapRef": {"name": "settings"}},
            {"secretRef": {"name": "tokens", "optional": True}, "prefix": "TOKEN_"},
        ],
    }
    assert validate.trainingjob_spec({**GOOD, "pod": pod}).pod.env[0].name == "AWS_REGION"
    assert validate.modelservice_spec({"model": {"trainingJob": "t"}, "pod": pod}).pod


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"memory": "1Gi", "memoryLimit": "512Mi"}, "memoryLimit 512Mi is below"),
        ({"cpu": "2", "cpuLimit": "500m"}, "cpuLimit 500m is below"),
    ],
)
def test_limits_below_requests_are_refused(resources: dict, message: str) -> None:
    with pytest.raises(validate.SpecError, match=f"spec.resources: .*{message}"):
        validate.modelservice_spec({"model": {"trainingJob": "t"}, "resources": resources})


def test_minimize_is_refused_with_the_reason() -> None:
    with pytest.raises(validate.SpecError) as err:
        validate.trainingjob_spec(with_("tuning.direction", "minimize"))
    assert "spec.tuning.direction" in str(err.value) and "greater-is-better" in str(err.value)
    assert validate.trainingjob_spec(with_("tuning.direction", "maximize"))


def test_time_budget_must_leave_time_before_the_deadline() -> None:
    spec = {**with_("tuning.timeBudgetSeconds", 600), "activeDeadlineSeconds": 600}
    with pytest.raises(validate.SpecError, match="timeBudgetSeconds must be less than"):
        validate.trainingjob_spec(spec)
    assert validate.trainingjob_spec({**spec, "activeDeadlineSeconds": 900})
