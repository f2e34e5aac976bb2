"""A real server under more work than it can do: bounded queue (503 + Retry-After), deadlines
(504), requests of clients that left are not predicted, probes still answered."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from .conftest import Artifact, Server

pytestmark = pytest.mark.e2e

ROWS = 10_000


def big_body(rows: int = ROWS) -> bytes:
    data = np.random.default_rng(0).normal(size=(rows, 4)).round(4)
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [rows, 4],
                    "datatype": "FP64",
                    "data": data.ravel().tolist(),
                }
            ]
        }
    ).encode()


SMALL = json.dumps(
    {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [0.1, 0.2, 0.3, 0.4]}
        ]
    }
).encode()


def post(server: Server, body: bytes, timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{server.name}/infer", content=body, timeout=timeout)


def metric(server: Server, needle: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(needle + " "):
            return float(line.split()[-1])
    return 0.0


def test_full_queue_answers_503_with_retry_after_and_probes_still_answer(
    start_server: Callable[..., Server], slow: Artifact
) -> None:
    server = start_server(
        "slow",
        slow.uri,
        slow.digest,
        max_batch_size=1,
        max_rows=ROWS,
        max_queue_rows=ROWS,
        timeout_seconds=60,
    )
    body = big_body()
    probes: list[tuple[int, float]] = []
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(post, server, body) for _ in range(6)]
        while not all(f.done() for f in futures):
            for path in ("/v2/health/live", "/v2/health/ready"):
                started = time.perf_counter()
                # kubelet's probes in the chart time out after 2 s
                r = httpx.get(server.url + path, timeout=2)
                probes.append((r.status_code, time.perf_counter() - started))
            time.sleep(0.05)
        answers = [f.result() for f in futures]
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and 503 in statuses, statuses
    refused = next(r for r in answers if r.status_code == 503)
    assert int(refused.headers["retry-after"]) >= 1
    assert "at capacity" in refused.json()["error"]
    assert probes and all(code == 200 for code, _ in probes), probes
    assert metric(server, 'modelfactory_requests_rejected_total{reason="queue_full"}') >= 1


def test_a_request_past_its_deadline_gets_504(
    start_server: Callable[..., Server], slow: Artifact
) -> None:
    server = start_server(
        "slow",
        slow.uri,
        slow.digest,
        max_batch_size=1,
        max_rows=ROWS,
        max_queue_rows=10 * ROWS,
        timeout_seconds=0.3,
    )
    body = big_body()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(server, body), range(4)))
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 504}, statuses
    assert 504 in statuses, statuses
    late = next(r for r in answers if r.status_code == 504)
    assert "request timeout of 0.3 s" in late.json()["error"]
    # Once the queue drained, a small request is answered in time again.
    server.wait_state(lambda: post(server, SMALL).status_code == 200, timeout=30)


def test_requests_of_clients_that_left_are_not_predicted(
    start_server: Callable[..., Server], slow: Artifact
) -> None:
    server = start_server(
        "slow",
        slow.uri,
        slow.digest,
        max_batch_size=1,
        max_rows=ROWS,
        max_queue_rows=10 * ROWS,
        timeout_seconds=60,
        max_latency_ms=0,
    )
    predicts = 'modelfactory_batch_rows_count{model="slow"}'
    before = metric(server, predicts)
    body = big_body()
    with ThreadPoolExecutor(8) as pool:
        busy = [pool.submit(post, server, body) for _ in range(3)]
        # The model is busy with the big requests: small ones queue behind them, and their
        # clients give up after 50 ms.
        server.wait_state(lambda: metric(server, predicts) >= before + 1, timeout=30)
        impatient = list(pool.map(lambda _: _post_and_leave(server), range(5)))
        assert all(r == "left" for r in impatient), impatient
        assert all(f.result().status_code == 200 for f in busy)
    server.wait_state(
        lambda: metric(server, 'modelfactory_requests_rejected_total{reason="disconnected"}') == 5,
        timeout=20,
    )
    assert metric(server, predicts) - before == 3  # only the big requests reached the model
    assert post(server, SMALL).status_code == 200


def _post_and_leave(server: Server) -> str:
    try:
        post(server, SMALL, timeout=0.05)
    except httpx.TimeoutException:
        return "left"
    return "answered"
