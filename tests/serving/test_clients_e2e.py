"""Standard clients, unchanged: Triton's tritonclient.http (v2, JSON and binary tensors) and
KServe's InferenceRESTClient (v1 and v2).

The kserve package pins versions of pandas, protobuf, grpcio and psutil that conflict with the
rest of this workspace's environment, so its client runs in its own virtualenv (.venv-kserve,
made by hack/install-python.sh, or KSERVE_PYTHON) in a subprocess; without one that test is
skipped, or fails with CI set (as .ci/run sets it): CI must run every client.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from .conftest import Artifact, Server, in_ci

pytestmark = pytest.mark.e2e

KSERVE_PYTHON = os.environ.get(
    "KSERVE_PYTHON", str(Path(__file__).resolve().parents[2] / ".venv-kserve" / "bin" / "python")
)


@pytest.fixture(scope="module")
def forest(module_server: Callable[..., Server], artifacts: dict[str, Artifact]) -> Server:
    art = artifacts["rf"]
    return module_server("forest", art.uri, art.digest)


@pytest.fixture(scope="module")
def churn(module_server: Callable[..., Server], artifacts: dict[str, Artifact]) -> Server:
    art = artifacts["mixed"]
    return module_server("churn", art.uri, art.digest)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http(forest: Server, artifacts: dict[str, Artifact], binary: bool) -> None:
    import tritonclient.http as httpclient

    art = artifacts["rf"]
    X = np.asarray(art.X[:6], dtype=np.float32)
    client = httpclient.InferenceServerClient(url=forest.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("forest")
        assert client.is_model_ready("forest", "1")
        assert client.get_server_metadata()["name"] == "modelfactory-serving"
        meta = client.get_model_metadata("forest")
        assert meta["outputs"][1]["name"] == "predict_proba"

        inp = httpclient.InferInput("input-0", list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput("predict", binary_data=binary),
            httpclient.InferRequestedOutput("predict_proba", binary_data=binary),
        ]
        result = client.infer("forest", [inp], outputs=outputs, request_id="t-1")
        assert result.get_response()["id"] == "t-1"
        assert result.as_numpy("predict").tolist() == art.estimator.predict(X).tolist()
        assert np.allclose(result.as_numpy("predict_proba"), art.estimator.predict_proba(X))

        # No outputs named: the client asks for every default output in binary form.
        result = client.infer("forest", [inp], model_version="1")
        assert result.as_numpy("predict").tolist() == art.estimator.predict(X).tolist()
    finally:
        client.close()


def test_tritonclient_per_feature_bytes(churn: Server, artifacts: dict[str, Artifact]) -> None:
    import tritonclient.http as httpclient

    art = artifacts["mixed"]
    df = art.X.iloc[:5]
    client = httpclient.InferenceServerClient(url=churn.url.removeprefix("http://"))
    try:
        inputs = []
        for name, datatype, values in (
            ("age", "FP64", df["age"].to_numpy()),
            ("income", "FP64", df["income"].to_numpy()),
            ("city", "BYTES", df["city"].to_numpy().astype(object)),
        ):
            inp = httpclient.InferInput(name, [len(df)], datatype)
            inp.set_data_from_numpy(values, binary_data=True)
            inputs.append(inp)
        result = client.infer("churn", inputs, outputs=[httpclient.InferRequestedOutput("predict")])
        got = [v.decode() for v in result.as_numpy("predict").tolist()]
        assert got == art.estimator.predict(df).tolist()
    finally:
        client.close()


def test_tritonclient_reports_errors(forest: Server) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(url=forest.url.removeprefix("http://"))
    try:
        inp = httpclient.InferInput("input-0", [1, 3], "FP32")
        inp.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
        with pytest.raises(InferenceServerException, match="has 3 features"):
            client.infer("forest", [inp])
    finally:
        client.close()


KSERVE_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    import numpy as np
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    url, rows = sys.argv[1], json.loads(sys.argv[2])

    async def main():
        out = {}
        v1 = InferenceRESTClient(RESTConfig(protocol="v1"))
        out["v1_live"] = await v1.is_server_live(url)
        out["v1_ready"] = await v1.is_model_ready(url, "forest")
        out["v1"] = await v1.infer(url, {"instances": rows}, model_name="forest")
        await v1.close()
        v2 = InferenceRESTClient(RESTConfig(protocol="v2"))
        out["v2_live"] = await v2.is_server_live(url)
        out["v2_ready"] = await v2.is_server_ready(url)
        out["v2_model_ready"] = await v2.is_model_ready(url, "forest")
        X = np.asarray(rows, dtype=np.float32)
        for binary in (False, True):
            inp = InferInput("input-0", list(X.shape), "FP32")
            inp.set_data_from_numpy(X, binary_data=binary)
            res = await v2.infer(url, InferRequest("forest", [inp]), model_name="forest")
            out[f"v2_binary_{binary}"] = res.outputs[0].as_numpy().tolist()
        await v2.close()
        print(json.dumps(out))

    asyncio.run(main())
""")


def test_kserve_client(forest: Server, artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    if not Path(KSERVE_PYTHON).exists():
        message = (
            f"no kserve virtualenv at {KSERVE_PYTHON}: hack/install-python.sh makes it "
            "(or set KSERVE_PYTHON)"
        )
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    art = artifacts["rf"]
    X = np.asarray(art.X[:4], dtype=np.float32)
    script = tmp_path / "kserve_client.py"
    script.write_text(KSERVE_SCRIPT)
    res = subprocess.run(
        [KSERVE_PYTHON, str(script), forest.url, json.dumps(X.tolist())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    expected = art.estimator.predict(X).tolist()
    assert out["v1_live"] and out["v1_ready"] and out["v2_live"] and out["v2_ready"]
    assert out["v2_model_ready"]
    assert out["v1"] == {"predictions": expected}
    assert out["v2_binary_False"] == expected
    assert out["v2_binary_True"] == expected
