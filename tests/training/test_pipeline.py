from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import BaggingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modelfactory_artifacts.metadata import untrusted_types
from modelfactory_training.artifact import serialize
from modelfactory_training.errors import SpecError
from modelfactory_training.metrics import held_out_metrics, resolve_metric
from modelfactory_training.pipeline import (
    MODEL_STEP,
    PREPROCESS_STEP,
    build_pipeline,
    encoded_width,
)

pytestmark = pytest.mark.unit


def test_preprocessing_handles_missing_values_and_unseen_categories() -> None:
    X = pd.DataFrame({"n": [1.0, np.nan, 3.0, 4.0] * 5, "c": ["a", "b", None, "a"] * 5})
    y = np.array([0, 1, 0, 1] * 5)
    pipeline = build_pipeline(
        LogisticRegression, {"C": 2.0}, preprocessing=True, numeric=["n"], categorical=["c"]
    )
    assert isinstance(pipeline.named_steps[PREPROCESS_STEP], ColumnTransformer)
    assert pipeline.named_steps[MODEL_STEP].C == 2.0
    pipeline.fit(X, y)
    assert pipeline.predict(pd.DataFrame({"n": [np.nan], "c": ["unseen"]})).shape == (1,)


def test_without_preprocessing_only_the_estimator() -> None:
    pipeline = build_pipeline(
        DecisionTreeClassifier, {}, preprocessing=False, numeric=["n"], categorical=[]
    )
    assert list(pipeline.named_steps) == [MODEL_STEP]


def test_metric_defaults_and_validation() -> None:
    assert resolve_metric(None, True) == "accuracy"
    assert resolve_metric(None, False) == "r2"
    assert resolve_metric("neg_mean_squared_error", False) == "neg_mean_squared_error"
    with pytest.raises(SpecError) as err:
        resolve_metric("rmse", False)
    assert err.value.reason == "InvalidMetric"


def test_held_out_metrics_per_task() -> None:
    X = pd.DataFrame({"n": np.arange(20.0)})
    y = (np.arange(20) >= 10).astype(int)
    model = build_pipeline(
        LogisticRegression, {}, preprocessing=True, numeric=["n"], categorical=[]
    ).fit(X, y)
    scores = held_out_metrics(model, X, y, "binary", "roc_auc")
    assert set(scores) == {"test_accuracy", "test_f1_macro", "test_roc_auc"}
    assert scores["test_accuracy"] == 1.0


def test_every_unset_random_state_is_seeded() -> None:
    pipeline = build_pipeline(
        RandomForestClassifier,
        {"n_estimators": 5},
        preprocessing=True,
        numeric=["n"],
        categorical=["c"],
        seed=7,
    )
    assert pipeline.named_steps[MODEL_STEP].random_state == 7
    # Nested estimators too: a bagging ensemble and the tree it is given.
    bagging = build_pipeline(
        BaggingClassifier,
        {"estimator": DecisionTreeClassifier()},
        preprocessing=False,
        numeric=["n"],
        categorical=[],
        seed=3,
    )
    params = bagging.get_params(deep=True)
    assert params["model__random_state"] == 3
    assert params["model__estimator__random_state"] == 3


@pytest.mark.parametrize("chosen", [11, None])
def test_a_random_state_the_user_set_is_kept(chosen: int | None) -> None:
    pipeline = build_pipeline(
        RandomForestClassifier,
        {"random_state": chosen},
        preprocessing=False,
        numeric=["n"],
        categorical=[],
        seed=7,
    )
    assert pipeline.named_steps[MODEL_STEP].random_state == chosen


def test_without_a_seed_nothing_is_seeded() -> None:
    pipeline = build_pipeline(
        RandomForestClassifier, {}, preprocessing=False, numeric=["n"], categorical=[]
    )
    assert pipeline.named_steps[MODEL_STEP].random_state is None


def test_one_hot_columns_are_bounded_and_rare_categories_share_one() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "n": rng.normal(size=2000),
            "wide": [f"level-{i}" for i in rng.integers(0, 1000, size=2000)],
            "narrow": rng.choice(["a", "b", "c"], size=2000),
        }
    )
    y = (X["n"] > 0).astype(int).to_numpy()
    pipeline = build_pipeline(
        LogisticRegression,
        {},
        preprocessing=True,
        numeric=["n"],
        categorical=["wide", "narrow"],
        max_categories=8,
    ).fit(X, y)
    encoded = pipeline.named_steps[PREPROCESS_STEP].transform(X)
    assert encoded.shape == (2000, 1 + 8 + 3)
    assert encoded_width(X, ["n"], ["wide", "narrow"], preprocessing=True, max_categories=8) == 12
    assert encoded_width(X, ["n"], ["wide", "narrow"], preprocessing=False) == 3
    # Unseen and rare categories land in the shared column, not an error or all zeros.
    unseen = pd.DataFrame({"n": [0.0], "wide": ["never-seen"], "narrow": ["a"]})
    assert pipeline.named_steps[PREPROCESS_STEP].transform(unseen)[0, 1:9].sum() == 1.0
    # The bounded encoder stays inside the types the artifact may contain.
    _, types = serialize(pipeline)
    assert types and untrusted_types(types) == []


def test_error_scorers_are_negated_so_the_search_maximizes_them() -> None:
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import get_scorer

    from modelfactory_api.trainingjob import TuningSpec

    X = pd.DataFrame({"n": np.arange(20.0)})
    y = 3.0 * np.arange(20.0) + 1.0
    perfect, baseline = LinearRegression().fit(X, y), DummyRegressor().fit(X, y)
    for name in ("neg_mean_squared_error", "neg_mean_absolute_error", "r2"):
        scorer = get_scorer(name)
        assert scorer(perfect, X, y) > scorer(baseline, X, y)
    # So a spec asking to minimize one would pick the worst model: it is refused.
    with pytest.raises(ValueError, match="greater-is-better"):
        TuningSpec.model_validate({"metric": "neg_mean_squared_error", "direction": "minimize"})
