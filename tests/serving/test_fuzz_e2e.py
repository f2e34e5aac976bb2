"""A bounded schemathesis run over the server's own OpenAPI document: no input yields a 5xx."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import Artifact, Server

pytestmark = pytest.mark.e2e

ST = Path(sys.executable).parent / "st"


@pytest.mark.parametrize("model", ["rf", "mixed"])
def test_openapi_fuzz_finds_no_server_error(
    start_server: Callable[..., Server], artifacts: dict[str, Artifact], tmp_path: Path, model: str
) -> None:
    art = artifacts[model]
    server = start_server(model, art.uri, art.digest, max_body_bytes=65536, max_rows=64)
    res = subprocess.run(
        [
            str(ST),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "100",
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "20261121",
            "--request-timeout",
            "20",
            "--report-dir",
            str(tmp_path / "report"),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # schemathesis keeps a cache directory in its working directory
    )
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    # The server survived and still answers.
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200
    text = httpx.get(server.url + "/metrics").text
    assert 'status="500"' not in text
    # The run reached the model, not only the validators: the schema's examples fit it.
    assert 'route="/v2/models/{name}/infer",status="200"' in text
    assert 'route="/v1/models/{name}:predict",status="200"' in text
