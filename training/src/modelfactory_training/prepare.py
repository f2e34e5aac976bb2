"""Checking a loaded frame against the spec and splitting it: pure, no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from pandas.api import types as ptypes
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import type_of_target

from modelfactory_api.trainingjob import DatasetSpec
from modelfactory_artifacts.metadata import FeatureInfo, TaskType
from modelfactory_training.data import SKLEARN_SCHEME, TOY_TARGET
from modelfactory_training.errors import SpecError

_MAX_LISTED = 40


@dataclass(frozen=True)
class Prepared:
    """The training data, split, with what the artifact records about it."""

    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    features: list[FeatureInfo]
    target: str
    task: TaskType

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind != "numeric"]


def frame_bytes(frame: pd.DataFrame) -> int:
    """In-memory size of a frame, strings included."""
    return int(frame.memory_usage(index=True, deep=True).sum())


def _listing(names: list[str]) -> str:
    shown = ", ".join(str(n) for n in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return f"{shown}, ... ({more} more)" if more > 0 else shown


def feature_kind(dtype: object) -> str:
    """numeric, boolean or categorical, as the preprocessing and drift statistics treat it."""
    if ptypes.is_bool_dtype(dtype):
        return "boolean"
    if ptypes.is_numeric_dtype(dtype):
        return "numeric"
    return "categorical"


def resolve_target(spec: DatasetSpec) -> str:
    if spec.target:
        return spec.target
    if spec.uri.startswith(SKLEARN_SCHEME):
        return TOY_TARGET
    raise SpecError("TargetNotSet", f"dataset: target is required for {spec.uri}")


def select_columns(frame: pd.DataFrame, spec: DatasetSpec, target: str) -> list[str]:
    """The feature columns, after checking that the target and every named feature exist."""
    columns = [str(c) for c in frame.columns]
    if target not in columns:
        raise SpecError(
            "TargetNotFound",
            f"dataset: column {target!r} (target) not found; columns are: {_listing(columns)}",
        )
    if spec.features is None:
        features = [c for c in columns if c != target]
    else:
        missing = [f for f in spec.features if f not in columns]
        if missing:
            raise SpecError(
                "UnknownFeatures",
                f"dataset: feature column(s) not found: {_listing(missing)}; "
                f"columns are: {_listing(columns)}",
            )
        if target in spec.features:
            raise SpecError(
                "InvalidFeatures", f"dataset: features include the target column {target!r}"
            )
        duplicates = sorted({f for f in spec.features if spec.features.count(f) > 1})
        if duplicates:
            raise SpecError(
                "InvalidFeatures", f"dataset: features listed twice: {_listing(duplicates)}"
            )
        features = list(spec.features)
    if not features:
        raise SpecError("NoFeatures", "dataset: no feature columns besides the target")
    return features


def check_target(y: pd.Series, target: str, is_classifier: bool) -> TaskType:
    """The task the target and estimator make; rejects targets the estimator cannot learn."""
    if is_classifier:
        if type_of_target(y) == "continuous":
            raise SpecError(
                "InvalidTarget",
                f"dataset: target {target!r} is continuous but the estimator is a classifier; "
                "use a regressor or a column of class labels",
            )
        n_classes = y.nunique()
        if n_classes < 2:
            only = y.iloc[0]
            only = only.item() if hasattr(only, "item") else only
            raise SpecError(
                "SingleClass",
                f"dataset: target {target!r} has a single class ({only!r}); "
                "a classifier needs at least two",
            )
        return "binary" if n_classes == 2 else "multiclass"
    if not ptypes.is_numeric_dtype(y.dtype) or ptypes.is_bool_dtype(y.dtype):
        raise SpecError(
            "InvalidTarget",
            f"dataset: target {target!r} has dtype {y.dtype} but the estimator is a regressor; "
            "it needs a numeric target",
        )
    return "regression"


def prepare(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    *,
    is_classifier: bool,
    preprocessing: bool,
    cv_folds: int,
) -> Prepared:
    """Validate the frame against the spec and split it into training and held-out parts."""
    # No copy of the data is made here until the split: renaming and selecting columns are
    # lazy (copy-on-write), and unlabelled rows are dropped only when there are any.
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.rename(columns=str)
    target = resolve_target(spec)
    features = select_columns(frame, spec, target)
    if len(frame) == 0:
        raise SpecError("EmptyData", f"dataset: {spec.uri} has no rows")
    unlabelled = frame[target].isna()
    if unlabelled.all():
        raise SpecError(
            "EmptyData", f"dataset: all {len(frame)} rows have no value in target {target!r}"
        )
    X = frame[features]
    y = frame[target]
    if unlabelled.any():
        X, y = X[~unlabelled], y[~unlabelled]
    del frame
    infos = [FeatureInfo(name=c, dtype=str(X[c].dtype), kind=feature_kind(X[c].dtype)) for c in X]
    if not preprocessing:
        non_numeric = [f"{i.name} ({i.dtype})" for i in infos if i.kind == "categorical"]
        if non_numeric:
            raise SpecError(
                "NonNumericFeatures",
                f"dataset: non-numeric feature column(s) with model.preprocessing off: "
                f"{_listing(non_numeric)}; turn preprocessing on or encode them",
            )
    task = check_target(y, target, is_classifier)
    n_test = math.ceil(len(y) * spec.testSize)
    n_train = len(y) - n_test
    if n_train < cv_folds or n_test < 1:
        raise SpecError(
            "TooFewRows",
            f"dataset: {len(y)} labelled rows are too few for a {spec.testSize:g} held-out "
            f"fraction and {cv_folds}-fold cross-validation",
        )
    stratify = None
    if task != "regression":
        counts = y.value_counts()
        if counts.min() >= 2 and n_test >= len(counts) and n_train >= len(counts):
            stratify = y
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=n_test, random_state=spec.seed, stratify=stratify
    )
    if task != "regression" and y_train.value_counts().max() < cv_folds:
        raise SpecError(
            "TooFewRows",
            f"dataset: no class of target {target!r} has {cv_folds} rows in the training split; "
            "lower tuning.cvFolds or add data",
        )
    return Prepared(
        X_train=X_train,
        X_test=X_test,
        y_train=y_train,
        y_test=y_test,
        features=infos,
        target=target,
        task=task,
    )
