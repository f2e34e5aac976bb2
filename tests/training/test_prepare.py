from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelfactory_api.trainingjob import DatasetSpec
from modelfactory_training.errors import SpecError
from modelfactory_training.prepare import feature_kind, prepare

pytestmark = pytest.mark.unit


def frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.choice(["x", "y"], size=n),
            "c": np.arange(n) % 2,
            "r": rng.normal(size=n),
        }
    )


def run(data: pd.DataFrame, classifier: bool = True, preprocessing: bool = True, **spec: object):
    dataset = DatasetSpec.model_validate({"uri": "/data.csv", **spec})
    return prepare(data, dataset, is_classifier=classifier, preprocessing=preprocessing, cv_folds=3)


def reason_of(data: pd.DataFrame, **kwargs: object) -> tuple[str, str]:
    with pytest.raises(SpecError) as err:
        run(data, **kwargs)  # type: ignore[arg-type]
    assert err.value.exit_code == 2
    return err.value.reason, err.value.message


def test_splits_and_describes_features() -> None:
    prepared = run(frame(), target="c")
    assert [f.name for f in prepared.features] == ["a", "b", "r"]
    assert {f.name: f.kind for f in prepared.features} == {
        "a": "numeric",
        "b": "categorical",
        "r": "numeric",
    }
    assert prepared.task == "binary"
    assert (len(prepared.y_train), len(prepared.y_test)) == (32, 8)
    # Stratified: both classes in the held-out part.
    assert set(prepared.y_test) == {0, 1}
    assert prepared.numeric == ["a", "r"] and prepared.categorical == ["b"]


def test_feature_subset_and_regression() -> None:
    prepared = run(frame(), classifier=False, target="r", features=["a"])
    assert [f.name for f in prepared.features] == ["a"]
    assert prepared.task == "regression"


def test_target_not_found_lists_columns() -> None:
    assert reason_of(frame(), target="label") == (
        "TargetNotFound",
        "dataset: column 'label' (target) not found; columns are: a, b, c, r",
    )


def test_target_is_required_outside_bundled_datasets() -> None:
    assert reason_of(frame())[0] == "TargetNotSet"


def test_unknown_features_are_named() -> None:
    reason, message = reason_of(frame(), target="c", features=["a", "nope", "zz"])
    assert reason == "UnknownFeatures"
    assert message.startswith("dataset: feature column(s) not found: nope, zz; columns are:")


def test_target_among_features_is_rejected() -> None:
    assert reason_of(frame(), target="c", features=["a", "c"])[0] == "InvalidFeatures"


def test_empty_data() -> None:
    assert reason_of(frame().iloc[:0], target="c") == (
        "EmptyData",
        "dataset: /data.csv has no rows",
    )
    unlabelled = frame().assign(c=np.nan)
    assert reason_of(unlabelled, target="c")[0] == "EmptyData"


def test_rows_without_target_are_dropped() -> None:
    data = frame()
    data.loc[:9, "c"] = np.nan
    prepared = run(data, target="c")
    assert len(prepared.y_train) + len(prepared.y_test) == 30


def test_single_class() -> None:
    reason, message = reason_of(frame().assign(c=1), target="c")
    assert reason == "SingleClass"
    assert "target 'c' has a single class (1)" in message


def test_non_numeric_features_without_preprocessing() -> None:
    reason, message = reason_of(frame(), target="c", preprocessing=False)
    assert reason == "NonNumericFeatures"
    assert "b (str)" in message or "b (object)" in message


def test_continuous_target_for_a_classifier() -> None:
    assert reason_of(frame(), target="r")[0] == "InvalidTarget"


def test_text_target_for_a_regressor() -> None:
    reason, message = reason_of(frame(), classifier=False, target="b")
    assert reason == "InvalidTarget" and "needs a numeric target" in message


def test_too_few_rows() -> None:
    assert reason_of(frame(4), target="c")[0] == "TooFewRows"


@pytest.mark.parametrize(
    ("dtype", "kind"),
    [("float64", "numeric"), ("int8", "numeric"), ("bool", "boolean"), ("object", "categorical")],
)
def test_feature_kind(dtype: str, kind: str) -> None:
    assert feature_kind(np.dtype(dtype)) == kind
    assert feature_kind(pd.CategoricalDtype(["a"])) == "categorical"
