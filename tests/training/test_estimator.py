from __future__ import annotations

import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge

from modelfactory_training.errors import SpecError
from modelfactory_training.estimator import (
    resolve_estimator,
    supports_n_jobs,
    validate_model_params,
)

pytestmark = pytest.mark.unit


def test_resolves_classifiers_and_regressors() -> None:
    assert resolve_estimator("sklearn.ensemble.RandomForestClassifier") is RandomForestClassifier
    assert resolve_estimator("sklearn.linear_model.Ridge") is Ridge


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("os.system", "not inside the sklearn package"),
        ("sklearnx.thing.Model", "not inside the sklearn package"),
        ("sklearn.nothere.Model", "module 'sklearn.nothere' not found"),
        ("sklearn.ensemble.NoSuchForest", "has no attribute 'NoSuchForest'"),
        ("sklearn.ensemble.np", "has no attribute"),
        ("sklearn.base.clone", "not a scikit-learn estimator class"),
        ("sklearn.preprocessing.StandardScaler", "has no fit and predict"),
        ("sklearn.cluster.KMeans", "neither a classifier nor a regressor"),
        ("sklearn.pipeline.Pipeline", "cannot be built without arguments"),
    ],
)
def test_rejects_anything_but_a_sklearn_predictor(path: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as err:
        resolve_estimator(path)
    assert err.value.reason == "InvalidEstimator"
    assert err.value.exit_code == 2


def test_unknown_fixed_param_is_named() -> None:
    with pytest.raises(SpecError, match=r"model.params: 'n_estimator' is not a parameter") as err:
        validate_model_params(RandomForestClassifier, {"n_estimator": 10}, {})
    assert err.value.reason == "InvalidParams"
    assert "n_estimators" in err.value.message


def test_unknown_searched_param_is_named() -> None:
    with pytest.raises(SpecError, match=r"tuning.searchSpace: 'depth' is not a parameter"):
        validate_model_params(RandomForestClassifier, {}, {"depth": [1, 2]})


def test_bad_values_are_rejected_before_fitting() -> None:
    with pytest.raises(SpecError, match=r"model.params: The 'n_estimators' parameter"):
        validate_model_params(RandomForestClassifier, {"n_estimators": "many"}, {})
    with pytest.raises(SpecError, match=r"tuning.searchSpace.max_depth: The 'max_depth'"):
        validate_model_params(RandomForestClassifier, {}, {"max_depth": [3, -1]})


def test_fixed_and_searched_at_once_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"'C' is both fixed and in tuning.searchSpace"):
        validate_model_params(LogisticRegression, {"C": 1.0}, {"C": [0.1, 1.0]})


def test_valid_params_pass() -> None:
    validate_model_params(
        RandomForestClassifier,
        {"random_state": 0, "criterion": "entropy"},
        {"n_estimators": [10, 200], "max_features": ["sqrt", 0.5, None]},
    )


def test_n_jobs_support_skips_deprecated_no_ops() -> None:
    assert supports_n_jobs(RandomForestClassifier)
    assert not supports_n_jobs(Ridge)
