"""Compiling the fitted pipeline to ONNX (skl2onnx) and proving it answers as scikit-learn does.

A pipeline that cannot be converted, or whose graph disagrees with it on the held-out split,
keeps its skops model only: the reason is recorded, the run does not fail.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from modelfactory_artifacts.metadata import FeatureInfo, sha256_hex
from modelfactory_artifacts.onnx_model import (
    MISSING_CATEGORY,
    ONNX_FILENAME,
    TOLERANCE,
    OnnxInfo,
    OnnxInput,
    feeds,
    open_session,
    read_outputs,
    relative_difference,
)
from modelfactory_training.pipeline import PREPROCESS_STEP

log = logging.getLogger(__name__)

OPSET = 18
ML_OPSET = 3
MATRIX_INPUT = "X"
# The check runs both runtimes on at most this many held-out rows.
MAX_CHECK_ROWS = 20_000


class NotConvertible(Exception):
    """The pipeline has no faithful ONNX form; the message says why."""


@dataclass(frozen=True)
class Compiled:
    info: OnnxInfo
    data: bytes | None  # model.onnx's bytes when info.status is verified


class _TextOneHot(OneHotEncoder):
    """A fitted OneHotEncoder whose categories are text, converted by _convert_text_one_hot:
    skl2onnx's own converter neither sends unseen values to the infrequent column nor takes
    non-text categories from a single input."""


def _frequent(encoder: OneHotEncoder, index: int) -> tuple[list[str], bool]:
    """The categories that get a column of their own, in output order, and whether the
    feature has an infrequent column after them."""
    cats = [str(c) for c in encoder.categories_[index]]
    infrequent = getattr(encoder, "infrequent_categories_", None)
    rare = infrequent[index] if infrequent is not None else None
    if rare is None or len(rare) == 0:
        return cats, False
    rare_text = {str(c) for c in rare}
    return [c for c in cats if c not in rare_text], True


def _text_one_hot_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    encoder = operator.raw_operator
    width = 0
    for i in range(len(encoder.categories_)):
        cats, has_rare = _frequent(encoder, i)
        width += len(cats) + int(has_rare)
    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([rows, width])


def _convert_text_one_hot(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto

    encoder = operator.raw_operator
    source = operator.inputs[0].full_name
    columns = operator.inputs[0].type.shape[1]
    parts: list[str] = []
    width = 0
    constants: dict[str, str] = {}

    def constant(name: str, kind: int, dims: list[int], value: list[Any]) -> str:
        if name not in constants:
            constants[name] = scope.get_unique_variable_name(name)
            container.add_initializer(constants[name], kind, dims, value)
        return constants[name]

    for i in range(len(encoder.categories_)):
        cats, has_rare = _frequent(encoder, i)
        column = source
        if columns != 1:
            index = scope.get_unique_variable_name("column_index")
            container.add_initializer(index, TensorProto.INT64, [1], [i])
            column = scope.get_unique_variable_name("column")
            container.add_node("Gather", [source, index], column, axis=1,
                               name=scope.get_unique_operator_name("Gather"))
        hot = scope.get_unique_variable_name("one_hot")  # [rows, 1, len(cats)]
        container.add_node("OneHotEncoder", column, hot, op_domain="ai.onnx.ml",
                           cats_strings=[c.encode() for c in cats], zeros=1,
                           name=scope.get_unique_operator_name("OneHotEncoder"))
        flat = scope.get_unique_variable_name("one_hot_flat")
        shape = scope.get_unique_variable_name("shape")
        container.add_initializer(shape, TensorProto.INT64, [2], [-1, len(cats)])
        container.add_node("Reshape", [hot, shape], flat,
                           name=scope.get_unique_operator_name("Reshape"))
        parts.append(flat)
        width += len(cats)
        if has_rare:
            # Any value without a column of its own (infrequent or never seen) is "infrequent".
            total = scope.get_unique_variable_name("hot_sum")
            last_axis = constant("last_axis", TensorProto.INT64, [1], [-1])
            container.add_node("ReduceSum", [flat, last_axis], total, keepdims=1,
                               name=scope.get_unique_operator_name("ReduceSum"))
            rare = scope.get_unique_variable_name("infrequent")
            one = constant("one", TensorProto.FLOAT, [], [1.0])
            container.add_node("Sub", [one, total], rare,
                               name=scope.get_unique_operator_name("Sub"))
            parts.append(rare)
            width += 1
    output = operator.outputs[0].full_name
    if len(parts) == 1:
        container.add_node("Identity", parts[0], output,
                           name=scope.get_unique_operator_name("Identity"))
    else:
        container.add_node("Concat", parts, output, axis=1,
                           name=scope.get_unique_operator_name("Concat"))


_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter

    update_registered_converter(
        _TextOneHot, "ModelFactoryTextOneHot", _text_one_hot_shape, _convert_text_one_hot
    )
    _registered = True


def _text_categories(step: Any) -> None:
    """In the copy to convert: categorical imputers and encoders work on text, missing values
    arrive as MISSING_CATEGORY (see modelfactory_artifacts.onnx_model.category_text)."""
    if isinstance(step, Pipeline):
        for _, sub in step.steps:
            _text_categories(sub)
    elif isinstance(step, SimpleImputer):
        if step.statistics_.dtype == object or step.statistics_.dtype.kind in "OUSb":
            step.missing_values = MISSING_CATEGORY
            step.statistics_ = np.array([str(v) for v in step.statistics_], dtype=object)
    elif isinstance(step, OneHotEncoder):
        if step.drop is not None:
            raise NotConvertible("OneHotEncoder with drop set")
        step.categories_ = [np.array([str(c) for c in cats], dtype=object)
                            for cats in step.categories_]
        step.__class__ = _TextOneHot


def convertible_copy(model: Any) -> Any:
    """A copy of the fitted model in the form the converter takes; the original is kept."""
    clone = copy.deepcopy(model)
    pre = clone.named_steps.get(PREPROCESS_STEP) if isinstance(clone, Pipeline) else None
    if isinstance(pre, ColumnTransformer):
        for name, transformer, _ in pre.transformers_:
            if name == "categorical":
                _text_categories(transformer)
    return clone


def final_estimator(model: Any) -> Any:
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def graph_inputs(model: Any, features: list[FeatureInfo]) -> tuple[str, list[OnnxInput]]:
    """One input per feature when a ColumnTransformer picks columns by name, else one matrix."""
    steps = model.named_steps if isinstance(model, Pipeline) else {}
    if isinstance(steps.get(PREPROCESS_STEP), ColumnTransformer):
        return "columns", [
            OnnxInput(name=f.name, kind="float" if f.kind == "numeric" else "string")
            for f in features
        ]
    if any(f.kind != "numeric" for f in features):
        raise NotConvertible("non-numeric features without preprocessing")
    return "matrix", [OnnxInput(name=MATRIX_INPUT, kind="float")]


def convert(pipeline: Any, features: list[FeatureInfo]) -> tuple[bytes, OnnxInfo]:
    """The fitted pipeline (or bare estimator) as ONNX bytes and what a runtime needs to feed
    it; raises NotConvertible."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    _register()
    layout, inputs = graph_inputs(pipeline, features)
    if layout == "matrix":
        initial = [(MATRIX_INPUT, FloatTensorType([None, len(features)]))]
    else:
        initial = [
            (i.name, (FloatTensorType if i.kind == "float" else StringTensorType)([None, 1]))
            for i in inputs
        ]
    clone = convertible_copy(pipeline)
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
        libraries=_versions(),
    )
    return data, info


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else repr(e))[:300]


def _versions() -> dict[str, str]:
    found = {}
    for dist in ("skl2onnx", "onnx", "onnxruntime"):
        try:
            found[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


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
    return info.model_copy(update={"status": "unavailable", "reason": reason, "file": None,
                                   "sha256": None})


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
        return Compiled(OnnxInfo(status="unavailable", reason=f"cannot convert: {e}",
                                 libraries=_versions()), None)
    try:
        checked = verify(data, info, pipeline, X_check.iloc[:MAX_CHECK_ROWS], features, classifier)
    except Exception as e:  # the runtime refusing the graph is the same verdict
        log.warning("onnx check failed", exc_info=True)
        checked = _unavailable(info, f"onnxruntime could not run it: {_first_line(e)}")
    return Compiled(checked, data if checked.verified else None)
