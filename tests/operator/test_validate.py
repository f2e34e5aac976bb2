import pytest

from modelfactory_operator.logic import validate

pytestmark = pytest.mark.unit

GOOD = {
    "dataset": {"uri": "sklearn://iris"},
    "model": {"estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"n_jobs": 1}},
    "tuning": {"searchSpace": {"n_estimators": {"values": [10, 50]}}},
    "output": {"storageUri": "file:///tmp/models/iris"},
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
    ],
)
def test_bad_specs_name_the_field(path: str, value: object, field: str) -> None:
    with pytest.raises(validate.SpecError) as err:
        validate.trainingjob_spec(with_(path, value))
    assert field in str(err.value)


def test_grid_search_needs_values() -> None:
    spec = {**GOOD, "tuning": {"algorithm": "grid",
                           "searchSpace": {"max_depth": {"low": 1, "high": 5}}}}
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
