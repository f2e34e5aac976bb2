"""The health listener: probes answered on a port of their own, off the event loop, so a server
whose event loop is busy predicting still answers them at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.conftest import eventually

from .conftest import Artifact, Server, free_port

pytestmark = pytest.mark.e2e

ROWS = 10_000  # a predict of this many rows by the `slow` model holds the event loop ~0.3 s


def probe(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    r = httpx.get(url, timeout=5)
    return r.status_code, time.perf_counter() - started


def test_health_port_answers_while_the_event_loop_is_blocked(
    start_server: Callable[..., Server], slow: Artifact, v2_request: Any
) -> None:
    health = free_port()
    # Predict inline: each 10,000-row request holds the event loop for a good fraction of a
    # second, so the main port's probes wait behind it; the health port's must not.
    server = start_server(
        "slow",
        slow.uri,
        slow.digest,
        max_batch_size=ROWS,
        max_rows=ROWS,
        max_queue_rows=4 * ROWS,
        predict_mode="inline",
        timeout_seconds=60,
        health_port=health,
    )
    side = f"http://127.0.0.1:{health}"
    assert httpx.get(side + "/v2/health/ready").json() == {"ready": True}
    assert httpx.get(side + "/v2/health/live").json() == {"live": True}
    assert httpx.get(side + "/metrics").status_code == 404
    data = np.random.default_rng(0).normal(size=(ROWS, 4)).round(4).ravel().tolist()
    body = orjson.dumps(v2_request(data, [ROWS, 4]))
    infer = f"{server.url}/v2/models/{server.name}/infer"

    def post(server: Server, body: bytes) -> httpx.Response:
        return httpx.post(infer, content=body, timeout=60)

    side_probes: list[tuple[int, float]] = []
    main_probes: list[tuple[int, float]] = []
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(post, server, body) for _ in range(4)]
        main = pool.submit(lambda: [probe(server.url + "/v2/health/ready") for _ in range(5)])
        while not all(f.done() for f in futures):
            for path in ("/v2/health/live", "/v2/health/ready"):
                side_probes.append(probe(side + path))
            time.sleep(0.02)
        main_probes = main.result()
        assert all(f.result().status_code == 200 for f in futures)
    assert all(code == 200 for code, _ in side_probes), side_probes
    side_worst = max(s for _, s in side_probes)
    main_worst = max(s for _, s in main_probes)
    # The main port's probes waited for predicts; the health port's did not.
    assert main_worst > 0.1, main_probes
    assert side_worst < main_worst, (side_probes, main_probes)


def test_health_port_says_not_ready_with_the_reason(
    start_server: Callable[..., Server], tmp_path: object
) -> None:
    health = free_port()
    server = start_server(
        "missing", "file:///nonexistent/model/1", wait_ready=False, health_port=health
    )
    side = f"http://127.0.0.1:{health}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.get(side + "/v2/health/ready")
        if r.json().get("reason") != "Loading":
            break
        time.sleep(0.1)
    main = httpx.get(server.url + "/v2/health/ready")
    assert r.status_code == 503 and r.json() == main.json(), (r.text, main.text)
    assert r.json()["ready"] is False and r.json()["message"]
    assert httpx.get(side + "/v2/health/live").status_code == 200


def test_with_two_workers_one_owns_the_health_port(
    start_server: Callable[..., Server], artifacts: dict[str, Artifact]
) -> None:
    art = artifacts["lr"]
    health = free_port()
    start_server("lr", art.uri, art.digest, workers=2, health_port=health)

    def answered() -> httpx.Response | None:
        # The main port is ready once either worker is; the health port once the first is.
        try:
            r = httpx.get(f"http://127.0.0.1:{health}/v2/health/ready")
        except httpx.ConnectError:
            return None
        return r if r.status_code == 200 else None

    r = eventually(answered, timeout=60, what="the health port answering ready")
    assert r.json() == {"ready": True}
