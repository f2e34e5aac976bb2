from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modelfactory_training.errors import SpecError
from modelfactory_training.metrics import held_out_metrics, resolve_metric
from modelfactory_training.pipeline import MODEL_STEP, PREPROCESS_STEP, build_pipeline

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
