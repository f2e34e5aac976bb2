"""Several worker processes behind one port: all serve, and /metrics adds them up."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .conftest import Artifact, Server

pytestmark = pytest.mark.e2e


def test_two_workers_serve_and_share_metrics(
    start_server: Callable[..., Server], artifacts: dict[str, Artifact]
) -> None:
    art = artifacts["lr"]
    server = start_server("lr", art.uri, art.digest, workers=2)
    body = {"instances": [[0.1, 0.2, 0.3, 0.4]]}

    def call(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=server.url, timeout=30) as c:  # new connection each time
            r = c.post("/v1/models/lr:predict", json=body)
            return r.status_code, r.headers["x-request-id"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(60)))
    assert {status for status, _ in results} == {200}
    # Both workers loaded the model and logged it.
    server.wait_state(
        lambda: (
            len({rec["pid"] for rec in server.log_records() if rec.get("msg") == "model ready"})
            == 2
        ),
        timeout=30,
    )
    text = httpx.get(server.url + "/metrics").text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith(
            'modelfactory_http_requests_total{method="POST",route="/v1/models/{name}:predict"'
        )
    )
    assert float(line.split()[-1]) == 60.0
    assert 'modelfactory_model_ready{model="lr"} 1.0' in text
