"""Compiling the fitted pipeline to ONNX (skl2onnx) and proving it answers as scikit-learn does.

A pipeline that cannot be converted, or whose graph disagrees with it on the held-out split,
keeps its skops model only: the reason is recorded, the run does not fail.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from modelfactory_artifacts.metadata import FeatureInfo, sha256_hex
from modelfactory_artifacts.onnx_model import (
    ONNX_FILENAME,
    TOLERANCE,
    OnnxInfo,
    OnnxInput,
    feeds,
    open_session,
    read_outputs,
    relative_difference,
)
from modelfactory_training import onnx_preprocess
from modelfactory_training.artifact import installed_versions
from modelfactory_training.onnx_preprocess import NotConvertible
from modelfactory_training.pipeline import PREPROCESS_STEP

log = logging.getLogger(__name__)

OPSET = 18
ML_OPSET = 3
MATRIX_INPUT = "X"
ONNX_LIBRARIES = ("skl2onnx", "onnx", "onnxruntime")
# The check runs both runtimes on at most this many held-out rows.
MAX_CHECK_ROWS = 20_000


@dataclass(frozen=True)
class Compiled:
    info: OnnxInfo
    data: bytes | None  # model.onnx's bytes when info.status is verified


_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter

    update_registered_converter(
        onnx_preprocess.Preprocess,
        onnx_preprocess.ALIAS,
        onnx_preprocess.shape,
        onnx_preprocess.convert,
        parser=onnx_preprocess.parse,
    )
    _registered = True


def convertible_copy(model: Any, features: list[FeatureInfo]) -> Any:
    """A copy of the fitted model with its preprocessing as one block the converter takes
    (see onnx_preprocess); the original is kept."""
    clone = copy.deepcopy(model)
    if isinstance(clone, Pipeline):
        for i, (name, step) in enumerate(clone.steps):
            if name == PREPROCESS_STEP and isinstance(step, ColumnTransformer):
                clone.steps[i] = (name, onnx_preprocess.from_column_transformer(step, features))
    return clone


def final_estimator(model: Any) -> Any:
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def graph_inputs(model: Any, features: list[FeatureInfo]) -> tuple[str, list[OnnxInput]]:
    """One input per feature when a ColumnTransformer picks columns by name, else one matrix."""
    steps = model.named_steps if isinstance(model, Pipeline) else {}
    if isinstance(steps.get(PREPROCESS_STEP), ColumnTransformer):
        return "columns", [
            OnnxInput(name=f.name, kind="double" if f.kind == "numeric" else "string")
            for f in features
        ]
    if any(f.kind != "numeric" for f in features):
        raise NotConvertible("non-numeric features without preprocessing")
    return "matrix", [OnnxInput(name=MATRIX_INPUT, kind="float")]


def convert(pipeline: Any, features: list[FeatureInfo]) -> tuple[bytes, OnnxInfo]:
    """The fitted pipeline (or bare estimator) as ONNX bytes and what a runtime needs to feed
    it; raises NotConvertible."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    _register()
    layout, inputs = graph_inputs(pipeline, features)
    if layout == "matrix":
        initial = [(MATRIX_INPUT, FloatTensorType([None, len(features)]))]
    else:
        types = {"double": DoubleTensorType, "float": FloatTensorType, "string": StringTensorType}
        initial = [(i.name, types[i.kind]([None, 1])) for i in inputs]
    clone = convertible_copy(pipeline, features)
    model = final_estimator(clone)
    # Probabilities as one [rows, classes] tensor, not a list of dicts.
    options = {id(model): {"zipmap": False}} if is_classifier(model) else None
    try:
        onx = convert_sklearn(
            clone,
            initial_types=initial,
            options=options,
            target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
        )
    except NotConvertible:
        raise
    except Exception as e:  # skl2onnx raises many kinds for what it does not support
        raise NotConvertible(f"{type(e).__name__}: {_first_line(e)}") from e
    # The converter makes names ONNX-safe ("mean radius" -> "mean_radius"): feed by its names,
    # in feature order.
    names = [i.name for i in onx.graph.input]
    if len(names) != len(inputs):
        raise NotConvertible(f"the graph has {len(names)} inputs for {len(inputs)} given")
    inputs = [i.model_copy(update={"name": n}) for i, n in zip(inputs, names, strict=True)]
    data = onx.SerializeToString()
    info = OnnxInfo(
        status="verified",
        file=ONNX_FILENAME,
        sha256=sha256_hex(data),
        layout=layout,  # type: ignore[arg-type]
        inputs=inputs,
        outputs=[o.name for o in onx.graph.output],
        opset=OPSET,
        libraries=installed_versions(ONNX_LIBRARIES),
    )
    return data, info


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else repr(e))[:300]


def frame_columns(X: pd.DataFrame, features: list[FeatureInfo]) -> list[np.ndarray]:
    return [X[f.name].to_numpy() for f in features]


def verify(
    data: bytes,
    info: OnnxInfo,
    pipeline: Any,
    X: pd.DataFrame,
    features: list[FeatureInfo],
    classifier: bool,
) -> OnnxInfo:
    """Both runtimes on the same rows: labels identical (classifiers), probabilities or values
    within the tolerance. Returns the info with the check's figures, status unavailable if
    they disagree."""
    sess = open_session(data, threads=1)
    outputs = sess.run(None, feeds(info, frame_columns(X, features), len(X)))
    classes = getattr(pipeline, "classes_", None) if classifier else None
    labels, proba = read_outputs(outputs, None if classes is None else np.asarray(classes))
    rows = len(X)
    # A model fitted on a plain array is checked on one.
    X_in: Any = X if hasattr(pipeline, "feature_names_in_") else X.to_numpy()
    if classifier:
        expected = np.asarray(pipeline.predict(X_in))
        differing = int((labels != expected).sum())
        diff = 0.0
        if proba is not None and hasattr(pipeline, "predict_proba"):
            diff = relative_difference(proba, np.asarray(pipeline.predict_proba(X_in)))
        checked = info.model_copy(
            update={"rowsChecked": rows, "labelsDiffering": differing, "maxDifference": diff}
        )
        if differing:
            return _unavailable(checked, f"labels differ on {differing} of {rows} held-out rows")
    else:
        diff = relative_difference(labels, np.asarray(pipeline.predict(X_in), dtype=np.float64))
        checked = info.model_copy(update={"rowsChecked": rows, "maxDifference": diff})
    if not diff <= TOLERANCE:
        return _unavailable(
            checked, f"outputs differ by {diff:.3g} on the held-out rows (tolerance {TOLERANCE:g})"
        )
    return checked


def _unavailable(info: OnnxInfo, reason: str) -> OnnxInfo:
    return info.model_copy(
        update={"status": "unavailable", "reason": reason, "file": None, "sha256": None}
    )


def compile_model(
    pipeline: Any,
    X_check: pd.DataFrame,
    features: list[FeatureInfo],
    classifier: bool,
    convert_fn: Callable[[Any, list[FeatureInfo]], tuple[bytes, OnnxInfo]] = convert,
) -> Compiled:
    """Convert and verify; never raises for a model that cannot be compiled."""
    try:
        data, info = convert_fn(pipeline, features)
    except NotConvertible as e:
        return Compiled(
            OnnxInfo(
                status="unavailable",
                reason=f"cannot convert: {e}",
                libraries=installed_versions(ONNX_LIBRARIES),
            ),
            None,
        )
    try:
        checked = verify(data, info, pipeline, X_check.iloc[:MAX_CHECK_ROWS], features, classifier)
    except Exception as e:  # the runtime refusing the graph is the same verdict
        log.warning("onnx check failed", exc_info=True)
        checked = _unavailable(info, f"onnxruntime could not run it: {_first_line(e)}")
    return Compiled(checked, data if checked.verified else None)
