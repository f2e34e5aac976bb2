"""The scikit-learn Pipeline a trial fits: optional preprocessing, then the estimator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

MODEL_STEP = "model"
PREPROCESS_STEP = "preprocess"
RANDOM_STATE = "random_state"
# One-hot columns per categorical feature unless the spec says otherwise: the most frequent
# categories get a column each and the rest share one, so a column with 10,000 levels does not
# become 10,000 dense float64 columns.
MAX_CATEGORIES = 20


def build_preprocessor(
    numeric: Sequence[str], categorical: Sequence[str], max_categories: int = MAX_CATEGORIES
) -> ColumnTransformer:
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median")),
                        # The imputer's output is a fresh array: scale it in place.
                        ("scale", StandardScaler(copy=False)),
                    ]
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
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist",
                                max_categories=max_categories,
                                sparse_output=False,
                            ),
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
    seed: int | None = None,
    max_categories: int = MAX_CATEGORIES,
) -> Pipeline:
    """The pipeline of one configuration; with `seed`, every unset random_state in it is seeded
    so the refit is the model that was scored and the same spec trains the same model."""
    estimator = estimator_cls().set_params(**params)
    steps: list[tuple[str, Any]] = []
    if preprocessing:
        steps.append((PREPROCESS_STEP, build_preprocessor(numeric, categorical, max_categories)))
    steps.append((MODEL_STEP, estimator))
    pipeline = Pipeline(steps)
    if seed is not None:
        seed_random_states(pipeline, seed, user_set=params)
    return pipeline


def seed_random_states(pipeline: Pipeline, seed: int, user_set: Mapping[str, Any]) -> None:
    """Set every random_state of the pipeline (nested ones too) that is unset to `seed`.

    `user_set` are the estimator's parameters the spec fixes or searches: a random_state named
    there, even as null, is the user's choice and stays.
    """
    chosen = {f"{MODEL_STEP}__{name}" for name in user_set}
    unset = {
        name: seed
        for name, value in pipeline.get_params(deep=True).items()
        if (name == RANDOM_STATE or name.endswith(f"__{RANDOM_STATE}"))
        and value is None
        and name not in chosen
    }
    pipeline.set_params(**unset)


def encoded_width(
    X: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    *,
    preprocessing: bool,
    max_categories: int = MAX_CATEGORIES,
) -> int:
    """Columns of the matrix the estimator gets: numeric ones plus the bounded one-hot ones."""
    if not preprocessing:
        return X.shape[1]
    levels = X[list(categorical)].nunique(dropna=True) if categorical else pd.Series([])
    return len(numeric) + int(levels.clip(upper=max_categories).sum())
