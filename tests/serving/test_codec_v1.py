"""KServe v1 decoding: rows as lists or objects, columnar inputs, and hostile bodies refused
cheaply."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from modelfactory_serving.codec.request import parse_json
from modelfactory_serving.codec.v1 import decode_v1
from modelfactory_serving.errors import BadRequest, InferenceError
from modelfactory_serving.model import ModelRuntime

pytestmark = pytest.mark.unit


def test_v1_rows_and_objects(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["lr"]
    d = decode_v1(rt, {"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]}, 100)
    assert d.rows == 2 and d.batch.shape == (2, 4)  # type: ignore[union-attr]
    d = decode_v1(rt, {"instances": [{"x3": 4, "x2": 3, "x1": 2, "x0": 1}]}, 100)
    assert d.batch.tolist() == [[1, 2, 3, 4]]  # type: ignore[union-attr]
    mixed = runtimes["mixed"]
    d = decode_v1(mixed, {"instances": [{"age": 30, "income": 40, "city": "nice"}]}, 100)
    assert d.batch[2].tolist() == ["nice"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"rows": []}, "'instances' must be a list"),
        ({"instances": []}, "no rows"),
        ({"instances": [[1, 2, 3]]}, "instance 0 has 3 values, model 'lr' takes 4"),
        ({"instances": [[1, 2, 3, 4], 5]}, "instance 1 must be a list"),
        ({"instances": [{"x0": 1, "x1": 2, "x2": 3}]}, r"missing feature\(s\) \['x3'\]"),
        (
            {"instances": [{"x0": 1, "x1": 2, "x2": 3, "x3": 4, "q": 1}]},
            r"unknown feature\(s\) \['q'\]",
        ),
        ({"instances": [[1, 2, 3, "four"]]}, "feature 'x3' is numeric"),
        ({"instances": [[1, 2, 3, None]]}, "feature 'x3' is missing"),
        ({"instances": [[1, 2, 3, [4]]]}, "expected a scalar"),
    ],
)
def test_v1_validation(runtimes: dict[str, ModelRuntime], obj: Any, match: str) -> None:
    with pytest.raises(InferenceError, match=match):
        decode_v1(runtimes["lr"], obj, 100)


@pytest.mark.parametrize(
    "make",
    [
        lambda s: {"instances": [s[i : i + 4] for i in range(0, len(s), 4)]},
        lambda s: {"inputs": [s[i : i + 4] for i in range(0, len(s), 4)]},
        lambda s: {
            "instances": [{f"x{j}": s[i + j] for j in range(4)} for i in range(0, len(s), 4)]
        },
        lambda s: {"inputs": {f"x{j}": s[j::4] for j in range(4)}},
    ],
    ids=["instances", "inputs-rows", "dict-rows", "inputs-columns"],
)
def test_v1_hostile_strings_are_refused_cheaply(
    runtimes: dict[str, ModelRuntime], hostile_strings: list[str], make: Any
) -> None:
    import tracemalloc

    body = orjson.dumps(make(hostile_strings))
    for rt in (runtimes["lr"], runtimes["mixed"]):
        tracemalloc.start()
        try:
            with pytest.raises(InferenceError) as err:
                decode_v1(rt, parse_json(body), 10_000)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert 400 <= err.value.status < 500
        assert peak < 4_000_000, peak


def test_v1_columnar_inputs(runtimes: dict[str, ModelRuntime]) -> None:
    mixed = runtimes["mixed"]
    d = decode_v1(
        mixed, {"inputs": {"city": ["nice", "lyon"], "age": [30, 40], "income": [1.5, 2.5]}}, 100
    )
    assert d.rows == 2 and d.batch[2].tolist() == ["nice", "lyon"]  # type: ignore[index]
    assert d.batch[0].tolist() == [30.0, 40.0]  # type: ignore[index]
    with pytest.raises(BadRequest, match="'income' has 2 values, other features have 1"):
        decode_v1(
            mixed, {"inputs": {"city": ["nice", "lyon"], "age": [30], "income": [1.5, 2.5]}}, 100
        )
    with pytest.raises(BadRequest, match=r"missing feature\(s\) \['income'\]"):
        decode_v1(mixed, {"inputs": {"city": ["nice"], "age": [30]}}, 100)
