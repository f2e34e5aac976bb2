"""Tensor data as clients send it (JSON, nested or flat, or the binary tensor extension's raw
bytes) -> flat numpy arrays of the datatype's kind, checked against the declared shape.

Request data is never handed to numpy to guess a dtype from: a list of strings would become a
fixed-width unicode array sized by its longest string (memory quadratic in the body). The
element count is checked against `shape`, the Python types of the elements are checked in one
C-level pass, and arrays are built with an explicit dtype.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from modelfactory_api.oip import DATATYPES, FLOAT_TYPES, NUMPY_DTYPES
from modelfactory_serving.errors import BadRequest

NP_DTYPES: dict[str, np.dtype[Any]] = {name: np.dtype(s) for name, s in NUMPY_DTYPES.items()}
_INT_RANGES = {
    name: (int(np.iinfo(dt).min), int(np.iinfo(dt).max))
    for name, dt in NP_DTYPES.items()
    if dt.kind in "iu"
}

NONE_TYPE = type(None)
FLOAT_OK: frozenset[type] = frozenset({int, float, NONE_TYPE})
SCALAR_TYPES: frozenset[type] = frozenset({str, int, float, bool, NONE_TYPE})
_TYPE_NAMES = {
    str: "strings",
    bool: "booleans",
    float: "non-integer numbers",
    int: "integers",
    list: "nested lists",
    dict: "objects",
    NONE_TYPE: "nulls",
}


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
        if not types <= FLOAT_OK:
            raise BadRequest(
                f"{where}: datatype {datatype} needs numbers, data holds "
                f"{_describe(types, FLOAT_OK)}"
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
        if not types <= SCALAR_TYPES:
            raise BadRequest(
                f"{where}: datatype BYTES needs strings, data holds "
                f"{_describe(types, SCALAR_TYPES)}"
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
        and frozenset(map(type, data)) <= FLOAT_OK
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
