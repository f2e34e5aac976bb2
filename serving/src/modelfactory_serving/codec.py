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
from typing import Any

import numpy as np
import orjson

from modelfactory_serving.errors import BadRequest, InferenceError, PayloadTooLarge
from modelfactory_serving.model import PREDICT, PREDICT_PROBA, Batch, Feature, ModelRuntime

NP_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*NP_DTYPES, "BYTES")
_INT_RANGES = {name: (int(np.iinfo(dt).min), int(np.iinfo(dt).max))
               for name, dt in NP_DTYPES.items() if dt.kind in "iu"}
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})


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
def _flat_json_data(name: str, data: Any) -> np.ndarray:
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': data must be a JSON array")
    try:
        arr = np.asarray(data)
    except (ValueError, OverflowError, TypeError) as e:
        raise BadRequest(f"input '{name}': data is not a regular array: {e}") from None
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    return arr


def _object_to_float(name: str, arr: np.ndarray) -> np.ndarray:
    out = np.empty(arr.shape[0], dtype=np.float64)
    for i, v in enumerate(arr):
        if v is None:
            out[i] = math.nan
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            try:
                out[i] = v
            except OverflowError:
                raise BadRequest(f"input '{name}': element {i} is too large") from None
        else:
            raise BadRequest(
                f"input '{name}': element {i} is {type(v).__name__} {v!r}, expected a number"
            )
    return out


def json_tensor(name: str, datatype: str, data: Any) -> np.ndarray:
    """JSON tensor data -> a flat array whose values fit `datatype` (floats as float64,
    integers as int64/uint64, BOOL as bool, BYTES as object)."""
    arr = _flat_json_data(name, data)
    kind = arr.dtype.kind
    if datatype in _FLOAT_TYPES:
        if kind in "fiu":
            return arr.astype(np.float64, copy=False)
        if kind == "O":
            return _object_to_float(name, arr)
        if arr.size == 0:
            return np.empty(0, dtype=np.float64)
        raise BadRequest(
            f"input '{name}': datatype {datatype} needs numbers, data holds {_kind_name(kind)}"
        )
    if datatype in _INT_RANGES:
        if kind in "iu":
            lo, hi = _INT_RANGES[datatype]
            if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
                raise BadRequest(f"input '{name}': values out of range for {datatype}")
            return arr
        if arr.size == 0:
            return np.empty(0, dtype=np.int64)
        raise BadRequest(
            f"input '{name}': datatype {datatype} needs integers, data holds {_kind_name(kind)}"
        )
    if datatype == "BOOL":
        if kind == "b" or arr.size == 0:
            return arr.astype(bool, copy=False)
        raise BadRequest(
            f"input '{name}': datatype BOOL needs true/false, data holds {_kind_name(kind)}"
        )
    if datatype == "BYTES":
        if kind == "O":
            for i, v in enumerate(arr):
                if v is not None and not isinstance(v, (str, int, float, bool)):
                    raise BadRequest(
                        f"input '{name}': element {i} is {type(v).__name__}, expected a string"
                    )
        return arr.astype(object, copy=False)
    raise BadRequest(f"input '{name}': unknown datatype {datatype!r}; use one of {DATATYPES}")


def _kind_name(kind: str) -> str:
    return {
        "b": "booleans",
        "U": "strings",
        "S": "strings",
        "O": "mixed values",
        "f": "non-integer numbers",
        "i": "integers",
        "u": "integers",
    }.get(kind, "unsupported values")


def binary_tensor(name: str, datatype: str, raw: memoryview, count: int) -> np.ndarray:
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
            try:
                out.append(bytes(raw[pos : pos + size]).decode("utf-8"))
            except UnicodeDecodeError:
                raise BadRequest(f"input '{name}': BYTES element is not UTF-8 text") from None
            pos += size
        if len(out) != count:
            raise BadRequest(
                f"input '{name}': binary data holds {len(out)} elements, shape needs {count}"
            )
        return np.asarray(out, dtype=object)
    dtype = NP_DTYPES.get(datatype)
    if dtype is None:
        raise BadRequest(f"input '{name}': unknown datatype {datatype!r}; use one of {DATATYPES}")
    if len(raw) != count * dtype.itemsize:
        raise BadRequest(
            f"input '{name}': binary data has {len(raw)} bytes, shape and {datatype} need "
            f"{count * dtype.itemsize}"
        )
    arr = np.frombuffer(raw, dtype=dtype)
    if datatype in _FLOAT_TYPES:
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
    out = np.empty(values.shape[0], dtype=np.float64)
    for i, v in enumerate(values):
        if v is None:
            out[i] = math.nan
            continue
        if isinstance(v, bool):
            out[i] = float(v)
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise BadRequest(
                f"{where}: feature '{feature.name}' is numeric, row {i} holds {v!r}"
            ) from None
    return out


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
    out = np.empty(values.shape[0], dtype=object)
    for i, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            if not rt.allow_missing_category:
                raise BadRequest(
                    f"{where}: feature '{feature.name}' is missing at row {i}, and this model "
                    "does not accept missing categories"
                )
            out[i] = math.nan
        elif vk == "str":
            out[i] = v if isinstance(v, str) else str(v)
        else:
            try:
                number = float(v)
            except (TypeError, ValueError):
                raise BadRequest(
                    f"{where}: feature '{feature.name}' holds numeric categories, row {i} is {v!r}"
                ) from None
            if not math.isfinite(number):
                raise BadRequest(f"{where}: feature '{feature.name}' is not finite at row {i}")
            out[i] = int(number) if vk == "int" and number.is_integer() else number
    return out if rt.frame_mode else out.astype(np.float64)


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
            values = binary_tensor(name, datatype, binary[offset : offset + size], count)
            offset += size
        else:
            if "data" not in inp:
                raise BadRequest(f"input '{name}': no 'data'")
            values = json_tensor(name, datatype, inp["data"])
            if values.shape[0] != count:
                raise BadRequest(
                    f"input '{name}': data has {values.shape[0]} elements, shape {shape} needs "
                    f"{count}"
                )
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
def decode_v1(rt: ModelRuntime, obj: Any, max_rows: int) -> Decoded:
    """{"instances": [[...], ...] | [{feature: value}, ...]} -> Decoded."""
    if not isinstance(obj, dict):
        raise BadRequest("request body must be a JSON object with 'instances'")
    instances = obj.get("instances")
    if instances is None and "inputs" in obj:
        instances = obj["inputs"]
    if not isinstance(instances, list):
        raise BadRequest("'instances' must be a list of rows")
    rows = len(instances)
    _check_rows(rows, max_rows)
    first = instances[0]
    if isinstance(first, dict):
        return Decoded(_v1_dict_rows(rt, instances), rows)
    if not rt.frame_mode:
        try:
            X = np.asarray(instances, dtype=np.float64)
        except (ValueError, TypeError):
            X = None
        if X is not None and X.ndim == 2 and X.shape[1] == rt.n_features:
            if not np.isfinite(X).all():
                for f in rt.features:
                    check_finite(f, X[:, f.index], rt, "instances")
            return Decoded(X, rows)
    for i, row in enumerate(instances):
        if not isinstance(row, list):
            raise BadRequest(f"instance {i} must be a list of {rt.n_features} values or an object")
        if len(row) != rt.n_features:
            raise BadRequest(
                f"instance {i} has {len(row)} values, model '{rt.name}' takes {rt.n_features} "
                f"({', '.join(rt.feature_names)})"
            )
    columns = []
    for f in rt.features:
        values = _column_values([row[f.index] for row in instances], f, "instances")
        columns.append(to_column(f, values, rt, "instances"))
    return Decoded(columns_to_batch(rt, columns), rows)


def _column_values(values: list[Any], feature: Feature, where: str) -> np.ndarray:
    for i, v in enumerate(values):
        if v is not None and not isinstance(v, (str, int, float, bool)):
            raise BadRequest(
                f"{where}: feature '{feature.name}' row {i} is {type(v).__name__}, expected a "
                "scalar"
            )
    if feature.kind == "numeric" and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        return np.asarray(values, dtype=np.float64)
    if feature.kind == "boolean" and all(isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=bool)
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _v1_dict_rows(rt: ModelRuntime, instances: list[Any]) -> Batch:
    known = rt.feature_index
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            raise BadRequest(f"instance {i} must be an object like instance 0")
        if len(row) != rt.n_features or any(k not in known for k in row):
            unknown = sorted(k for k in row if k not in known)
            missing = [n for n in rt.feature_names if n not in row]
            raise BadRequest(
                f"instance {i}: "
                + (f"unknown feature(s) {unknown}" if unknown else "")
                + ("; " if unknown and missing else "")
                + (f"missing feature(s) {missing}" if missing else "")
            )
    columns = []
    for f in rt.features:
        values = _column_values([row[f.name] for row in instances], f, "instances")
        columns.append(to_column(f, values, rt, "instances"))
    return columns_to_batch(rt, columns)


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
