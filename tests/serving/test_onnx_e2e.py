"""A real server process serving the compiled model: ONNX Runtime answers by default when the
version has a verified model.onnx, with scikit-learn's answers; spec.runtime picks either; a
missing or tampered compiled model is refused with the reason."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge

from modelfactory_artifacts.metadata import ArtifactMetadata, FeatureInfo, sha256_hex
from modelfactory_artifacts.onnx_model import ONNX_FILENAME
from modelfactory_training.onnx_export import compile_model
from modelfactory_training.pipeline import build_pipeline
from modelfactory_training.prepare import feature_kind
from modelfactory_training.store import ModelStore
from tests.serving.conftest import Server

pytestmark = pytest.mark.e2e


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 12, n),
            "city": pd.Series(rng.choice([f"c{i}" for i in range(30)], n), dtype="str"),
            "member": rng.random(n) < 0.4,
        }
    )
    df.loc[rng.random(n) < 0.05, "age"] = np.nan
    return df


def write(
    root: Path, estimator: Any, y: Any, task: str, compile_it: bool = True
) -> tuple[str, str, Any]:
    """Fit the trainer's pipeline and write it with the trainer's store (and compiler)."""
    X = frame(800, 1)
    feats = [
        FeatureInfo(name=c, dtype=str(X[c].dtype), kind=feature_kind(X[c].dtype)) for c in X.columns
    ]
    model = build_pipeline(
        estimator, {}, preprocessing=True, numeric=["age"], categorical=["city", "member"], seed=0
    ).fit(X, y(X))
    compiled = compile_model(model, frame(200, 2), feats, classifier=task != "regression")
    assert compiled.info.status == "verified", compiled.info.reason
    data = sio.dumps(model)
    classes = None if task == "regression" else [str(c) for c in model.classes_]
    meta = ArtifactMetadata(
        version=1,
        createdAt="2026-01-01T00:00:00Z",
        task=task,  # type: ignore[arg-type]
        modelSha256=sha256_hex(data),
        libraries={},
        features=feats,
        target={"name": "y", "classes": classes},  # type: ignore[arg-type]
        estimator=type(estimator).__name__,
        metric="accuracy",
        metrics={},
        bestParams={},
        trials=[],
        onnx=compiled.info if compile_it else None,
    )
    ModelStore.open(f"file://{root}").write(1, data, meta, compiled.data if compile_it else None)
    return str(root / "1"), meta.digest, model


def churn(X: pd.DataFrame) -> np.ndarray:
    return np.where(X["age"].fillna(40) + 10 * X["member"] > 45, "leave", "stay")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str, Any]]:
    root = tmp_path_factory.mktemp("compiled")
    return {
        "forest": write(root / "forest", RandomForestClassifier, churn, "binary"),
        "ridge": write(
            root / "ridge",
            Ridge,
            lambda X: X["age"].fillna(40).to_numpy() * 2.0 + X["member"],
            "regression",
        ),
        "plain": write(root / "plain", RandomForestClassifier, churn, "binary", compile_it=False),
    }


@pytest.fixture(scope="module")
def forest(module_server: Callable[..., Server], models: dict[str, Any]) -> Server:
    uri, digest, _ = models["forest"]
    return module_server("forest", uri, digest)


def hostile_rows() -> pd.DataFrame:
    rows = frame(60, 9).astype({"city": object})
    rows.loc[0:9, "city"] = "never-seen"
    rows.loc[10:14, "age"] = np.nan
    rows.loc[15:19, "age"] = [1e30, -1e30, 0.0, 1e-300, 120.0]
    return rows


def instances(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {"age": None if pd.isna(a) else float(a), "city": c, "member": bool(m)}
        for a, c, m in zip(rows["age"], rows["city"], rows["member"], strict=True)
    ]


def v2_body(rows: pd.DataFrame) -> dict[str, Any]:
    n = len(rows)
    return {
        "inputs": [
            {
                "name": "age",
                "shape": [n],
                "datatype": "FP64",
                "data": [None if pd.isna(a) else float(a) for a in rows["age"]],
            },
            {"name": "city", "shape": [n], "datatype": "BYTES", "data": rows["city"].tolist()},
            {"name": "member", "shape": [n], "datatype": "BOOL", "data": rows["member"].tolist()},
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }


def test_auto_serves_the_compiled_model_with_sklearns_answers(
    forest: Server, models: dict[str, Any]
) -> None:
    _, _, model = models["forest"]
    with forest.client() as c:
        meta = c.get("/v2/models/forest").json()
        assert meta["platform"] == "onnx"
        assert meta["parameters"]["runtime"] == "onnx" and meta["parameters"]["onnx"] == "verified"
        rows = hostile_rows()
        expected = model.predict(rows).tolist()
        r = c.post("/v1/models/forest:predict", json={"instances": instances(rows)})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == expected
        r = c.post("/v2/models/forest/infer", json=v2_body(rows))
        assert r.status_code == 200, r.text
        pred, proba = r.json()["outputs"]
        assert pred["data"] == expected
        np.testing.assert_allclose(
            np.reshape(proba["data"], (len(rows), 2)), model.predict_proba(rows), atol=1e-4
        )
        metrics = c.get("/metrics").text
    assert "modelfactory_model_info{" in metrics


def test_sklearn_runtime_on_request(
    start_server: Callable[..., Server], models: dict[str, Any]
) -> None:
    uri, digest, model = models["forest"]
    server = start_server("forest", uri, digest, runtime="sklearn")
    rows = hostile_rows()
    with server.client() as c:
        assert c.get("/v2/models/forest").json()["platform"] == "sklearn"
        r = c.post("/v1/models/forest:predict", json={"instances": instances(rows)})
    assert r.json()["predictions"] == model.predict(rows).tolist()


def test_regression_values_agree(
    start_server: Callable[..., Server], models: dict[str, Any]
) -> None:
    uri, digest, model = models["ridge"]
    server = start_server("ridge", uri, digest, runtime="onnx")
    rows = frame(40, 5)
    with server.client() as c:
        r = c.post("/v1/models/ridge:predict", json={"instances": instances(rows)})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], model.predict(rows), rtol=1e-4)


def test_onnx_runtime_without_a_compiled_model_is_refused(
    assert_not_ready: Callable[..., None],
    start_server: Callable[..., Server],
    models: dict[str, Any],
) -> None:
    uri, digest, _ = models["plain"]
    server = start_server("plain", uri, digest, runtime="onnx", wait_ready=False)
    assert_not_ready(server, "OnnxUnavailable", "has no verified ONNX model")
    # auto falls back to scikit-learn for the same version.
    fallback = start_server("plain", uri, digest)
    assert httpx.get(fallback.url + "/v2/models/plain").json()["platform"] == "sklearn"


def test_tampered_compiled_model_is_refused(
    assert_not_ready: Callable[..., None],
    start_server: Callable[..., Server],
    models: dict[str, Any],
    tmp_path: Path,
) -> None:
    uri, digest, _ = models["forest"]
    copy = tmp_path / "forest" / "1"
    shutil.copytree(uri, copy)
    graph = bytearray((copy / ONNX_FILENAME).read_bytes())
    graph[len(graph) // 2] ^= 0xFF
    (copy / ONNX_FILENAME).write_bytes(bytes(graph))
    server = start_server("forest", str(copy), digest, wait_ready=False)
    assert_not_ready(server, "DigestMismatch", f"{ONNX_FILENAME} has sha256:")
    # Asking for scikit-learn never reads the compiled file.
    fine = start_server("forest", str(copy), digest, runtime="sklearn")
    assert httpx.get(fine.url + "/v2/health/ready").status_code == 200
