"""The transport-free data plane: dict in, dict out; not found, not ready, never ready."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from modelfactory_serving.dataplane import DataPlane
from modelfactory_serving.errors import NotFound, NotReady
from modelfactory_serving.settings import Settings

from .conftest import Artifact

pytestmark = pytest.mark.unit


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def settings_for(art: Artifact, name: str, **kw: Any) -> Settings:
    return Settings(model_name=name, model_uri=art.uri, model_digest=art.digest, **kw)


def test_dataplane_dict_in_dict_out(artifacts: dict[str, Artifact], v2_request: Any) -> None:
    art = artifacts["rf"]

    async def main() -> tuple[dict[str, Any], ...]:
        dp = DataPlane(settings_for(art, "forest"))
        assert dp.server_ready()[0] is False
        with pytest.raises(NotReady):
            dp.model("forest")
        await dp.start()
        state = await dp.wait_loaded()
        assert state.status == "Ready", state
        req = v2_request(
            np.asarray(art.X[:3]).ravel().tolist(),
            [3, 4],
            "FP64",
            id="r1",
            outputs=[{"name": "predict"}, {"name": "predict_proba"}],
        )
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
    assert np.allclose(
        np.reshape(proba["data"], (3, 3)), art.estimator.predict_proba(np.asarray(art.X[:3]))
    )
    assert meta["inputs"][0] == {"name": "x0", "datatype": "FP64", "shape": [-1]}
    assert meta["parameters"]["classes"] == [0, 1, 2]


def test_dataplane_not_found_and_not_ready(
    artifacts: dict[str, Artifact], tmp_path: Any, v2_request: Any
) -> None:
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
            await dp.infer_v2_dict("m", None, v2_request([1.0], [1, 1]))
        await dp.stop()

        good = DataPlane(settings_for(artifacts["lr"], "m"))
        await good.start()
        await good.wait_loaded()
        with pytest.raises(NotFound, match="has no version '7'"):
            good.model("m", "7")
        await good.stop()

    run(main())


def test_regression_outputs_floats(artifacts: dict[str, Artifact], v2_request: Any) -> None:
    art = artifacts["ridge"]

    async def main() -> dict[str, Any]:
        dp = DataPlane(settings_for(art, "ridge"))
        await dp.start()
        await dp.wait_loaded()
        out = await dp.infer_v2_dict("ridge", "3", v2_request([1.0, 1.0, 1.0], [1, 3]))
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
    art = write_artifact(
        tmp_path / "bad" / "1", LogisticRegression(), X, y, numeric_features(3), "binary"
    )

    async def main() -> None:
        dp = DataPlane(settings_for(art, "bad"))
        await dp.start()
        state = await dp.wait_loaded()
        assert state.status == "Failed" and state.reason == "FeatureMismatch", state
        assert "4 features" in state.message
        assert dp.batcher is None and dp.runtime is None
        await dp.stop()

    run(main())
