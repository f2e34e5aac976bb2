"""How a verified model answers, the same for the model server and for batch scoring.

A batch is a float matrix [rows, features] or one 1-D column per feature, in feature order. What
the model is handed is decided once, from the estimator and the feature schema: a model fitted
on named columns (or with categorical features) gets a DataFrame, a bare model the float matrix.
The compiled model (ONNX), when one was verified and asked for, runs every prediction; labels
take the classes' type, probabilities and regression values are float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from modelfactory_artifacts.metadata import FeatureInfo
from modelfactory_artifacts.onnx_model import feeds, open_session, read_outputs
from modelfactory_artifacts.read import LoadedModel

Batch = np.ndarray | list[np.ndarray]

# Final estimators whose predict() is exactly classes_[argmax(predict_proba())], so a batch that
# needs probabilities gets labels without a second pass.
ARGMAX_ESTIMATORS = frozenset(
    {
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "LogisticRegression",
        "HistGradientBoostingClassifier",
        "GradientBoostingClassifier",
    }
)


@dataclass(frozen=True)
class Prediction:
    labels: np.ndarray
    proba: np.ndarray | None


def final_estimator(estimator: Any) -> Any:
    """The last step of a (nested) pipeline; the estimator itself otherwise."""
    steps = getattr(estimator, "steps", None)
    if steps:
        return final_estimator(steps[-1][1])
    return estimator


def takes_frame(estimator: Any, features: Sequence[FeatureInfo]) -> bool:
    """Whether the model is handed a DataFrame: a pipeline fitted on a DataFrame checks column
    names (or selects columns by name), and categories are not numbers; a model fitted on a
    plain array of numbers and booleans gets the float matrix."""
    fitted_names = getattr(estimator, "feature_names_in_", None)
    numbers_only = all(f.kind in ("numeric", "boolean") for f in features)
    return fitted_names is not None or not numbers_only


def model_classes(loaded: LoadedModel) -> np.ndarray | None:
    """The estimator's classes, else the ones the metadata lists; None for a regressor."""
    classes = getattr(loaded.estimator, "classes_", None)
    if classes is None and loaded.metadata.target.classes is not None:
        classes = loaded.metadata.target.classes
    return None if classes is None else np.asarray(classes)


def batch_rows(batch: Batch) -> int:
    if isinstance(batch, np.ndarray):
        return int(batch.shape[0])
    return len(batch[0]) if batch else 0


def _as_float(column: np.ndarray) -> np.ndarray:
    if column.dtype.kind in "fiub":
        return column.astype(np.float64, copy=False)
    return np.asarray(pd.to_numeric(column, errors="coerce"), dtype=np.float64)


class Predictor:
    """A loaded model's answers: labels (or values) and, for classifiers, probabilities."""

    def __init__(self, loaded: LoadedModel, *, use_onnx: bool = True, onnx_threads: int = 1):
        self.estimator = loaded.estimator
        self.metadata = loaded.metadata
        self.feature_names: list[str] = [f.name for f in loaded.metadata.features]
        self.classes = model_classes(loaded)
        self.is_classifier = loaded.metadata.task != "regression" and self.classes is not None
        self.has_proba = self.is_classifier and callable(
            getattr(self.estimator, "predict_proba", None)
        )
        self.labels_from_proba = (
            self.has_proba and type(final_estimator(self.estimator)).__name__ in ARGMAX_ESTIMATORS
        )
        self.frame_mode = takes_frame(self.estimator, loaded.metadata.features)
        self.onnx = loaded.metadata.onnx if use_onnx and loaded.onnx is not None else None
        self._session = (
            open_session(loaded.onnx, onnx_threads)
            if self.onnx is not None and loaded.onnx is not None
            else None
        )
        self.runtime: Literal["onnx", "sklearn"] = "onnx" if self._session else "sklearn"

    def model_input(self, batch: Batch) -> Any:
        """What scikit-learn is handed: a DataFrame in frame mode, else the float matrix."""
        if isinstance(batch, np.ndarray) and batch.ndim == 2:
            if not self.frame_mode:
                return batch
            batch = [batch[:, i] for i in range(batch.shape[1])]
        if self.frame_mode:
            return pd.DataFrame(dict(zip(self.feature_names, batch, strict=True)), copy=False)
        if not batch:
            return np.empty((0, 0))
        return np.column_stack([_as_float(np.asarray(c)) for c in batch])

    def predict(self, batch: Batch, want_proba: bool) -> Prediction:
        """Labels (or values), and probabilities when asked for and the model has them."""
        if self._session is None or self.onnx is None:
            return self.predict_sklearn(batch, want_proba)
        outputs = self._session.run(None, feeds(self.onnx, batch, batch_rows(batch)))
        labels, proba = read_outputs(outputs, self.classes if self.is_classifier else None)
        return Prediction(labels, proba if want_proba and self.has_proba else None)

    def predict_sklearn(self, batch: Batch, want_proba: bool) -> Prediction:
        X = self.model_input(batch)
        if not (want_proba and self.has_proba):
            return Prediction(np.asarray(self.estimator.predict(X)), None)
        # A pipeline's preprocessing runs once for both answers: what Pipeline.predict and
        # predict_proba each do, shared (the same numbers, half the work).
        final, X = preprocessed(self.estimator, X)
        proba = np.asarray(final.predict_proba(X), dtype=np.float64)
        if self.labels_from_proba and self.classes is not None:
            labels = self.classes[proba.argmax(axis=1)]
        else:
            labels = np.asarray(final.predict(X))
        return Prediction(labels, proba)


def preprocessed(estimator: Any, X: Any) -> tuple[Any, Any]:
    """(final estimator, X through every step before it) for a Pipeline; (estimator, X) else."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        return estimator.steps[-1][1], estimator[:-1].transform(X)
    return estimator, X
