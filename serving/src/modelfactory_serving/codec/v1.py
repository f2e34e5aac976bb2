"""KServe v1: {"instances": rows} with rows as lists in feature order or objects keyed by
feature name, {"inputs": rows} the same, {"inputs": {feature: [values]}} columnar -> Decoded;
labels -> {"predictions": [...]}."""

from __future__ import annotations

from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from modelfactory_serving.codec.features import columns_to_batch, matrix_to_batch, to_column
from modelfactory_serving.codec.request import Decoded, check_rows
from modelfactory_serving.codec.tensors import (
    DEFAULT_LIMITS,
    FLOAT_OK,
    SCALAR_TYPES,
    Limits,
    check_strings,
    element_types,
    object_array,
)
from modelfactory_serving.errors import BadRequest
from modelfactory_serving.model import Batch, Feature, ModelRuntime


def decode_v1(
    rt: ModelRuntime, obj: Any, max_rows: int, limits: Limits = DEFAULT_LIMITS
) -> Decoded:
    """KServe v1: {"instances": rows} with rows as lists in feature order or objects keyed by
    feature name; {"inputs": rows} the same; {"inputs": {feature: [values]}} columnar."""
    if not isinstance(obj, dict):
        raise BadRequest("request body must be a JSON object with 'instances' or 'inputs'")
    instances = obj.get("instances")
    if instances is None and "inputs" in obj:
        instances = obj["inputs"]
        if isinstance(instances, dict):
            return _v1_columnar(rt, instances, max_rows, limits)
    if not isinstance(instances, list):
        raise BadRequest(
            "'instances' must be a list of rows (or 'inputs' a list of rows or an object of "
            "columns)"
        )
    rows = len(instances)
    check_rows(rows, max_rows)
    if isinstance(instances[0], dict):
        return Decoded(_v1_dict_rows(rt, instances, limits), rows)
    n = rt.n_features
    if not all(type(row) is list and len(row) == n for row in instances):
        for i, row in enumerate(instances):
            if not isinstance(row, list):
                raise BadRequest(f"instance {i} must be a list of {n} values or an object")
            if len(row) != n:
                raise BadRequest(
                    f"instance {i} has {len(row)} values, model '{rt.name}' takes {n} "
                    f"({', '.join(rt.feature_names)})"
                )
    flat = list(chain.from_iterable(instances))
    types = element_types(flat)
    if types <= FLOAT_OK:
        values = np.array(flat, dtype=np.float64)
    else:
        _check_scalars("instances", flat, types, n, rt)
        check_strings("instances", flat, types, limits)
        values = object_array(flat)
    return Decoded(matrix_to_batch(rt, values, rows, "instances"), rows)


def _check_scalars(
    where: str, flat: list[Any], types: frozenset[type], width: int, rt: ModelRuntime
) -> None:
    if types <= SCALAR_TYPES:
        return
    i = next(i for i, v in enumerate(flat) if type(v) not in SCALAR_TYPES)
    raise BadRequest(
        f"{where}: feature '{rt.feature_names[i % width]}' row {i // width} is "
        f"{type(flat[i]).__name__}, expected a scalar"
    )


def _column(
    rt: ModelRuntime, feature: Feature, values: list[Any], where: str, limits: Limits
) -> np.ndarray:
    """One feature's JSON values -> its model column."""
    types = element_types(values)
    if types <= FLOAT_OK and feature.kind == "numeric":
        arr = np.array(values, dtype=np.float64)
    elif types <= {bool} and feature.kind == "boolean":
        arr = np.array(values, dtype=bool)
    else:
        if not types <= SCALAR_TYPES:
            i = next(i for i, v in enumerate(values) if type(v) not in SCALAR_TYPES)
            raise BadRequest(
                f"{where}: feature '{feature.name}' row {i} is {type(values[i]).__name__}, "
                "expected a scalar"
            )
        check_strings(where, values, types, limits)
        arr = object_array(values)
    return to_column(feature, arr, rt, where)


def _v1_dict_rows(rt: ModelRuntime, instances: list[Any], limits: Limits) -> Batch:
    names = set(rt.feature_names)
    if not all(type(row) is dict and row.keys() == names for row in instances):
        for i, row in enumerate(instances):
            if not isinstance(row, dict):
                raise BadRequest(f"instance {i} must be an object like instance 0")
            if row.keys() != names:
                unknown = sorted(k for k in row if k not in names)
                missing = [n for n in rt.feature_names if n not in row]
                raise BadRequest(
                    f"instance {i}: "
                    + (f"unknown feature(s) {unknown}" if unknown else "")
                    + ("; " if unknown and missing else "")
                    + (f"missing feature(s) {missing}" if missing else "")
                )
    columns = [
        _column(rt, f, list(map(itemgetter(f.name), instances)), "instances", limits)
        for f in rt.features
    ]
    return columns_to_batch(rt, columns)


def _v1_columnar(
    rt: ModelRuntime, inputs: dict[str, Any], max_rows: int, limits: Limits
) -> Decoded:
    names = set(rt.feature_names)
    if inputs.keys() != names:
        unknown = sorted(k for k in inputs if k not in names)
        missing = [n for n in rt.feature_names if n not in inputs]
        raise BadRequest(
            "inputs: "
            + (f"unknown feature(s) {unknown}" if unknown else "")
            + ("; " if unknown and missing else "")
            + (f"missing feature(s) {missing}" if missing else "")
        )
    rows = -1
    for f in rt.features:
        values = inputs[f.name]
        if not isinstance(values, list):
            raise BadRequest(f"inputs: feature '{f.name}' must be a list of values, one per row")
        if rows == -1:
            rows = len(values)
        elif len(values) != rows:
            raise BadRequest(
                f"inputs: feature '{f.name}' has {len(values)} values, other features have {rows}"
            )
    check_rows(rows, max_rows)
    columns = [_column(rt, f, inputs[f.name], "inputs", limits) for f in rt.features]
    return Decoded(columns_to_batch(rt, columns), rows)


def encode_v1(rt: ModelRuntime, labels: np.ndarray) -> bytes:
    if labels.dtype.kind in "biuf":
        return orjson.dumps({"predictions": labels}, option=orjson.OPT_SERIALIZE_NUMPY)
    return orjson.dumps({"predictions": labels.tolist()})
