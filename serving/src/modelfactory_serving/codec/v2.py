"""Open Inference Protocol v2: a parsed request (and its binary tail) -> Decoded; the model's
answers -> the response body, JSON with binary outputs appended when asked for."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from modelfactory_api.oip import DATATYPES
from modelfactory_serving.codec.features import columns_to_batch, matrix_to_batch, to_column
from modelfactory_serving.codec.request import Decoded, check_rows
from modelfactory_serving.codec.tensors import (
    DEFAULT_LIMITS,
    NP_DTYPES,
    Limits,
    binary_tensor,
    json_tensor,
)
from modelfactory_serving.errors import BadRequest
from modelfactory_serving.model import PREDICT, PREDICT_PROBA, ModelRuntime


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
        check_rows(rows, max_rows)
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
    check_rows(rows, max_rows)
    return Decoded(columns_to_batch(rt, columns), rows, outputs, binary_outputs, request_id)


def _bytes_blob(values: Sequence[Any]) -> bytes:
    parts = []
    for v in values:
        b = str(v).encode("utf-8")
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def _output(
    name: str, datatype: str, shape: list[int], values: np.ndarray, binary: bool, blobs: list[bytes]
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
        out["data"] = (
            [v if isinstance(v, str) else str(v) for v in values.ravel().tolist()]
            if datatype == "BYTES"
            else values.ravel().tolist()
        )
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
            outputs.append(
                _output(
                    PREDICT,
                    rt.predict_datatype,
                    [rows],
                    labels,
                    PREDICT in decoded.binary_outputs,
                    blobs,
                )
            )
        elif name == PREDICT_PROBA and proba is not None:
            outputs.append(
                _output(
                    PREDICT_PROBA,
                    "FP64",
                    [rows, proba.shape[1]],
                    proba,
                    PREDICT_PROBA in decoded.binary_outputs,
                    blobs,
                )
            )
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
