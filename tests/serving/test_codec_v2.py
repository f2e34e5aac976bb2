"""Open Inference Protocol v2 decoding and encoding: matrix or per-feature inputs, JSON or
binary tensors, requested outputs, and every malformed request named."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
import pytest

from modelfactory_serving.codec.v2 import decode_v2, encode_v2
from modelfactory_serving.errors import BadRequest, InferenceError
from modelfactory_serving.model import ModelRuntime

pytestmark = pytest.mark.unit


def v2(
    data: list[Any], shape: list[int], datatype: str = "FP64", name: str = "input-0", **extra: Any
) -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}], **extra}


def bad(rt: ModelRuntime, obj: Any, match: str, max_rows: int = 100) -> InferenceError:
    with pytest.raises(InferenceError, match=match) as err:
        decode_v2(rt, obj, max_rows)
    assert 400 <= err.value.status < 500
    return err.value


def test_matrix_input(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["lr"]
    d = decode_v2(rt, v2(list(range(8)), [2, 4], "FP32"), 100)
    assert d.rows == 2
    assert isinstance(d.batch, np.ndarray)
    assert d.batch.shape == (2, 4) and d.batch.dtype == np.float64
    assert d.outputs == ("predict",)


def test_nested_data_is_accepted(runtimes: dict[str, ModelRuntime]) -> None:
    d = decode_v2(runtimes["lr"], v2([[0, 1, 2, 3], [4, 5, 6, 7]], [2, 4]), 100)
    assert d.batch[1][3] == 7  # type: ignore[index]


def test_per_feature_inputs(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["lr"]
    obj = {
        "inputs": [
            {"name": f"x{i}", "shape": [3], "datatype": "INT32", "data": [i, i, i]}
            for i in reversed(range(4))
        ]
    }
    d = decode_v2(rt, obj, 100)
    assert d.rows == 3
    assert d.batch[0].tolist() == [0, 1, 2, 3]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ([], "JSON object"),
        ({"inputs": []}, "non-empty"),
        ({"inputs": "x"}, "non-empty"),
        (v2([1] * 8, [2, 4], "FLOAT"), "datatype 'FLOAT'"),
        (v2([1] * 8, [2, 4], "FP32", parameters=[1]), "parameters"),
        (v2([1] * 8, [8]), r"shape \[8\] must be \[rows, 4\]"),
        (v2([1] * 8, [4, 2]), "has 2 features, model 'lr' takes 4"),
        (v2([1] * 8, [2, 4, 1]), "must be"),
        (v2([1] * 7, [2, 4]), r"data has 7 elements, shape \[2, 4\] needs 8"),
        (v2([1] * 8, [2, -4]), "non-negative"),
        (v2([1] * 8, "2x4"), "shape must be"),
        (v2([1, 2, 3, "a", 5, 6, 7, 8], [2, 4], "FP32"), "needs numbers, data holds strings"),
        (v2([True] * 8, [2, 4], "FP32"), "needs numbers, data holds booleans"),
        (v2([1.5] * 8, [2, 4], "INT64"), "needs integers"),
        (v2([300] * 8, [2, 4], "INT8"), "out of range for INT8"),
        (v2([-1] * 8, [2, 4], "UINT8"), "out of range for UINT8"),
        (v2([1] * 8, [2, 4], "BOOL"), "needs true/false"),
        (v2([[1, 2], [3]], [2, 4]), r"nested data does not match shape \[2, 4\]"),
        (v2([[1], [2], [3], [4]], [1, 4]), r"nested data does not match shape \[1, 4\]"),
        (v2([[[1], [2], [3], [4]]], [1, 4]), "needs numbers, data holds nested lists"),
        (v2([1, 2, 3, [4]], [1, 4]), "needs numbers, data holds nested lists"),
        (v2({"a": 1}, [2, 4]), "must be a JSON array"),
        (v2([{"a": 1}] * 8, [2, 4]), "needs numbers, data holds objects"),
        (v2(["1"] * 4, [1, 4], "INT64"), "needs integers, data holds strings"),
        (v2([2**70] * 4, [1, 4], "INT64"), "out of range for INT64"),
        (v2([1] * 4, [99999999999, 4]), r"data has 4 elements, shape \[99999999999, 4\] needs"),
        (v2([1.0, math.inf, 0, 0, 0, 0, 0, 0], [2, 4]), "feature 'x1' is infinite at row 0"),
        (v2([0, 0, 0, 0, 0, math.nan, 0, 0], [2, 4]), "feature 'x1' is missing .* at row 1"),
        (v2([0, 0, 0, None, 0, 0, 0, 0], [2, 4]), "feature 'x3' is missing"),
        (v2([], [0, 4]), "no rows"),
        (v2([1] * 8, [2, 4], outputs=[{"name": "shap"}]), "unknown output 'shap'"),
        (v2([1] * 8, [2, 4], outputs="predict"), "'outputs' must be a list"),
        (v2([1] * 8, [2, 4], id=5), "'id' must be a string"),
        (
            {"inputs": [{"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]}]},
            r"missing input\(s\) for feature\(s\) \['x1', 'x2', 'x3'\]",
        ),
        (
            {
                "inputs": [
                    {"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]},
                    {"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]},
                ]
            },
            r"unknown input\(s\) \['zz'\]",
        ),
        (
            {
                "inputs": [
                    {
                        "name": f"x{i}",
                        "shape": [1 + (i == 2)],
                        "datatype": "FP64",
                        "data": [1] * (1 + (i == 2)),
                    }
                    for i in range(4)
                ]
            },
            "'x2' has 2 rows",
        ),
        ({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64"}]}, "no 'data'"),
    ],
)
def test_v2_validation(runtimes: dict[str, ModelRuntime], obj: Any, match: str) -> None:
    bad(runtimes["lr"], obj, match)


def test_too_many_rows(runtimes: dict[str, ModelRuntime]) -> None:
    err = bad(runtimes["lr"], v2([0.0] * 44, [11, 4]), "too many rows: 11", max_rows=10)
    assert err.status == 413


def test_nan_allowed_when_the_model_imputes(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["mixed"]
    assert rt.allow_nan and rt.allow_missing_category
    obj = {
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "FP64", "data": [None, 30.0]},
            {"name": "income", "shape": [2], "datatype": "FP64", "data": [50.0, 60.0]},
            {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["nice", None]},
        ]
    }
    d = decode_v2(rt, obj, 100)
    assert math.isnan(d.batch[0][0])  # type: ignore[index]


def test_mixed_model_matrix_of_bytes(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["mixed"]
    d = decode_v2(rt, v2([41.0, 50, "nice", "20", 70, "lyon"], [2, 3], "BYTES"), 100)
    assert isinstance(d.batch, list)
    assert d.batch[0].tolist() == [41.0, 20.0]
    assert d.batch[2].tolist() == ["nice", "lyon"]
    bad(rt, v2([41.0, "x", "nice"], [1, 3], "BYTES"), "feature 'income' is numeric")


def test_outputs_and_binary_flags(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["rf"]
    d = decode_v2(
        rt,
        v2(
            [0] * 4,
            [1, 4],
            outputs=[
                {"name": "predict_proba", "parameters": {"binary_data": True}},
                {"name": "predict"},
            ],
        ),
        100,
    )
    assert d.outputs == ("predict_proba", "predict")
    assert d.binary_outputs == frozenset({"predict_proba"})
    d = decode_v2(rt, v2([0] * 4, [1, 4], parameters={"binary_data_output": True}), 100)
    assert d.binary_outputs == frozenset({"predict"})
    assert "predict_proba" not in runtimes["ridge"].outputs


def test_binary_input_tensors(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["lr"]
    raw = np.arange(8, dtype="<f4").tobytes()
    obj = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [2, 4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ]
    }
    d = decode_v2(rt, obj, 100, memoryview(raw))
    assert d.batch.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]  # type: ignore[union-attr]
    with pytest.raises(BadRequest, match="binary data has 31 bytes"):
        decode_v2(
            rt,
            {
                "inputs": [
                    {
                        **obj["inputs"][0],  # type: ignore[dict-item]
                        "parameters": {"binary_data_size": 31},
                    }
                ]
            },
            100,
            memoryview(raw[:31]),
        )
    with pytest.raises(BadRequest, match="no binary part"):
        decode_v2(rt, obj, 100, None)
    # BYTES: 4-byte little-endian length prefix per element
    mixed = runtimes["mixed"]
    blob = b"".join(struct.pack("<I", len(s)) + s for s in (b"nice", b"paris"))
    obj = {
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
            {"name": "income", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
            {
                "name": "city",
                "shape": [2],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(blob)},
            },
        ]
    }
    d = decode_v2(mixed, obj, 100, memoryview(blob))
    assert d.batch[2].tolist() == ["nice", "paris"]  # type: ignore[index]


def test_encode_binary_outputs(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["rf"]
    d = decode_v2(
        rt,
        v2(
            [0] * 8,
            [2, 4],
            id="abc",
            outputs=[
                {"name": "predict", "parameters": {"binary_data": True}},
                {"name": "predict_proba"},
            ],
        ),
        100,
    )
    pred = rt.predict(d.batch, True)
    body, header_length = encode_v2(rt, d, pred.labels, pred.proba)
    assert header_length is not None
    head = orjson.loads(body[:header_length])
    assert head["id"] == "abc"
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 16
    assert np.frombuffer(body[header_length:], "<i8").tolist() == pred.labels.tolist()
    assert head["outputs"][1]["shape"] == [2, 3]
    assert len(head["outputs"][1]["data"]) == 6
