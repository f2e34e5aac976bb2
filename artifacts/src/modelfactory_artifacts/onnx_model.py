"""The compiled form of a model: model.onnx beside model.skops.

Written by the trainer (modelfactory_training.onnx_export), read by every runtime that calls the
model (server, batch). This module is the one home of what both sides must agree on: the graph's
inputs (one per feature, or one matrix), how a batch of feature columns becomes those inputs
(numbers as float64 for the preprocessing, float32 for a bare model's matrix, categories as
text, a sentinel for missing ones), how the outputs read back,
and when two answers count as the same.

An ONNX graph holds no code: a runtime that serves it needs neither skops' allow-list nor the
estimator's Python classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

ONNX_FILENAME = "model.onnx"
# A missing category reaches the graph as this text (ONNX string tensors have no NaN); the
# graph's imputer replaces it as scikit-learn's replaces NaN. NUL keeps it out of real data.
MISSING_CATEGORY = "\x00missing"
# float32 inside the graph: probabilities and regression values agree to this, relative to
# max(1, |scikit-learn's value|).
TOLERANCE = 1e-4
_FLOAT32_MAX = float(np.finfo(np.float32).max)

Layout = Literal["columns", "matrix"]
InputKind = Literal["double", "float", "string"]


class OnnxInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: InputKind


class OnnxInfo(BaseModel):
    """What the trainer compiled and how it checked it; covered by the version's digest."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["verified", "unavailable"]
    reason: str | None = Field(
        None, description="Why there is no verified ONNX model (conversion or check failed)."
    )
    file: str | None = Field(None, description="The ONNX file in the version directory.")
    sha256: str | None = Field(None, pattern=r"^[a-f0-9]{64}$")
    layout: Layout | None = Field(
        None,
        description="columns: one input per feature, in feature order; matrix: one float input "
        "[rows, features].",
    )
    inputs: list[OnnxInput] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    opset: int | None = None
    rowsChecked: int | None = Field(None, description="Held-out rows both runtimes predicted.")
    labelsDiffering: int | None = Field(None, description="Rows whose labels differed.")
    maxDifference: float | None = Field(
        None,
        description="Largest difference of probabilities (classifiers) or values (regressors), "
        "relative to max(1, |scikit-learn's|).",
    )
    tolerance: float = TOLERANCE
    libraries: dict[str, str] = Field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return self.status == "verified" and self.file is not None and self.sha256 is not None


def open_session(data: bytes, threads: int) -> Any:
    """An ONNX Runtime session on the CPU with `threads` threads for one run (size it to the
    pod's CPUs, not the node's) and none for running independent nodes in parallel. Its threads
    sleep between runs instead of spinning: a server's event loop needs the CPU they would
    burn waiting for the next small batch."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings are about graph optimisation
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------- inputs
def category_text(values: Any) -> np.ndarray:
    """A categorical column as the graph's text: str() of each value, missing ones (None, NaN,
    pandas NA) as MISSING_CATEGORY. Shape [rows, 1], dtype object."""
    column = np.asarray(values, dtype=object).reshape(-1)
    # str() per object, never astype(str): that makes a fixed-width array as wide as the
    # longest value times the rows, so one long string would cost memory for every row.
    text = _as_text(column)
    text[pd.isna(column)] = MISSING_CATEGORY
    return text.reshape(-1, 1)


_as_text = np.frompyfunc(str, 1, 1)


def float_column(values: Any) -> np.ndarray:
    """A numeric column as float32 [rows, 1]; magnitudes past float32's range are clipped so
    they stay the largest finite values instead of becoming inf inside the graph."""
    column = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    return np.clip(column, -_FLOAT32_MAX, _FLOAT32_MAX).astype(np.float32)


def feeds(info: OnnxInfo, columns: Sequence[Any] | np.ndarray, rows: int) -> dict[str, np.ndarray]:
    """The graph's inputs for one batch, given as a float matrix [rows, features] or as one 1-D
    column per feature in feature order."""
    cols: Sequence[Any] = (
        [columns[:, i] for i in range(columns.shape[1])]
        if isinstance(columns, np.ndarray) and columns.ndim == 2
        else list(columns)
    )
    if info.layout == "matrix":
        matrix = np.column_stack([np.asarray(c, dtype=np.float64) for c in cols])
        matrix = matrix.reshape(rows, len(cols))
        name = info.inputs[0].name
        return {name: np.clip(matrix, -_FLOAT32_MAX, _FLOAT32_MAX).astype(np.float32)}
    if len(cols) != len(info.inputs):
        raise ValueError(f"the graph takes {len(info.inputs)} inputs, got {len(cols)} columns")
    return {spec.name: _column(spec.kind, col) for spec, col in zip(info.inputs, cols, strict=True)}


def _column(kind: InputKind, values: Any) -> np.ndarray:
    if kind == "double":
        return np.asarray(values, dtype=np.float64).reshape(-1, 1)
    if kind == "float":
        return float_column(values)
    return category_text(values)


# ---------------------------------------------------------------------- outputs
def read_outputs(
    values: Sequence[Any], classes: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels or values, probabilities or None) from a run's outputs, in the converter's order
    (label or value first, then probabilities), typed as scikit-learn's: labels take the
    classes' dtype, values and probabilities float64."""
    first = np.asarray(values[0]).reshape(-1)
    if classes is None:
        return first.astype(np.float64), None
    labels = first if first.dtype == classes.dtype else first.astype(classes.dtype)
    proba = np.asarray(values[1], dtype=np.float64) if len(values) > 1 else None
    return labels, proba


# ---------------------------------------------------------------------- agreement
def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| / max(1, |b|); 0 for empty arrays, inf if the shapes differ."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    diff = np.abs(a - b) / np.maximum(1.0, np.abs(b))
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, diff)
    return float(np.nan_to_num(diff, nan=np.inf).max())


def clear_labels(proba: np.ndarray, tolerance: float = TOLERANCE) -> np.ndarray:
    """Rows whose top two probabilities are further apart than twice the tolerance: there the
    two runtimes must name the same class; closer ties may fall either way in float32."""
    if proba.ndim != 2 or proba.shape[1] < 2:
        return np.ones(proba.shape[0], dtype=bool)
    top2 = np.sort(proba, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) > 2 * tolerance
