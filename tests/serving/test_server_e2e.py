"""A real modelfactory-serve process on 127.0.0.1: protocols, probabilities, validation over HTTP,
metrics, request ids, OpenAPI."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from .conftest import Artifact, Server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=[True, False], ids=["direct", "fastapi-router"])
def rf(
    module_server: Callable[..., Server],
    artifacts: dict[str, Artifact],
    request: pytest.FixtureRequest,
) -> Server:
    """Inference requests are served straight from the middleware by default; the same handler
    behind FastAPI's router must answer identically."""
    art = artifacts["rf"]
    return module_server(
        "forest",
        art.uri,
        art.digest,
        max_body_bytes=4096,
        max_rows=50,
        access_log="true",
        direct_inference=str(request.param).lower(),
    )


@pytest.fixture(scope="module")
def mixed(module_server: Callable[..., Server], artifacts: dict[str, Artifact]) -> Server:
    art = artifacts["mixed"]
    return module_server("churn", art.uri, art.digest, model_version="v7")


def infer(server: Server, body: Any, path: str | None = None, **kw: Any) -> httpx.Response:
    path = path or f"/v2/models/{server.name}/infer"
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return httpx.post(server.url + path, content=body, timeout=30, **kw)


def rows(art: Artifact, n: int) -> np.ndarray:
    return np.asarray(art.X[:n], dtype=np.float64)


# ---------------------------------------------------------------------------- v2
def test_health_and_metadata(rf: Server) -> None:
    with rf.client() as c:
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get("/").json() == {"status": "alive"}
        meta = c.get("/v2").json()
        assert meta["name"] == "modelfactory-serving" and "binary_tensor_data" in meta["extensions"]
        model = c.get("/v2/models/forest").json()
        assert model["versions"] == ["1"] and model["platform"] == "sklearn"
        assert [o["name"] for o in model["outputs"]] == ["predict", "predict_proba"]
        assert c.get("/v2/models/forest/versions/1").json() == model
        assert c.get("/v2/models/forest/ready").json()["ready"] is True
        assert c.get("/v2/models/forest/versions/1/ready").status_code == 200


def test_v2_predict_and_probabilities(rf: Server, artifacts: dict[str, Artifact]) -> None:
    art = artifacts["rf"]
    X = rows(art, 5)
    body = {
        "id": "req-1",
        "inputs": [
            {
                "name": "input-0",
                "shape": [5, 4],
                "datatype": "FP32",
                "data": X.astype(np.float32).ravel().tolist(),
            }
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    for path in ("/v2/models/forest/infer", "/v2/models/forest/versions/1/infer"):
        r = infer(rf, body, path)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["id"] == "req-1" and out["model_version"] == "1"
        pred, proba = out["outputs"]
        X32 = X.astype(np.float32)
        assert pred == {
            "name": "predict",
            "datatype": "INT64",
            "shape": [5],
            "data": art.estimator.predict(X32).tolist(),
        }
        assert proba["shape"] == [5, 3] and proba["datatype"] == "FP64"
        assert np.allclose(np.reshape(proba["data"], (5, 3)), art.estimator.predict_proba(X32))


def test_v2_per_feature_inputs_with_categories(
    mixed: Server, artifacts: dict[str, Artifact]
) -> None:
    art = artifacts["mixed"]
    df = art.X.iloc[:4]
    body = {
        "inputs": [
            {"name": "city", "shape": [4], "datatype": "BYTES", "data": df["city"].tolist()},
            {"name": "age", "shape": [4], "datatype": "FP64", "data": df["age"].tolist()},
            {"name": "income", "shape": [4, 1], "datatype": "FP64", "data": df["income"].tolist()},
        ],
        "outputs": [{"name": "predict_proba"}, {"name": "predict"}],
    }
    r = infer(mixed, body)
    assert r.status_code == 200, r.text
    proba, pred = r.json()["outputs"]
    assert pred["datatype"] == "BYTES"
    assert pred["data"] == art.estimator.predict(df).tolist()
    assert np.allclose(np.reshape(proba["data"], (4, 2)), art.estimator.predict_proba(df))
    assert r.json()["model_version"] == "v7"
    assert infer(mixed, body, "/v2/models/churn/versions/v7/infer").status_code == 200


def test_unknown_category_is_422_and_names_it(mixed: Server) -> None:
    body = {"instances": [{"age": 30, "income": 10, "city": "atlantis"}]}
    r = infer(mixed, body, "/v1/models/churn:predict")
    assert r.status_code == 422
    assert "atlantis" in r.json()["error"]


# ---------------------------------------------------------------------------- v1
def test_v1_predict(rf: Server, artifacts: dict[str, Artifact]) -> None:
    art = artifacts["rf"]
    X = rows(art, 3)
    with rf.client() as c:
        assert c.get("/v1/models").json() == {"models": ["forest"]}
        assert c.get("/v1/models/forest").json() == {"name": "forest", "ready": True}
        r = c.post("/v1/models/forest:predict", json={"instances": X.tolist()})
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": art.estimator.predict(X).tolist()}
        objs = [{f"x{i}": v for i, v in enumerate(row)} for row in X.tolist()]
        assert c.post("/v1/models/forest:predict", json={"instances": objs}).json() == r.json()


def test_v1_mixed_rows(mixed: Server, artifacts: dict[str, Artifact]) -> None:
    df = artifacts["mixed"].X.iloc[:3]
    r = infer(
        mixed,
        {"instances": df[["age", "income", "city"]].values.tolist()},
        "/v1/models/churn:predict",
    )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == artifacts["mixed"].estimator.predict(df).tolist()


# ---------------------------------------------------------------------------- validation
GOOD = {
    "inputs": [
        {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [0.1, 0.2, 0.3, 0.4]}
    ]
}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ('{"inputs": [', 400, "malformed JSON"),
        ("", 400, "malformed JSON"),
        ([1, 2], 400, "JSON object"),
        (
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}
                ]
            },
            400,
            "has 3 features, model 'forest' takes 4",
        ),
        (
            {
                "inputs": [
                    {"name": "input-0", "shape": [4], "datatype": "FP64", "data": [1, 2, 3, 4]}
                ]
            },
            400,
            "must be [rows, 4]",
        ),
        (
            {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP99", "data": [1] * 4}]},
            400,
            "datatype 'FP99'",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [1, 4],
                        "datatype": "FP32",
                        "data": ["a", "b", "c", "d"],
                    }
                ]
            },
            400,
            "needs numbers",
        ),
        (
            {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [1] * 4}]},
            400,
            "data has 4 elements, shape [2, 4] needs 8",
        ),
        (
            '{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", '
            '"data": [1, 2, Infinity, 4]}]}',
            400,
            "feature 'x2' is infinite",
        ),
        (
            {
                "inputs": [
                    {"name": "input-0", "shape": [51, 4], "datatype": "FP64", "data": [0.5] * 204}
                ]
            },
            413,
            "too many rows: 51",
        ),
        ({**GOOD, "outputs": [{"name": "explain"}]}, 400, "unknown output 'explain'"),
    ],
)
def test_v2_bad_requests(rf: Server, body: Any, status: int, fragment: str) -> None:
    r = infer(rf, body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


def test_nan_reaches_models_that_handle_missing_values(rf: Server) -> None:
    # scikit-learn forests route missing values; the warm-up found that out (LR refuses them,
    # see test_dataplane).
    assert httpx.get(rf.url + "/v2/models/forest").json()["parameters"]["accepts_nan"] is True
    r = infer(
        rf,
        '{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", '
        '"data": [1, NaN, 3, null]}]}',
    )
    assert r.status_code == 200, r.text


def test_body_too_large_is_refused_before_parsing(rf: Server) -> None:
    big = b'{"inputs": [' + b" " * 5000 + b"]}"
    r = infer(rf, big)
    assert r.status_code == 413 and "limit is 4096" in r.json()["error"]

    def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1000

    r = httpx.post(rf.url + "/v2/models/forest/infer", content=chunks(), timeout=30)
    assert r.status_code == 413


def test_gzip_body(rf: Server) -> None:
    r = infer(rf, gzip.compress(json.dumps(GOOD).encode()), headers={"content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    bomb = gzip.compress(b" " * 100_000)
    r = infer(rf, bomb, headers={"content-encoding": "gzip"})
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("method", "path", "status", "fragment"),
    [
        ("POST", "/v2/models/nope/infer", 404, "'nope' is not served here"),
        ("POST", "/v2/models/forest/versions/9/infer", 404, "no version '9'"),
        ("GET", "/v2/models/nope", 404, "not served"),
        ("GET", "/v2/models/nope/ready", 404, "not served"),
        ("GET", "/v2/models/forest/versions/2", 404, "no version '2'"),
        ("POST", "/v1/models/nope:predict", 404, "not served"),
        ("GET", "/v1/models/nope", 404, "not served"),
        ("GET", "/v3/anything", 404, "Not Found"),
        ("DELETE", "/v2/models/forest/infer", 405, "Method Not Allowed"),
    ],
)
def test_unknown_routes_models_and_versions(
    rf: Server, method: str, path: str, status: int, fragment: str
) -> None:
    r = httpx.request(method, rf.url + path, content=json.dumps(GOOD), timeout=30)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


def test_bad_requests_do_not_hurt_the_server(rf: Server) -> None:
    junk = [
        b"\xff\xfe",
        b"{}" * 3000,
        b'{"inputs": [{"name": 1}]}',
        b"[" * 2000 + b"]" * 2000,
        b'{"inputs": [{"name": "input-0", "shape": [99999999999, 4], "datatype": "FP32",'
        b' "data": [1]}]}',
    ]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda b: infer(rf, b).status_code, junk * 4))
    assert all(400 <= s < 500 for s in statuses), statuses
    assert infer(rf, GOOD).status_code == 200


# ---------------------------------------------------------------------------- observability
def test_request_id_is_honoured_and_logged(rf: Server) -> None:
    r = infer(rf, GOOD, headers={"x-request-id": "trace-abc-123"})
    assert r.headers["x-request-id"] == "trace-abc-123"
    generated = infer(rf, GOOD).headers["x-request-id"]
    assert len(generated) == 32
    rf.wait_state(
        lambda: any(rec.get("request_id") == "trace-abc-123" for rec in rf.log_records()),
        timeout=10,
    )
    access = [rec for rec in rf.log_records() if rec.get("request_id") == "trace-abc-123"]
    assert access[0]["status"] == 200 and access[0]["route"] == "/v2/models/{name}/infer"


def test_metrics(rf: Server) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: infer(rf, GOOD).status_code, range(64)))
    infer(rf, b"{")
    text = httpx.get(rf.url + "/metrics").text
    for needle in (
        'modelfactory_http_requests_total{method="POST",route="/v2/models/{name}/infer",'
        'status="200"}',
        'modelfactory_http_requests_total{method="POST",route="/v2/models/{name}/infer",'
        'status="400"}',
        "modelfactory_http_request_duration_seconds_bucket",
        'modelfactory_batch_rows_count{model="forest"}',
        'modelfactory_batch_queue_rows{model="forest"}',
        "modelfactory_http_requests_in_flight",
        'modelfactory_model_load_seconds{model="forest"}',
        'modelfactory_model_info{digest="sha256:',
        'modelfactory_model_ready{model="forest"} 1.0',
    ):
        assert needle in text, needle
    batches = float(text.split('modelfactory_batch_rows_count{model="forest"} ')[1].split()[0])
    served = float(text.split('modelfactory_batch_rows_sum{model="forest"} ')[1].split()[0])
    assert batches < served  # concurrent requests were merged


def test_openapi_and_docs(rf: Server) -> None:
    doc = httpx.get(rf.url + "/openapi.json").json()
    for path in (
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/v1/models/{name}:predict",
        "/v2/health/ready",
        "/v2/models/{name}/ready",
    ):
        assert path in doc["paths"], path
    assert "InferenceRequest" in doc["components"]["schemas"]
    assert httpx.get(rf.url + "/docs").status_code == 200


# ---------------------------------------------------------------------------- protocol
def test_server_metadata_lists_only_extensions_it_has(rf: Server) -> None:
    assert httpx.get(rf.url + "/v2").json()["extensions"] == ["binary_tensor_data"]


def test_outputs_omitted_predict_proba_on_request(
    rf: Server, artifacts: dict[str, Artifact]
) -> None:
    art = artifacts["rf"]
    X = rows(art, 2)
    base = {
        "inputs": [
            {"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": X.ravel().tolist()}
        ]
    }
    r = infer(rf, base)
    assert [o["name"] for o in r.json()["outputs"]] == ["predict"]
    r = infer(rf, {**base, "outputs": [{"name": "predict_proba"}]})
    (proba,) = r.json()["outputs"]
    assert proba["name"] == "predict_proba" and proba["shape"] == [2, 3]
    assert np.allclose(np.reshape(proba["data"], (2, 3)), art.estimator.predict_proba(X))
    meta = httpx.get(rf.url + "/v2/models/forest").json()
    assert {o["name"] for o in meta["outputs"]} == {"predict", "predict_proba"}


def test_nested_data_must_match_shape(rf: Server) -> None:
    ok = {
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [[1, 2, 3, 4]]}]
    }
    assert infer(rf, ok).status_code == 200
    wrong = {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [[1], [2], [3], [4]]}
        ]
    }
    r = infer(rf, wrong)
    assert r.status_code == 400 and "does not match shape [1, 4]" in r.json()["error"]


def test_v1_columnar_inputs(mixed: Server, artifacts: dict[str, Artifact]) -> None:
    df = artifacts["mixed"].X.iloc[:3]
    body = {"inputs": {c: df[c].tolist() for c in ("city", "age", "income")}}
    r = infer(mixed, body, "/v1/models/churn:predict")
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == artifacts["mixed"].estimator.predict(df).tolist()
