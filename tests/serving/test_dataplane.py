"""The transport-free data plane: decoding, validation, batching; dict in, dict out."""

from __future__ import annotations

import asyncio
import math
import struct
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest

from modelfactory_artifacts.read import load_artifact
from modelfactory_serving.batcher import Batcher
from modelfactory_serving.codec.request import parse_json
from modelfactory_serving.codec.v1 import decode_v1
from modelfactory_serving.codec.v2 import decode_v2, encode_v2
from modelfactory_serving.dataplane import DataPlane
from modelfactory_serving.errors import BadRequest, InferenceError, NotFound, NotReady
from modelfactory_serving.model import ModelRuntime
from modelfactory_serving.settings import Settings

from .conftest import Artifact

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def runtimes(artifacts: dict[str, Artifact]) -> dict[str, ModelRuntime]:
    out = {}
    for name, art in artifacts.items():
        rt = ModelRuntime(load_artifact(art.uri, art.digest), name)
        rt.warm_up(8)
        out[name] = rt
    return out


def v2(data: list[Any], shape: list[int], datatype: str = "FP64", name: str = "input-0",
       **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}],
            **extra}


def bad(rt: ModelRuntime, obj: Any, match: str, max_rows: int = 100) -> InferenceError:
    with pytest.raises(InferenceError, match=match) as err:
        decode_v2(rt, obj, max_rows)
    assert 400 <= err.value.status < 500
    return err.value


# ---------------------------------------------------------------------------- decoding
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
    obj = {"inputs": [{"name": f"x{i}", "shape": [3], "datatype": "INT32", "data": [i, i, i]}
                      for i in reversed(range(4))]}
    d = decode_v2(rt, obj, 100)
    assert d.rows == 3
    assert d.batch[0].tolist() == [0, 1, 2, 3]  # type: ignore[union-attr]


@pytest.mark.parametrize(("obj", "match"), [
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
    ({"inputs": [{"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]}]},
     r"missing input\(s\) for feature\(s\) \['x1', 'x2', 'x3'\]"),
    ({"inputs": [{"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]},
                 {"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]}]},
     r"unknown input\(s\) \['zz'\]"),
    ({"inputs": [{"name": f"x{i}", "shape": [1 + (i == 2)], "datatype": "FP64",
                  "data": [1] * (1 + (i == 2))} for i in range(4)]}, "'x2' has 2 rows"),
    ({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64"}]}, "no 'data'"),
])
def test_v2_validation(runtimes: dict[str, ModelRuntime], obj: Any, match: str) -> None:
    bad(runtimes["lr"], obj, match)


def test_too_many_rows(runtimes: dict[str, ModelRuntime]) -> None:
    err = bad(runtimes["lr"], v2([0.0] * 44, [11, 4]), "too many rows: 11", max_rows=10)
    assert err.status == 413


def test_nan_allowed_when_the_model_imputes(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["mixed"]
    assert rt.allow_nan and rt.allow_missing_category
    obj = {"inputs": [
        {"name": "age", "shape": [2], "datatype": "FP64", "data": [None, 30.0]},
        {"name": "income", "shape": [2], "datatype": "FP64", "data": [50.0, 60.0]},
        {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["nice", None]},
    ]}
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
    d = decode_v2(rt, v2([0] * 4, [1, 4], outputs=[
        {"name": "predict_proba", "parameters": {"binary_data": True}}, {"name": "predict"}]),
        100)
    assert d.outputs == ("predict_proba", "predict")
    assert d.binary_outputs == frozenset({"predict_proba"})
    d = decode_v2(rt, v2([0] * 4, [1, 4], parameters={"binary_data_output": True}), 100)
    assert d.binary_outputs == frozenset({"predict"})
    assert "predict_proba" not in runtimes["ridge"].outputs


def test_binary_input_tensors(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["lr"]
    raw = np.arange(8, dtype="<f4").tobytes()
    obj = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32",
                       "parameters": {"binary_data_size": len(raw)}}]}
    d = decode_v2(rt, obj, 100, memoryview(raw))
    assert d.batch.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]  # type: ignore[union-attr]
    with pytest.raises(BadRequest, match="binary data has 31 bytes"):
        decode_v2(rt, {"inputs": [{**obj["inputs"][0],  # type: ignore[dict-item]
                                   "parameters": {"binary_data_size": 31}}]},
                  100, memoryview(raw[:31]))
    with pytest.raises(BadRequest, match="no binary part"):
        decode_v2(rt, obj, 100, None)
    # BYTES: 4-byte little-endian length prefix per element
    mixed = runtimes["mixed"]
    blob = b"".join(struct.pack("<I", len(s)) + s for s in (b"nice", b"paris"))
    obj = {"inputs": [
        {"name": "age", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
        {"name": "income", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
        {"name": "city", "shape": [2], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(blob)}},
    ]}
    d = decode_v2(mixed, obj, 100, memoryview(blob))
    assert d.batch[2].tolist() == ["nice", "paris"]  # type: ignore[index]


def test_encode_binary_outputs(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["rf"]
    d = decode_v2(rt, v2([0] * 8, [2, 4], id="abc", outputs=[
        {"name": "predict", "parameters": {"binary_data": True}}, {"name": "predict_proba"}]),
        100)
    pred = rt.predict(d.batch, True)
    body, header_length = encode_v2(rt, d, pred.labels, pred.proba)
    assert header_length is not None
    head = orjson.loads(body[:header_length])
    assert head["id"] == "abc"
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 16
    assert np.frombuffer(body[header_length:], "<i8").tolist() == pred.labels.tolist()
    assert head["outputs"][1]["shape"] == [2, 3]
    assert len(head["outputs"][1]["data"]) == 6


def test_v1_rows_and_objects(runtimes: dict[str, ModelRuntime]) -> None:
    rt = runtimes["lr"]
    d = decode_v1(rt, {"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]}, 100)
    assert d.rows == 2 and d.batch.shape == (2, 4)  # type: ignore[union-attr]
    d = decode_v1(rt, {"instances": [{"x3": 4, "x2": 3, "x1": 2, "x0": 1}]}, 100)
    assert d.batch.tolist() == [[1, 2, 3, 4]]  # type: ignore[union-attr]
    mixed = runtimes["mixed"]
    d = decode_v1(mixed, {"instances": [{"age": 30, "income": 40, "city": "nice"}]}, 100)
    assert d.batch[2].tolist() == ["nice"]  # type: ignore[index]


@pytest.mark.parametrize(("obj", "match"), [
    ({"rows": []}, "'instances' must be a list"),
    ({"instances": []}, "no rows"),
    ({"instances": [[1, 2, 3]]}, "instance 0 has 3 values, model 'lr' takes 4"),
    ({"instances": [[1, 2, 3, 4], 5]}, "instance 1 must be a list"),
    ({"instances": [{"x0": 1, "x1": 2, "x2": 3}]}, r"missing feature\(s\) \['x3'\]"),
    ({"instances": [{"x0": 1, "x1": 2, "x2": 3, "x3": 4, "q": 1}]},
     r"unknown feature\(s\) \['q'\]"),
    ({"instances": [[1, 2, 3, "four"]]}, "feature 'x3' is numeric"),
    ({"instances": [[1, 2, 3, None]]}, "feature 'x3' is missing"),
    ({"instances": [[1, 2, 3, [4]]]}, "expected a scalar"),
])
def test_v1_validation(runtimes: dict[str, ModelRuntime], obj: Any, match: str) -> None:
    with pytest.raises(InferenceError, match=match):
        decode_v1(runtimes["lr"], obj, 100)


def test_parse_json() -> None:
    assert parse_json(b'{"a": NaN}')["a"] != parse_json(b'{"a": NaN}')["a"]
    with pytest.raises(BadRequest, match="malformed JSON"):
        parse_json(b'{"a": ')


# ---------------------------------------------------------------------------- batching
class CountingRuntime:
    """Wraps a runtime and records every predict call's row count."""

    def __init__(self, rt: ModelRuntime, fail_on: float | None = None) -> None:
        self.rt = rt
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def concat(self, parts: list[Any]) -> Any:
        return self.rt.concat(parts)

    def predict(self, batch: Any, want_proba: bool) -> Any:
        self.calls.append(len(batch))
        self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and (np.asarray(batch) == self.fail_on).any():
            raise ValueError(f"cannot handle {self.fail_on}")
        return self.rt.predict(batch, want_proba)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def lr_rows(artifacts: dict[str, Artifact]) -> Iterator[np.ndarray]:
    yield np.asarray(artifacts["lr"].X[:40], dtype=np.float64)


@pytest.mark.parametrize("inline", [True, False])
def test_concurrent_requests_share_one_predict(runtimes: dict[str, ModelRuntime],
                                               lr_rows: np.ndarray, inline: bool) -> None:
    rt = runtimes["lr"]
    counting = CountingRuntime(rt)

    async def main() -> list[Any]:
        b = Batcher(counting, max_batch_size=32, max_latency_ms=5, inline=inline)  # type: ignore[arg-type]
        b.start()
        results = await asyncio.gather(
            *(b.submit(lr_rows[i : i + 1], 1, i % 2 == 0) for i in range(20))
        )
        await b.stop()
        return results

    results = run(main())
    assert sum(counting.calls) == 20
    assert len(counting.calls) <= 2  # merged, not 20 separate calls
    expected = rt.estimator.predict(lr_rows[:20])
    assert [r.labels[0] for r in results] == expected.tolist()
    assert results[0].proba is not None and results[0].proba.shape == (1, 2)
    assert ("predict" in "".join(counting.threads)) is not inline


def test_batches_respect_max_batch_size(runtimes: dict[str, ModelRuntime],
                                        lr_rows: np.ndarray) -> None:
    counting = CountingRuntime(runtimes["lr"])

    async def main() -> None:
        b = Batcher(counting, max_batch_size=8, max_latency_ms=1, inline=True)  # type: ignore[arg-type]
        b.start()
        await asyncio.gather(*(b.submit(lr_rows[i : i + 3], 3, False) for i in range(10)))
        await b.stop()

    run(main())
    assert sum(counting.calls) == 30
    assert max(counting.calls) <= 8


def test_a_failing_request_does_not_fail_its_batch(runtimes: dict[str, ModelRuntime],
                                                   lr_rows: np.ndarray) -> None:
    counting = CountingRuntime(runtimes["lr"], fail_on=123.0)
    poisoned = lr_rows[:1].copy()
    poisoned[0, 0] = 123.0

    async def main() -> list[Any]:
        b = Batcher(counting, max_batch_size=32, max_latency_ms=5, inline=False)  # type: ignore[arg-type]
        b.start()
        batches = [lr_rows[i : i + 1] for i in range(5)] + [poisoned]
        out = await asyncio.gather(*(b.submit(x, 1, False) for x in batches),
                                   return_exceptions=True)
        await b.stop()
        return out

    out = run(main())
    assert all(not isinstance(r, Exception) for r in out[:5])
    assert isinstance(out[5], InferenceError) and out[5].status == 422
    assert "cannot handle 123.0" in out[5].message


def test_waits_for_arriving_requests_up_to_max_latency(runtimes: dict[str, ModelRuntime],
                                                       lr_rows: np.ndarray) -> None:
    counting = CountingRuntime(runtimes["lr"])

    async def main() -> None:
        b = Batcher(counting, max_batch_size=32, max_latency_ms=200, inline=True)  # type: ignore[arg-type]
        b.start()
        b.arriving()  # a second request is still being read

        async def late() -> Any:
            await asyncio.sleep(0.02)
            b.arrived()
            return await b.submit(lr_rows[1:2], 1, False)

        await asyncio.gather(b.submit(lr_rows[:1], 1, False), late())
        await b.stop()

    run(main())
    assert counting.calls == [2]


def test_stop_finishes_queued_work(runtimes: dict[str, ModelRuntime],
                                   lr_rows: np.ndarray) -> None:
    async def main() -> list[Any]:
        b = Batcher(runtimes["lr"], max_batch_size=2, max_latency_ms=0, inline=False)
        b.start()
        tasks = [asyncio.ensure_future(b.submit(lr_rows[i : i + 1], 1, False)) for i in range(9)]
        await asyncio.sleep(0)
        await b.stop()
        return [t.result() for t in tasks]

    assert len(run(main())) == 9


# ---------------------------------------------------------------------------- data plane
def settings_for(art: Artifact, name: str, **kw: Any) -> Settings:
    return Settings(model_name=name, model_uri=art.uri, model_digest=art.digest, **kw)


def test_dataplane_dict_in_dict_out(artifacts: dict[str, Artifact]) -> None:
    art = artifacts["rf"]

    async def main() -> tuple[dict[str, Any], ...]:
        dp = DataPlane(settings_for(art, "forest"))
        assert dp.server_ready()[0] is False
        with pytest.raises(NotReady):
            dp.model("forest")
        await dp.start()
        state = await dp.wait_loaded()
        assert state.status == "Ready", state
        req = v2(np.asarray(art.X[:3]).ravel().tolist(), [3, 4], "FP64", id="r1",
                 outputs=[{"name": "predict"}, {"name": "predict_proba"}])
        out = await dp.infer_v2_dict("forest", None, req)
        versioned = await dp.infer_v2_dict("forest", "1", req)
        meta = dp.model_metadata("forest")
        await dp.stop()
        return out, versioned, meta

    out, versioned, meta = run(main())
    assert out == versioned
    assert out["model_name"] == "forest" and out["model_version"] == "1" and out["id"] == "r1"
    pred, proba = out["outputs"]
    assert pred["data"] == art.estimator.predict(np.asarray(art.X[:3])).tolist()
    assert proba["shape"] == [3, 3]
    assert np.allclose(np.reshape(proba["data"], (3, 3)),
                       art.estimator.predict_proba(np.asarray(art.X[:3])))
    assert meta["inputs"][0] == {"name": "x0", "datatype": "FP64", "shape": [-1]}
    assert meta["parameters"]["classes"] == [0, 1, 2]


def test_dataplane_not_found_and_not_ready(artifacts: dict[str, Artifact], tmp_path: Any) -> None:
    async def main() -> None:
        dp = DataPlane(Settings(model_name="m", model_uri=str(tmp_path / "missing")))
        await dp.start()
        state = await dp.wait_loaded()
        assert state.status == "Failed" and state.reason == "MissingArtifact"
        ok, body = dp.server_ready()
        assert not ok and body["reason"] == "MissingArtifact"
        ok, body = dp.model_ready("m")
        assert not ok and "not found" in body["message"].lower() + "not found"
        with pytest.raises(NotFound, match="'other' is not served here"):
            dp.model_ready("other")
        with pytest.raises(NotReady, match="is not ready"):
            await dp.infer_v2_dict("m", None, v2([1.0], [1, 1]))
        await dp.stop()

        good = DataPlane(settings_for(artifacts["lr"], "m"))
        await good.start()
        await good.wait_loaded()
        with pytest.raises(NotFound, match="has no version '7'"):
            good.model("m", "7")
        await good.stop()

    run(main())


def test_regression_outputs_floats(artifacts: dict[str, Artifact]) -> None:
    art = artifacts["ridge"]

    async def main() -> dict[str, Any]:
        dp = DataPlane(settings_for(art, "ridge"))
        await dp.start()
        await dp.wait_loaded()
        out = await dp.infer_v2_dict("ridge", "3", v2([1.0, 1.0, 1.0], [1, 3]))
        await dp.stop()
        return out

    out = run(main())
    assert out["outputs"][0]["datatype"] == "FP64"
    assert out["outputs"][0]["data"] == pytest.approx([2.0], abs=0.05)


def test_model_that_cannot_predict_is_never_ready(tmp_path: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    from .conftest import numeric_data, numeric_features, write_artifact

    X, y = numeric_data(n_features=4)
    # metadata lists 3 features, the model was fitted on 4: loading catches it
    art = write_artifact(tmp_path / "bad" / "1", LogisticRegression(), X, y,
                         numeric_features(3), "binary")

    async def main() -> None:
        dp = DataPlane(settings_for(art, "bad"))
        await dp.start()
        state = await dp.wait_loaded()
        assert state.status == "Failed" and state.reason == "FeatureMismatch", state
        assert "4 features" in state.message
        assert dp.batcher is None and dp.runtime is None
        await dp.stop()

    run(main())


# ---------------------------------------------------------------------------- hostile bodies
def _hostile_strings(n: int = 2_500, long: int = 40_000) -> list[str]:
    return ["a"] * (n - 1) + ["b" * long]


@pytest.mark.parametrize(("datatype", "shape_of"), [
    ("FP64", lambda n: [n // 4, 4]),
    ("INT64", lambda n: [n // 4, 4]),
    ("BOOL", lambda n: [n // 4, 4]),
    ("BYTES", lambda n: [n // 4, 4]),
])
def test_strings_never_become_a_fixed_width_array(runtimes: dict[str, ModelRuntime],
                                                  datatype: str, shape_of: Any) -> None:
    """A 50 KB body of short strings and one long one: refused, and decoding it allocates
    nothing near len(strings) x longest (which numpy's dtype inference would: ~400 MB)."""
    import tracemalloc

    strings = _hostile_strings()
    body = orjson.dumps(v2(strings, shape_of(len(strings)), datatype))
    tracemalloc.start()
    try:
        with pytest.raises(InferenceError) as err:
            decode_v2(runtimes["lr"], parse_json(body), 10_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 400 <= err.value.status < 500
    assert peak < 2_000_000, peak


@pytest.mark.parametrize("make", [
    lambda s: {"instances": [s[i : i + 4] for i in range(0, len(s), 4)]},
    lambda s: {"inputs": [s[i : i + 4] for i in range(0, len(s), 4)]},
    lambda s: {"instances": [{f"x{j}": s[i + j] for j in range(4)} for i in range(0, len(s), 4)]},
    lambda s: {"inputs": {f"x{j}": s[j::4] for j in range(4)}},
], ids=["instances", "inputs-rows", "dict-rows", "inputs-columns"])
def test_v1_hostile_strings_are_refused_cheaply(runtimes: dict[str, ModelRuntime],
                                                make: Any) -> None:
    import tracemalloc

    body = orjson.dumps(make(_hostile_strings()))
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


def test_long_strings_are_refused(runtimes: dict[str, ModelRuntime]) -> None:
    from modelfactory_serving.codec.tensors import Limits

    rt = runtimes["mixed"]
    obj = {"inputs": [
        {"name": "age", "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["n" * 101]},
    ]}
    with pytest.raises(BadRequest, match="string of 101 characters; this server takes at most 100"):
        decode_v2(rt, obj, 10, limits=Limits(max_string_chars=100))
    with pytest.raises(BadRequest, match="at most 100"):
        decode_v1(rt, {"instances": [[1.0, 1.0, "n" * 101]]}, 10, Limits(max_string_chars=100))


def test_v1_columnar_inputs(runtimes: dict[str, ModelRuntime]) -> None:
    mixed = runtimes["mixed"]
    d = decode_v1(mixed, {"inputs": {"city": ["nice", "lyon"], "age": [30, 40],
                                     "income": [1.5, 2.5]}}, 100)
    assert d.rows == 2 and d.batch[2].tolist() == ["nice", "lyon"]  # type: ignore[index]
    assert d.batch[0].tolist() == [30.0, 40.0]  # type: ignore[index]
    with pytest.raises(BadRequest, match="'income' has 2 values, other features have 1"):
        decode_v1(mixed, {"inputs": {"city": ["nice", "lyon"], "age": [30],
                                     "income": [1.5, 2.5]}}, 100)
    with pytest.raises(BadRequest, match=r"missing feature\(s\) \['income'\]"):
        decode_v1(mixed, {"inputs": {"city": ["nice"], "age": [30]}}, 100)


# ---------------------------------------------------------------------------- admission
def test_a_batch_that_cannot_be_formed_fails_every_request(runtimes: dict[str, ModelRuntime],
                                                         lr_rows: np.ndarray) -> None:
    class BrokenConcat(CountingRuntime):
        def concat(self, parts: list[Any]) -> Any:
            if len(parts) > 1:
                raise RuntimeError("columns do not line up")
            return parts[0]

    counting = BrokenConcat(runtimes["lr"])

    async def main() -> list[Any]:
        b = Batcher(counting, max_batch_size=32, max_latency_ms=5, inline=True)  # type: ignore[arg-type]
        b.start()
        out = await asyncio.wait_for(asyncio.gather(
            *(b.submit(lr_rows[i : i + 1], 1, False) for i in range(5)),
            return_exceptions=True), timeout=10)
        await b.stop()
        return out

    out = run(main())
    # Each request is answered: on its own when the merged batch could not be formed.
    assert all(not isinstance(r, BaseException) for r in out), out

    class AlwaysBroken(CountingRuntime):
        def concat(self, parts: list[Any]) -> Any:
            raise RuntimeError("columns do not line up")

        def predict(self, batch: Any, want_proba: bool) -> Any:
            raise RuntimeError("model is broken")

    async def broken() -> list[Any]:
        b = Batcher(AlwaysBroken(runtimes["lr"]), max_batch_size=32,  # type: ignore[arg-type]
                    max_latency_ms=5, inline=False)
        b.start()
        out = await asyncio.wait_for(asyncio.gather(
            *(b.submit(lr_rows[i : i + 1], 1, False) for i in range(5)),
            return_exceptions=True), timeout=10)
        await b.stop()
        return out

    failed = run(broken())
    assert all(isinstance(r, InferenceError) and r.status == 500 for r in failed), failed
    assert "model is broken" in failed[0].message


def test_the_queue_is_bounded_in_rows(runtimes: dict[str, ModelRuntime],
                                      lr_rows: np.ndarray) -> None:
    from modelfactory_serving.errors import Overloaded

    async def main() -> list[Any]:
        b = Batcher(runtimes["lr"], max_batch_size=4, max_latency_ms=0, inline=True,
                    max_queue_rows=6)
        b.start()
        # Submitted in one loop step: nothing is predicted until they are all queued.
        out = await asyncio.gather(*(b.submit(lr_rows[:3], 3, False) for _ in range(4)),
                                   return_exceptions=True)
        await b.stop()
        return out

    out = run(main())
    assert [isinstance(r, Overloaded) for r in out] == [False, False, True, True]
    assert out[2].status == 503 and out[2].retry_after >= 1
    assert "6 rows queued, the bound is 6" in out[2].message


def test_cancelled_gone_and_expired_requests_are_never_predicted(
        runtimes: dict[str, ModelRuntime], lr_rows: np.ndarray) -> None:
    from modelfactory_serving.errors import ClientGone, DeadlineExceeded

    counting = CountingRuntime(runtimes["lr"])
    drops: list[str] = []

    async def main() -> list[Any]:
        b = Batcher(counting, max_batch_size=64, max_latency_ms=0, inline=True,  # type: ignore[arg-type]
                    on_drop=drops.append)
        b.start()
        loop = asyncio.get_running_loop()
        cancelled = asyncio.ensure_future(b.submit(lr_rows[:5], 5, False))
        gone = b.submit(lr_rows[:7], 7, False, gone=lambda: True)
        expired = b.submit(lr_rows[:11], 11, False, deadline=loop.time() - 1)
        kept = b.submit(lr_rows[:2], 2, False, deadline=loop.time() + 60, gone=lambda: False)
        await asyncio.sleep(0)  # the first one is queued
        assert b.queued_rows == 5
        cancelled.cancel()
        await asyncio.sleep(0)
        assert b.queued_rows == 0
        out = await asyncio.gather(gone, expired, kept, return_exceptions=True)
        await b.stop()
        return out

    gone, expired, kept = run(main())
    assert isinstance(gone, ClientGone) and isinstance(expired, DeadlineExceeded)
    assert expired.status == 504
    assert kept.labels.shape == (2,)
    assert counting.calls == [2]
    assert drops == ["disconnected", "timeout"]


def test_large_batches_are_predicted_off_the_event_loop(runtimes: dict[str, ModelRuntime],
                                                       lr_rows: np.ndarray) -> None:
    from modelfactory_serving.batcher import PredictCost

    counting = CountingRuntime(runtimes["lr"])
    # 1 ms fixed, 0.1 ms per further row: 2 rows are cheap, 40 rows are not.
    cost = PredictCost.measured(0.001, 0.001 + 0.0001 * 63, 64)

    async def main() -> None:
        b = Batcher(counting, max_batch_size=64, max_latency_ms=0,  # type: ignore[arg-type]
                    cost=cost, inline_predict_ms=1.5)
        b.start()
        await b.submit(lr_rows[:2], 2, False)
        small = set(counting.threads)
        await b.submit(lr_rows[:40], 40, False)
        await b.stop()
        assert not any("predict" in t for t in small)
        assert any("predict" in t for t in counting.threads)

    run(main())
