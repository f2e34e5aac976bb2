"""The scikit-learn Pipeline a trial fits: optional preprocessing, then the estimator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

MODEL_STEP = "model"
PREPROCESS_STEP = "preprocess"


def build_preprocessor(numeric: Sequence[str], categorical: Sequence[str]) -> ColumnTransformer:
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                list(numeric),
            )
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        (
                            "onehot",
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                        ),
                    ]
                ),
                list(categorical),
            )
        )
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


def build_pipeline(
    estimator_cls: type[BaseEstimator],
    params: Mapping[str, Any],
    *,
    preprocessing: bool,
    numeric: Sequence[str],
    categorical: Sequence[str],
) -> Pipeline:
    estimator = estimator_cls().set_params(**params)
    steps: list[tuple[str, Any]] = []
    if preprocessing:
        steps.append((PREPROCESS_STEP, build_preprocessor(numeric, categorical)))
    steps.append((MODEL_STEP, estimator))
    return Pipeline(steps)
