"""One feature's values -> the column the model gets: numbers, booleans and categories coerced
to what the model was fitted on, missing and non-finite values checked against what it accepts;
and a request's columns -> the model batch (a float matrix, or one column per feature)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from modelfactory_serving.codec.tensors import NONE_TYPE, element_types, object_array
from modelfactory_serving.errors import BadRequest
from modelfactory_serving.model import Batch, Feature, ModelRuntime


def to_column(feature: Feature, values: np.ndarray, rt: ModelRuntime, where: str) -> np.ndarray:
    """A flat array of one feature's values -> the column the model gets; checks missing and
    non-finite values against what the model accepts."""
    vk = feature.value_kind
    if feature.kind == "categorical":
        return _categorical_column(feature, values, rt, where)
    if vk == "bool":
        if values.dtype.kind == "b":
            return values if rt.frame_mode else values.astype(np.float64)
        if values.dtype.kind in "iuf":
            col = values.astype(np.float64)
            if not np.isin(col, (0.0, 1.0)).all():
                raise BadRequest(
                    f"{where}: feature '{feature.name}' is boolean, values must be true/false "
                    "or 0/1"
                )
            return col.astype(bool) if rt.frame_mode else col
        raise BadRequest(f"{where}: feature '{feature.name}' is boolean, got non-boolean values")
    # numeric
    if values.dtype.kind in "fiub":
        col = values.astype(np.float64, copy=False)
    else:
        col = strings_to_float(feature, values, where)
    check_finite(feature, col, rt, where)
    return col


def strings_to_float(feature: Feature, values: np.ndarray, where: str) -> np.ndarray:
    """Scalars of any JSON type (numbers, numeric strings, booleans, nulls) -> float64."""
    col = pd.to_numeric(values, errors="coerce")
    bad = np.isnan(col) & ~pd.isna(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise BadRequest(
            f"{where}: feature '{feature.name}' is numeric, row {row} holds {_short(values[row])}"
        )
    return np.asarray(col, dtype=np.float64)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_finite(feature: Feature, col: np.ndarray, rt: ModelRuntime, where: str) -> None:
    if col.size == 0 or np.isfinite(col).all():
        return
    if np.isinf(col).any():
        row = int(np.flatnonzero(np.isinf(col))[0])
        raise BadRequest(f"{where}: feature '{feature.name}' is infinite at row {row}")
    if not rt.allow_nan:
        row = int(np.flatnonzero(np.isnan(col))[0])
        raise BadRequest(
            f"{where}: feature '{feature.name}' is missing (NaN/null) at row {row}, and this "
            "model does not accept missing values"
        )


def _categorical_column(
    feature: Feature, values: np.ndarray, rt: ModelRuntime, where: str
) -> np.ndarray:
    vk = feature.value_kind
    obj = values if values.dtype == object else object_array(values.tolist())
    missing = np.asarray(pd.isna(obj), dtype=bool)
    if missing.any() and not rt.allow_missing_category:
        row = int(np.flatnonzero(missing)[0])
        raise BadRequest(
            f"{where}: feature '{feature.name}' is missing at row {row}, and this model "
            "does not accept missing categories"
        )
    if vk == "str":
        if element_types(obj.tolist()) <= {str, NONE_TYPE}:
            out = obj.copy()
        else:  # numbers sent for a string category: their text
            out = pd.Series(obj, dtype=object).map(str, na_action="ignore").to_numpy(object)
        out[missing] = math.nan
        return out if rt.frame_mode else strings_to_float(feature, out, where)
    numbers = pd.to_numeric(obj, errors="coerce")
    numbers = np.asarray(numbers, dtype=np.float64)
    bad = np.isnan(numbers) & ~missing
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise BadRequest(
            f"{where}: feature '{feature.name}' holds numeric categories, row {row} is "
            f"{_short(obj[row])}"
        )
    if np.isinf(numbers).any():
        row = int(np.flatnonzero(np.isinf(numbers))[0])
        raise BadRequest(f"{where}: feature '{feature.name}' is not finite at row {row}")
    if not rt.frame_mode:
        return numbers
    if vk == "int" and not missing.any() and (numbers == np.round(numbers)).all():
        return numbers.astype(np.int64)
    return numbers


def matrix_to_batch(rt: ModelRuntime, flat: np.ndarray, rows: int, where: str) -> Batch:
    """[rows*features] flat values in row-major order -> model batch."""
    n_features = rt.n_features
    if not rt.frame_mode:
        if flat.dtype.kind in "fiub":
            X = flat.astype(np.float64, copy=False).reshape(rows, n_features)
        else:
            X = (
                np.column_stack(
                    [strings_to_float(f, flat[f.index :: n_features], where) for f in rt.features]
                )
                if rows
                else np.empty((0, n_features))
            )
        if not np.isfinite(X).all():
            for f in rt.features:
                check_finite(f, X[:, f.index], rt, where)
        return X
    grid = flat.reshape(rows, n_features)
    return [to_column(f, grid[:, f.index], rt, where) for f in rt.features]


def columns_to_batch(rt: ModelRuntime, columns: list[np.ndarray]) -> Batch:
    if rt.frame_mode:
        return columns
    return np.column_stack(columns)
