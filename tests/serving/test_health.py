"""Probe answers of the health listener (pure logic, and one real listener on a thread)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from modelfactory_serving.health import HealthServer, Heartbeat, probe_answers

pytestmark = pytest.mark.unit


def ready(ok: bool) -> Any:
    body = {"ready": True} if ok else {"ready": False, "reason": "Loading", "message": "m"}
    return lambda: (ok, body)


def test_live_until_the_event_loop_stalls() -> None:
    beat = Heartbeat()
    answers = probe_answers(ready(True), beat, stall_seconds=5)
    assert answers["/v2/health/live"]() == (200, {"live": True})  # not started yet
    beat.beat()
    assert answers["/v2/health/live"]() == (200, {"live": True})
    beat.last = time.monotonic() - 6
    code, body = answers["/v2/health/live"]()
    assert code == 503 and body["reason"] == "EventLoopStalled"


def test_ready_follows_the_data_plane() -> None:
    assert probe_answers(ready(True), Heartbeat(), 5)["/v2/health/ready"]() == (
        200,
        {"ready": True},
    )
    code, body = probe_answers(ready(False), Heartbeat(), 5)["/v2/health/ready"]()
    assert code == 503 and body["reason"] == "Loading"


def test_listener_answers_probes_only() -> None:
    server = HealthServer("127.0.0.1", 0, probe_answers(ready(False), Heartbeat(), 5))
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        r = httpx.get(base + "/v2/health/ready")
        assert r.status_code == 503 and r.json()["reason"] == "Loading"
        assert r.headers["content-type"] == "application/json"
        assert httpx.get(base + "/v2/health/live").json() == {"live": True}
        assert httpx.get(base + "/v2/models/x").status_code == 404
        assert httpx.post(base + "/v2/health/ready").status_code == 501
    finally:
        server.stop()


def test_idle_connections_cannot_pile_up_threads() -> None:
    """Connections that send nothing are bounded in number and closed after a short idle
    time: the listener keeps answering and holds no thread for them for long."""
    import socket
    import threading

    server = HealthServer("127.0.0.1", 0, probe_answers(ready(True), Heartbeat(), 5), limit=4)
    server.start()
    idle = []
    try:
        threads_before = threading.active_count()
        for _ in range(50):
            idle.append(socket.create_connection(("127.0.0.1", server.port)))
        time.sleep(0.5)
        assert threading.active_count() - threads_before <= 4

        # The idle ones are dropped after their idle time; probes are answered again.
        def answered() -> bool:
            try:
                return (
                    httpx.get(
                        f"http://127.0.0.1:{server.port}/v2/health/live", timeout=1
                    ).status_code
                    == 200
                )
            except httpx.HTTPError:
                return False

        deadline = time.monotonic() + 10
        while not answered():
            assert time.monotonic() < deadline, "the listener never answered again"
            time.sleep(0.2)
    finally:
        for s in idle:
            s.close()
        server.stop()
