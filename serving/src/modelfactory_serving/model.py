"""The model runtime: a verified estimator plus everything about it that can be worked out once.

Input to `predict` is either a float64 matrix [rows, features] (models that take plain arrays) or
a list of per-feature 1-D columns (models that need a DataFrame: named or categorical columns).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from modelfactory_api.oip import datatype_of_kind
from modelfactory_artifacts.metadata import ArtifactMetadata, FeatureInfo
from modelfactory_artifacts.predict import Batch, Prediction, Predictor
from modelfactory_artifacts.profile import CategoricalProfile, NumericProfile
from modelfactory_artifacts.read import LoadedModel

log = logging.getLogger("modelfactory_serving.model")

ValueKind = Literal["float", "int", "str", "bool"]

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"


@dataclass(frozen=True)
class Feature:
    name: str
    index: int
    kind: Literal["numeric", "categorical", "boolean"]
    dtype: str
    value_kind: ValueKind  # what a column of this feature holds when handed to the model
    v2_datatype: str  # the datatype advertised in model metadata


def _value_kind(info: FeatureInfo) -> ValueKind:
    dt = info.dtype.lower()
    if info.kind == "numeric":
        return "float"
    if info.kind == "boolean":
        return "bool"
    if dt.startswith(("int", "uint")):
        return "int"
    if dt.startswith("float"):
        return "float"
    if dt.startswith("bool"):
        return "bool"
    return "str"


def _v2_datatype(info: FeatureInfo) -> str:
    if info.kind == "numeric":
        return "FP64"
    if info.kind == "boolean":
        return "BOOL"
    return "BYTES"


def _find_categories(est: Any, feature: str) -> list[Any] | None:
    """Categories a fitted encoder inside `est` knows for `feature`, if it can be found."""
    transformers = getattr(est, "transformers_", None)
    if transformers is not None:
        for _, trans, cols in transformers:
            if isinstance(cols, (list, tuple)) and feature in cols:
                found = _find_categories_at(trans, list(cols).index(feature))
                if found is not None:
                    return found
    for _, step in getattr(est, "steps", []) or []:
        found = _find_categories(step, feature)
        if found is not None:
            return found
    names = getattr(est, "feature_names_in_", None)
    if getattr(est, "categories_", None) is not None and names is not None:
        listed = [str(n) for n in names]
        if feature in listed:
            return list(est.categories_[listed.index(feature)])
    return None


def _find_categories_at(trans: Any, index: int) -> list[Any] | None:
    cats = getattr(trans, "categories_", None)
    if cats is not None and index < len(cats):
        return list(cats[index])
    for _, step in getattr(trans, "steps", []) or []:
        found = _find_categories_at(step, index)
        if found is not None:
            return found
    return None


def _typical_number(column: Any) -> float | None:
    """The training data's median bin edge (or mean) of a numeric feature."""
    if not isinstance(column, NumericProfile):
        return None
    if column.edges:
        return float(column.edges[len(column.edges) // 2])
    return column.mean


def _typical_category(column: Any, value_kind: str) -> Any | None:
    """The training data's most frequent category, as the type the column had."""
    if not isinstance(column, CategoricalProfile) or not column.categories:
        return None
    label = column.categories[0]
    try:
        if value_kind == "int":
            return int(float(label))
        if value_kind == "float":
            return float(label)
    except ValueError:
        return None
    return label


class ModelRuntime:
    """A loaded, verified model and the facts the data plane needs, all computed at load."""

    def __init__(
        self,
        loaded: LoadedModel,
        name: str,
        version: str | None = None,
        *,
        onnx_threads: int = 1,
    ) -> None:
        self.loaded = loaded
        self.estimator = loaded.estimator
        self.metadata: ArtifactMetadata = loaded.metadata
        self.name = name
        self.version = version or str(loaded.metadata.version)
        self.task = loaded.metadata.task
        self.features: tuple[Feature, ...] = tuple(
            Feature(
                name=f.name,
                index=i,
                kind=f.kind,
                dtype=f.dtype,
                value_kind=_value_kind(f),
                v2_datatype=_v2_datatype(f),
            )
            for i, f in enumerate(loaded.metadata.features)
        )
        self.n_features = len(self.features)
        self.feature_names: tuple[str, ...] = tuple(f.name for f in self.features)
        self.feature_index = {f.name: f.index for f in self.features}
        # The compiled model runs every prediction when the artifact loader handed one over;
        # what the model accepts is still decided by scikit-learn (see _accepts).
        self.predictor = Predictor(loaded, onnx_threads=onnx_threads)
        self.frame_mode = self.predictor.frame_mode
        fitted_names = getattr(self.estimator, "feature_names_in_", None)
        if fitted_names is not None:
            listed = [str(n) for n in fitted_names]
            if sorted(listed) != sorted(self.feature_names):
                log.warning(
                    "model was fitted on columns %s but metadata lists %s",
                    listed,
                    list(self.feature_names),
                )
        self.classes = self.predictor.classes
        self.is_classifier = self.predictor.is_classifier
        self.has_proba = self.predictor.has_proba
        self.outputs: tuple[str, ...] = (PREDICT, PREDICT_PROBA) if self.has_proba else (PREDICT,)
        # Fixed by the warm-up: what the model accepts and how long a full batch takes.
        self.allow_nan = False
        self.allow_missing_category = False
        self.predict_datatype = "FP64" if self.task == "regression" else "INT64"
        self.batch_predict_seconds: float | None = None
        self._warm_row: list[Any] = []
        self.onnx = self.predictor.onnx
        self.runtime_name = self.predictor.runtime

    # ------------------------------------------------------------------ building inputs
    def empty_column(self, feature: Feature, values: Sequence[Any]) -> np.ndarray:
        if feature.value_kind == "float":
            return np.asarray(values, dtype=np.float64)
        if feature.value_kind == "int":
            return np.asarray(values, dtype=np.int64)
        if feature.value_kind == "bool":
            return np.asarray(values, dtype=bool)
        return np.asarray(values, dtype=object)

    def rows_to_batch(self, rows: Sequence[Sequence[Any]]) -> Batch:
        """Python rows (already checked) -> the model's input form; used by the warm-up."""
        if not self.frame_mode:
            return np.asarray(rows, dtype=np.float64).reshape(len(rows), self.n_features)
        return [self.empty_column(f, [row[f.index] for row in rows]) for f in self.features]

    def concat(self, parts: Sequence[Batch]) -> Batch:
        if len(parts) == 1:
            return parts[0]
        if not self.frame_mode:
            return np.concatenate(parts)  # type: ignore[arg-type]
        return [np.concatenate([p[j] for p in parts]) for j in range(self.n_features)]

    # ------------------------------------------------------------------ predicting
    def predict(self, batch: Batch, want_proba: bool) -> Prediction:
        return self.predictor.predict(batch, want_proba)

    # ------------------------------------------------------------------ warm-up
    def warm_up(self, max_batch_size: int) -> None:
        """Pick a valid row, find out what the model accepts, time a full batch.

        Raises when the model cannot predict a plausible row: such a model is never served.
        """
        row = self._warm_up_row()
        first = self.predict(self.rows_to_batch([row]), want_proba=self.has_proba)
        if first.labels.shape[0] != 1:
            raise ValueError(f"predict() returned {first.labels.shape[0]} results for 1 row")
        self.predict_datatype = datatype_of_kind(first.labels.dtype.kind)
        if (
            self.has_proba
            and first.proba is not None
            and self.classes is not None
            and (first.proba.shape != (1, len(self.classes)))
        ):
            raise ValueError(
                f"predict_proba() returned shape {first.proba.shape}, expected "
                f"(1, {len(self.classes)})"
            )
        self._warm_row = row
        self.allow_nan = (
            self._accepts(
                [math.nan if f.kind == "numeric" else row[f.index] for f in self.features]
            )
            if any(f.kind == "numeric" for f in self.features)
            else False
        )
        self.allow_missing_category = (
            self._accepts(
                [math.nan if f.kind == "categorical" else row[f.index] for f in self.features]
            )
            if any(f.kind == "categorical" for f in self.features)
            else False
        )
        full = self.rows_to_batch([row] * max_batch_size)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            self.predict(full, want_proba=False)
            timings.append(time.perf_counter() - started)
        self.batch_predict_seconds = min(timings)

    def sample_row(self) -> list[Any]:
        """A row this model predicts on (found by the warm-up), as JSON-friendly values."""
        return [v.item() if isinstance(v, np.generic) else v for v in self._warm_row]

    def _accepts(self, row: list[Any]) -> bool:
        """Whether scikit-learn predicts on this row: the compiled model answers whatever it is
        given (NaN into a linear model is NaN out), so the estimator decides what is valid."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.predictor.predict_sklearn(self.rows_to_batch([row]), want_proba=False)
        except Exception:
            return False
        return True

    def _warm_up_row(self) -> list[Any]:
        row: list[Any] = []
        profile = self.metadata.profile
        for f in self.features:
            column = profile.features.get(f.name) if profile is not None else None
            if f.value_kind == "bool":
                row.append(False)
            elif f.kind == "categorical":
                value = _typical_category(column, f.value_kind)
                if value is None:
                    cats = _find_categories(self.estimator, f.name)
                    value = next((c for c in cats or [] if c == c and c is not None), None)
                if value is None:
                    value = 0 if f.value_kind in ("int", "float") else ""
                if f.value_kind == "str":
                    value = str(value)
                row.append(value)
            else:
                number = _typical_number(column)
                row.append(0.0 if number is None else number)
        return row

    # ------------------------------------------------------------------ metadata
    def describe(self) -> dict[str, Any]:
        outputs: list[dict[str, Any]] = [
            {"name": PREDICT, "datatype": self.predict_datatype, "shape": [-1]}
        ]
        if self.has_proba and self.classes is not None:
            outputs.append(
                {"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(self.classes)]}
            )
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "onnx" if self.runtime_name == "onnx" else "sklearn",
            "inputs": [
                {"name": f.name, "datatype": f.v2_datatype, "shape": [-1]} for f in self.features
            ],
            "outputs": outputs,
            "parameters": {
                "task": self.task,
                "estimator": self.metadata.estimator,
                "classes": None if self.classes is None else self.classes.tolist(),
                "digest": self.loaded.digest,
                "artifact_version": self.metadata.version,
                "feature_count": self.n_features,
                "accepts_nan": self.allow_nan,
                "runtime": self.runtime_name,
                "onnx": None if self.metadata.onnx is None else self.metadata.onnx.status,
            },
        }
