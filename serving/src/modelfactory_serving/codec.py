"""Request decoding and response encoding for the Open Inference Protocol v2 and KServe v1.

Transport-free: bytes or parsed JSON in, a checked model batch out; results in, JSON (and, for
the v2 binary tensor extension, raw bytes) out. Every problem raises an InferenceError whose
message names the input, feature or field at fault.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pandas as pd

from modelfactory_api.oip import DATATYPES, FLOAT_TYPES, NUMPY_DTYPES
from modelfactory_serving.errors import BadRequest, InferenceError, PayloadTooLarge
from modelfactory_serving.model import PREDICT, PREDICT_PROBA, Batch, Feature, ModelRuntime

NP_DTYPES: dict[str, np.dtype[Any]] = {name: np.dtype(s) for name, s in NUMPY_DTYPES.items()}
_INT_RANGES = {name: (int(np.iinfo(dt).min), int(np.iinfo(dt).max))
               for name, dt in NP_DTYPES.items() if dt.kind in "iu"}


def parse_json(body: bytes | memoryview) -> Any:
    """orjson first; the stdlib only for what orjson refuses but JSON clients send (NaN, Infinity),
    so such values reach validation and get a precise message."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        import json

        try:
            text = bytes(body).decode("utf-8")
            return json.loads(text)
        except (ValueError, RecursionError):
            raise BadRequest(f"malformed JSON: {e}") from None


@dataclass
class Decoded:
    """One request, checked and ready for the batcher."""

    batch: Batch
    rows: int
    outputs: tuple[str, ...] = (PREDICT,)
    binary_outputs: frozenset[str] = field(default_factory=frozenset)
    request_id: str | None = None

    @property
    def want_proba(self) -> bool:
        return PREDICT_PROBA in self.outputs


# ---------------------------------------------------------------------------- tensor data
# Request data is never handed to numpy to guess a dtype from: a list of strings would become a
# fixed-width unicode array sized by its longest string (memory quadratic in the body). The
# element count is checked against `shape`, the Python types of the elements are checked in one
# C-level pass, and arrays are built with an explicit dtype.
_NONE = type(None)
_FLOAT_OK: frozenset[type] = frozenset({int, float, _NONE})
_SCALAR_TYPES: frozenset[type] = frozenset({str, int, float, bool, _NONE})
_TYPE_NAMES = {str: "strings", bool: "booleans", float: "non-integer numbers", int: "integers",
               list: "nested lists", dict: "objects", _NONE: "nulls"}


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may hold, beyond the body size."""

    max_string_chars: int = 8192


DEFAULT_LIMITS = Limits()


def element_types(values: list[Any]) -> frozenset[type]:
    return frozenset(map(type, values))


def _describe(types: frozenset[type], allowed: frozenset[type]) -> str:
    odd = sorted(_TYPE_NAMES.get(t, t.__name__) for t in types - allowed)
    return " and ".join(odd) or "unsupported values"


def flatten(name: str, data: Any, shape: list[int]) -> list[Any]:
    """Tensor data as sent (flat, or nested exactly as `shape`) -> the flat list of its
    prod(shape) elements, in row-major order."""
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': data must be a JSON array")
    count = math.prod(shape)
    if not data or not isinstance(data[0], list):
        if len(data) != count:
            raise BadRequest(
                f"input '{name}': data has {len(data)} elements, shape {shape} needs {count}"
            )
        return data
    items: list[Any] = [data]
    for depth, size in enumerate(shape):
        # One check per list (rows, not values): each must be a list of the dimension's size.
        if not all(type(x) is list and len(x) == size for x in items):
            raise BadRequest(
                f"input '{name}': nested data does not match shape {shape} (dimension {depth} "
                f"must hold lists of {size}); send flat row-major data or nest it as the shape"
            )
        items = list(chain.from_iterable(items))
    return items


def check_strings(where: str, values: list[Any], types: frozenset[type], limits: Limits) -> None:
    if str not in types:
        return
    strings = values if len(types) == 1 else [v for v in values if type(v) is str]
    longest = max(map(len, strings), default=0)
    if longest > limits.max_string_chars:
        raise BadRequest(
            f"{where}: a string of {longest} characters; this server takes at most "
            f"{limits.max_string_chars}"
        )


def object_array(values: list[Any]) -> np.ndarray:
    """A 1-D object array of the given (scalar) values, without any dtype inference."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def typed_values(
    name: str, datatype: str, flat: list[Any], limits: Limits = DEFAULT_LIMITS
) -> np.ndarray:
    """A flat list of JSON values -> an array of `datatype`'s kind: float64 for FP*, int64 /
    uint64 for INT*/UINT*, bool for BOOL, object (scalars only) for BYTES."""
    types = element_types(flat)
    where = f"input '{name}'"
    if datatype in FLOAT_TYPES:
        if not types <= _FLOAT_OK:
            raise BadRequest(
                f"{where}: datatype {datatype} needs numbers, data holds "
                f"{_describe(types, _FLOAT_OK)}"
            )
        try:
            return np.array(flat, dtype=np.float64)
        except (OverflowError, ValueError, TypeError):
            raise BadRequest(f"{where}: a value is too large for {datatype}") from None
    if datatype in _INT_RANGES:
        if not types <= {int}:
            raise BadRequest(
                f"{where}: datatype {datatype} needs integers, data holds "
                f"{_describe(types, frozenset({int}))}"
            )
        lo, hi = _INT_RANGES[datatype]
        try:
            arr = np.array(flat, dtype=np.uint64 if datatype == "UINT64" else np.int64)
        except (OverflowError, ValueError, TypeError):
            raise BadRequest(f"{where}: values out of range for {datatype}") from None
        if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
            raise BadRequest(f"{where}: values out of range for {datatype}")
        return arr
    if datatype == "BOOL":
        if not types <= {bool}:
            raise BadRequest(
                f"{where}: datatype BOOL needs true/false, data holds "
                f"{_describe(types, frozenset({bool}))}"
            )
        return np.array(flat, dtype=bool)
    if datatype == "BYTES":
        if not types <= _SCALAR_TYPES:
            raise BadRequest(
                f"{where}: datatype BYTES needs strings, data holds "
                f"{_describe(types, _SCALAR_TYPES)}"
            )
        check_strings(where, flat, types, limits)
        return object_array(flat)
    raise BadRequest(f"{where}: unknown datatype {datatype!r}; use one of {DATATYPES}")


def json_tensor(
    name: str, datatype: str, data: Any, shape: list[int], limits: Limits = DEFAULT_LIMITS
) -> np.ndarray:
    """JSON tensor data, checked against `shape` -> a flat array of `datatype`'s kind."""
    if (
        datatype in FLOAT_TYPES
        and type(data) is list
        and data
        and type(data[0]) is not list
        and len(data) == math.prod(shape)
        and frozenset(map(type, data)) <= _FLOAT_OK
    ):  # the common case, in one step
        try:
            return np.array(data, dtype=np.float64)
        except (OverflowError, ValueError, TypeError):
            pass  # typed_values says why
    return typed_values(name, datatype, flatten(name, data, shape), limits)


def binary_tensor(
    name: str, datatype: str, raw: memoryview, count: int, limits: Limits = DEFAULT_LIMITS
) -> np.ndarray:
    """Triton binary tensor extension: little-endian raw values; BYTES are 4-byte length
    prefixed."""
    if datatype == "BYTES":
        out: list[str] = []
        pos, end = 0, len(raw)
        while pos < end:
            if pos + 4 > end:
                raise BadRequest(f"input '{name}': truncated BYTES element")
            (size,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + size > end:
                raise BadRequest(f"input '{name}': truncated BYTES element")
            if size > 4 * limits.max_string_chars:
                raise BadRequest(
                    f"input '{name}': a BYTES element of {size} bytes; this server takes "
                    f"strings of at most {limits.max_string_chars} characters"
                )
            if len(out) == count:
                raise BadRequest(f"input '{name}': binary data holds more than {count} elements")
            try:
                out.append(bytes(raw[pos : pos + size]).decode("utf-8"))
            except UnicodeDecodeError:
                raise BadRequest(f"input '{name}': BYTES element is not UTF-8 text") from None
            pos += size
        if len(out) != count:
            raise BadRequest(
                f"input '{name}': binary data holds {len(out)} elements, shape needs {count}"
            )
        return object_array(out)
    dtype = NP_DTYPES.get(datatype)
    if dtype is None:
        raise BadRequest(f"input '{name}': unknown datatype {datatype!r}; use one of {DATATYPES}")
    if len(raw) != count * dtype.itemsize:
        raise BadRequest(
            f"input '{name}': binary data has {len(raw)} bytes, shape and {datatype} need "
            f"{count * dtype.itemsize}"
        )
    arr = np.frombuffer(raw, dtype=dtype)
    if datatype in FLOAT_TYPES:
        return arr.astype(np.float64)
    return arr.copy()


# ---------------------------------------------------------------------------- features
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
        col = _strings_to_float(feature, values, where)
    check_finite(feature, col, rt, where)
    return col


def _strings_to_float(feature: Feature, values: np.ndarray, where: str) -> np.ndarray:
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
        if element_types(obj.tolist()) <= {str, _NONE}:
            out = obj.copy()
        else:  # numbers sent for a string category: their text
            out = pd.Series(obj, dtype=object).map(str, na_action="ignore").to_numpy(object)
        out[missing] = math.nan
        return out if rt.frame_mode else _strings_to_float(feature, out, where)
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


def matrix_to_batch(
    rt: ModelRuntime, flat: np.ndarray, rows: int, where: str
) -> Batch:
    """[rows*features] flat values in row-major order -> model batch."""
    n_features = rt.n_features
    if not rt.frame_mode:
        if flat.dtype.kind in "fiub":
            X = flat.astype(np.float64, copy=False).reshape(rows, n_features)
        else:
            X = np.column_stack(
                [_strings_to_float(f, flat[f.index :: n_features], where) for f in rt.features]
            ) if rows else np.empty((0, n_features))
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


# ---------------------------------------------------------------------------- v2 request
def _shape(name: str, shape: Any) -> list[int]:
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise BadRequest(f"input '{name}': shape must be a list of non-negative integers")
    return shape


def _requested_outputs(
    rt: ModelRuntime, obj: dict[str, Any], params: dict[str, Any]
) -> tuple[tuple[str, ...], frozenset[str]]:
    binary_all = params.get("binary_data_output") is True
    requested = obj.get("outputs")
    if requested is None:
        names: tuple[str, ...] = (rt.outputs[0],)
        return names, frozenset(names) if binary_all else frozenset()
    if not isinstance(requested, list):
        raise BadRequest("'outputs' must be a list of {name: ...} objects")
    out: list[str] = []
    binary: set[str] = set()
    for item in requested:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("each requested output needs a 'name'")
        name = item["name"]
        if name not in rt.outputs:
            raise BadRequest(
                f"unknown output '{name}' for model '{rt.name}'; available: {', '.join(rt.outputs)}"
            )
        if name not in out:
            out.append(name)
        oparams = item.get("parameters") or {}
        if not isinstance(oparams, dict):
            raise BadRequest(f"output '{name}': parameters must be an object")
        flag = oparams.get("binary_data", binary_all)
        if flag is True:
            binary.add(name)
    if not out:
        out.append(rt.outputs[0])
    return tuple(out), frozenset(binary)


def decode_v2(
    rt: ModelRuntime,
    obj: Any,
    max_rows: int,
    binary: memoryview | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Decoded:
    """A parsed v2 inference request (dict) [+ binary tail] -> Decoded."""
    if not isinstance(obj, dict):
        raise BadRequest("request body must be a JSON object with 'inputs'")
    inputs = obj.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    params = obj.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")
    request_id = obj.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    outputs, binary_outputs = _requested_outputs(rt, obj, params)

    tensors: list[tuple[str, str, list[int], np.ndarray]] = []
    offset = 0
    for pos, inp in enumerate(inputs):
        if not isinstance(inp, dict):
            raise BadRequest(f"inputs[{pos}] must be an object")
        name = inp.get("name")
        if not isinstance(name, str):
            raise BadRequest(f"inputs[{pos}] needs a string 'name'")
        datatype = inp.get("datatype")
        if datatype not in DATATYPES:
            raise BadRequest(
                f"input '{name}': datatype {datatype!r} is not one of {', '.join(DATATYPES)}"
            )
        shape = _shape(name, inp.get("shape"))
        count = math.prod(shape)
        iparams = inp.get("parameters") or {}
        if not isinstance(iparams, dict):
            raise BadRequest(f"input '{name}': parameters must be an object")
        size = iparams.get("binary_data_size")
        if size is not None:
            if binary is None:
                raise BadRequest(
                    f"input '{name}': binary_data_size given but the request has no binary part "
                    "(Inference-Header-Content-Length)"
                )
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise BadRequest(f"input '{name}': binary_data_size {size!r} exceeds the body")
            values = binary_tensor(name, datatype, binary[offset : offset + size], count, limits)
            offset += size
        else:
            if "data" not in inp:
                raise BadRequest(f"input '{name}': no 'data'")
            values = json_tensor(name, datatype, inp["data"], shape, limits)
        tensors.append((name, datatype, shape, values))
    if binary is not None and offset != len(binary):
        raise BadRequest(
            f"binary part has {len(binary)} bytes, inputs declare {offset} (binary_data_size)"
        )

    names = [t[0] for t in tensors]
    single_matrix = len(tensors) == 1 and (
        names[0] not in rt.feature_index or (rt.n_features == 1 and len(tensors[0][2]) == 2)
    )
    if single_matrix:
        name, _, shape, values = tensors[0]
        if len(shape) == 2:
            rows, width = shape
        elif len(shape) == 1 and rt.n_features == 1:
            rows, width = shape[0], 1
        else:
            raise BadRequest(
                f"input '{name}': shape {shape} must be [rows, {rt.n_features}] (one 2-D input) "
                f"or send one 1-D input per feature named {list(rt.feature_names)}"
            )
        if width != rt.n_features:
            raise BadRequest(
                f"input '{name}': shape {shape} has {width} features, model '{rt.name}' takes "
                f"{rt.n_features} ({', '.join(rt.feature_names)})"
            )
        _check_rows(rows, max_rows)
        batch = matrix_to_batch(rt, values, rows, f"input '{name}'")
        return Decoded(batch, rows, outputs, binary_outputs, request_id)

    # one 1-D input per feature, by name
    unknown = [n for n in names if n not in rt.feature_index]
    if unknown:
        raise BadRequest(
            f"unknown input(s) {unknown}; model '{rt.name}' takes one 2-D input or inputs named "
            f"{list(rt.feature_names)}"
        )
    if len(set(names)) != len(names):
        raise BadRequest("an input name appears more than once")
    missing = [n for n in rt.feature_names if n not in names]
    if missing:
        raise BadRequest(f"missing input(s) for feature(s) {missing}")
    by_name = {t[0]: t for t in tensors}
    rows = -1
    columns: list[np.ndarray] = []
    for f in rt.features:
        name, _, shape, values = by_name[f.name]
        if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
            n = shape[0]
        else:
            raise BadRequest(f"input '{name}': shape {shape} must be [rows] or [rows, 1]")
        if rows == -1:
            rows = n
        elif n != rows:
            raise BadRequest(f"input '{name}' has {n} rows, other inputs have {rows}")
        columns.append(to_column(f, values, rt, f"input '{name}'"))
    _check_rows(rows, max_rows)
    return Decoded(columns_to_batch(rt, columns), rows, outputs, binary_outputs, request_id)


def _check_rows(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise BadRequest("the request has no rows")
    if rows > max_rows:
        raise PayloadTooLarge(f"too many rows: {rows} (this server takes at most {max_rows})")


# ---------------------------------------------------------------------------- v2 response
def _bytes_blob(values: Sequence[Any]) -> bytes:
    parts = []
    for v in values:
        b = str(v).encode("utf-8")
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def _output(
    name: str, datatype: str, shape: list[int], values: np.ndarray, binary: bool,
    blobs: list[bytes]
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    if binary:
        if datatype == "BYTES":
            blob = _bytes_blob(values.ravel().tolist())
        else:
            blob = np.ascontiguousarray(values, dtype=NP_DTYPES[datatype]).tobytes()
        out["parameters"] = {"binary_data_size": len(blob)}
        blobs.append(blob)
    elif datatype == "BYTES" or values.dtype.kind == "O":
        out["data"] = [v if isinstance(v, str) else str(v) for v in values.ravel().tolist()] \
            if datatype == "BYTES" else values.ravel().tolist()
    else:
        out["data"] = np.ascontiguousarray(values.ravel(), dtype=NP_DTYPES[datatype])
    return out


def encode_v2(
    rt: ModelRuntime, decoded: Decoded, labels: np.ndarray, proba: np.ndarray | None
) -> tuple[bytes, int | None]:
    """-> (body, json header length if the body carries binary outputs else None)."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    rows = decoded.rows
    for name in decoded.outputs:
        if name == PREDICT:
            outputs.append(_output(PREDICT, rt.predict_datatype, [rows], labels,
                                   PREDICT in decoded.binary_outputs, blobs))
        elif name == PREDICT_PROBA and proba is not None:
            outputs.append(_output(PREDICT_PROBA, "FP64", [rows, proba.shape[1]], proba,
                                   PREDICT_PROBA in decoded.binary_outputs, blobs))
    body: dict[str, Any] = {
        "model_name": rt.name,
        "model_version": rt.version,
        "outputs": outputs,
    }
    if decoded.request_id is not None:
        body["id"] = decoded.request_id
    head = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


# ---------------------------------------------------------------------------- v1
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
    _check_rows(rows, max_rows)
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
    if types <= _FLOAT_OK:
        values = np.array(flat, dtype=np.float64)
    else:
        _check_scalars("instances", flat, types, n, rt)
        check_strings("instances", flat, types, limits)
        values = object_array(flat)
    return Decoded(matrix_to_batch(rt, values, rows, "instances"), rows)


def _check_scalars(where: str, flat: list[Any], types: frozenset[type], width: int,
                   rt: ModelRuntime) -> None:
    if types <= _SCALAR_TYPES:
        return
    i = next(i for i, v in enumerate(flat) if type(v) not in _SCALAR_TYPES)
    raise BadRequest(
        f"{where}: feature '{rt.feature_names[i % width]}' row {i // width} is "
        f"{type(flat[i]).__name__}, expected a scalar"
    )


def _column(rt: ModelRuntime, feature: Feature, values: list[Any], where: str,
            limits: Limits) -> np.ndarray:
    """One feature's JSON values -> its model column."""
    types = element_types(values)
    if types <= _FLOAT_OK and feature.kind == "numeric":
        arr = np.array(values, dtype=np.float64)
    elif types <= {bool} and feature.kind == "boolean":
        arr = np.array(values, dtype=bool)
    else:
        if not types <= _SCALAR_TYPES:
            i = next(i for i, v in enumerate(values) if type(v) not in _SCALAR_TYPES)
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
    columns = [_column(rt, f, list(map(itemgetter(f.name), instances)), "instances", limits)
               for f in rt.features]
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
    _check_rows(rows, max_rows)
    columns = [_column(rt, f, inputs[f.name], "inputs", limits) for f in rt.features]
    return Decoded(columns_to_batch(rt, columns), rows)


def encode_v1(rt: ModelRuntime, labels: np.ndarray) -> bytes:
    if labels.dtype.kind in "biuf":
        return orjson.dumps({"predictions": labels}, option=orjson.OPT_SERIALIZE_NUMPY)
    return orjson.dumps({"predictions": labels.tolist()})


def check_size(length: int, limit: int) -> None:
    if length > limit:
        raise PayloadTooLarge(f"request body is {length} bytes, the limit is {limit}")


__all__ = [
    "DATATYPES",
    "Decoded",
    "InferenceError",
    "check_size",
    "decode_v1",
    "decode_v2",
    "encode_v1",
    "encode_v2",
    "parse_json",
]
