"""The Open Inference Protocol v2 tensor datatypes and the numpy dtype each one is carried in.

Byte order is little-endian, as the binary tensor extension sends raw values. BYTES has no fixed
width: it is text, one length-prefixed element at a time.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]

# v2 datatype -> numpy dtype string (numpy.dtype(...) of it), for every fixed-width datatype.
NUMPY_DTYPES: Final[dict[str, str]] = {
    "BOOL": "|b1",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
BYTES: Final = "BYTES"
DATATYPES: Final[tuple[str, ...]] = get_args(Datatype)
FLOAT_TYPES: Final = frozenset({"FP16", "FP32", "FP64"})

# numpy dtype kind -> the datatype a model's answers of that kind are sent as.
_BY_KIND: Final[dict[str, str]] = {"b": "BOOL", "i": "INT64", "u": "INT64", "f": "FP64"}


def datatype_of_kind(kind: str) -> str:
    """The datatype for answers of a numpy dtype kind ("b", "i", "u", "f"; text and objects
    are BYTES): integers widen to INT64 and floats to FP64, as scikit-learn returns them."""
    return _BY_KIND.get(kind, BYTES)
