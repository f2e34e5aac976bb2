"""Tensor data is typed without numpy guessing a dtype, and strings are bounded."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from modelfactory_serving.codec.request import parse_json
from modelfactory_serving.codec.tensors import Limits
from modelfactory_serving.codec.v1 import decode_v1
from modelfactory_serving.codec.v2 import decode_v2
from modelfactory_serving.errors import BadRequest, InferenceError
from modelfactory_serving.model import ModelRuntime

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("datatype", "shape_of"),
    [
        ("FP64", lambda n: [n // 4, 4]),
        ("INT64", lambda n: [n // 4, 4]),
        ("BOOL", lambda n: [n // 4, 4]),
        ("BYTES", lambda n: [n // 4, 4]),
    ],
)
def test_strings_never_become_a_fixed_width_array(
    runtimes: dict[str, ModelRuntime],
    v2_request: Any,
    hostile_strings: list[str],
    datatype: str,
    shape_of: Any,
) -> None:
    """A 50 KB body of short strings and one long one: refused, and decoding it allocates
    nothing near len(strings) x longest (which numpy's dtype inference would: ~400 MB)."""
    import tracemalloc

    strings = hostile_strings
    body = orjson.dumps(v2_request(strings, shape_of(len(strings)), datatype))
    tracemalloc.start()
    try:
        with pytest.raises(InferenceError) as err:
            decode_v2(runtimes["lr"], parse_json(body), 10_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 400 <= err.value.status < 500
    assert peak < 2_000_000, peak


def test_long_strings_are_refused(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["mixed"]
    obj = {
        "inputs": [
            {"name": "age", "shape": [1], "datatype": "FP64", "data": [1.0]},
            {"name": "income", "shape": [1], "datatype": "FP64", "data": [1.0]},
            {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["n" * 101]},
        ]
    }
    with pytest.raises(BadRequest, match="string of 101 characters; this server takes at most 100"):
        decode_v2(rt, obj, 10, limits=Limits(max_string_chars=100))
    with pytest.raises(BadRequest, match="at most 100"):
        decode_v1(rt, {"instances": [[1.0, 1.0, "n" * 101]]}, 10, Limits(max_string_chars=100))
