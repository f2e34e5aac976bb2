"""Rollout traffic between two real servers: the stable one splits or mirrors its share to the
other version, a header pins a client, a peer that is gone costs no request, and the metrics
the operator's analysis reads count each side."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from modelfactory_operator.logic import traffic_metrics as tm
from tests.serving.conftest import Artifact, Server

pytestmark = pytest.mark.e2e


def v2_body(rows: list[list[float]]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(rows[0])],
                "datatype": "FP64",
                "data": [v for r in rows for v in r],
            }
        ]
    }


def versions_answering(server: Server, n: int, **headers: str) -> list[str]:
    out = []
    with server.client() as c:
        for i in range(n):
            r = c.post(
                f"/v2/models/{server.name}/infer",
                json=v2_body([[0.1 * i, 1, 2, 3]]),
                headers=headers,
            )
            assert r.status_code == 200, r.text
            out.append(r.json()["model_version"])
    return out


def peer_ready(server: Server) -> None:
    """The stable server sends nothing to its peer before it has seen it ready."""
    server.wait_state(lambda: "is ready" in server.logs(), timeout=10)


def snapshot(*servers: Server) -> tm.Snapshot:
    """What the operator reads: every server's /metrics, summed."""
    snap = tm.empty()
    for server in servers:
        if server.proc.poll() is None:
            tm.parse(httpx.get(server.url + "/metrics").text, snap)
    return snap


def test_split_sends_exactly_the_weight_and_pins_by_header(
    start_server: Callable[..., Server], artifacts: dict[str, Artifact]
) -> None:
    lr, rf = artifacts["lr"], artifacts["rf"]
    canary = start_server("m", rf.uri, rf.digest, model_version="2", route_track="candidate")
    stable = start_server(
        "m",
        lr.uri,
        lr.digest,
        model_version="1",
        route_mode="split",
        route_peer=canary.url,
        route_peer_version="2",
        route_weight=10,
    )
    peer_ready(stable)
    answered = versions_answering(stable, 100)
    # A counter, not a coin: 10 in every 100.
    assert answered.count("2") == 10
    assert set(versions_answering(stable, 5, **{"x-model-variant": "canary"})) == {"2"}
    assert set(versions_answering(stable, 5, **{"x-model-variant": "stable"})) == {"1"}

    snap = snapshot(stable, canary)
    assert snap["stable"]["requests"] == 95
    assert snap["candidate"]["requests"] == 15
    assert snap["candidate"]["errors"] == 0
    assert sum(snap["candidate"]["buckets"].values()) > 0
    # The canary counts its own answers under its track.
    own = httpx.get(canary.url + "/metrics").text
    assert 'track="candidate"' in own and 'version="2"' in own

    # v1 requests are routed too.
    with stable.client() as c:
        r = c.post(
            "/v1/models/m:predict",
            json={"instances": [[1, 2, 3, 4]]},
            headers={"x-model-variant": "canary"},
        )
        assert r.status_code == 200, r.text

    # The canary gone (a rollback): every request is answered by the stable version.
    canary.stop()
    assert set(versions_answering(stable, 30)) == {"1"}
    assert snapshot(stable)["stable"]["requests"] == 125


def test_canary_errors_reach_only_its_share(
    start_server: Callable[..., Server], artifacts: dict[str, Artifact]
) -> None:
    lr, ridge = artifacts["lr"], artifacts["ridge"]
    # A version with another feature schema (3 features): every request it gets fails.
    bad = start_server("m", ridge.uri, ridge.digest, route_track="candidate")
    stable = start_server(
        "m",
        lr.uri,
        lr.digest,
        route_mode="split",
        route_peer=bad.url,
        route_peer_version="3",
        route_weight=20,
    )
    peer_ready(stable)
    codes = []
    with stable.client() as c:
        for i in range(50):
            r = c.post("/v2/models/m/infer", json=v2_body([[0.1 * i, 1, 2, 3]]))
            codes.append(r.status_code)
    assert codes.count(200) == 40
    assert all(400 <= code < 500 for code in codes if code != 200)
    snap = snapshot(stable, bad)
    assert snap["candidate"]["errors"] == 10 and snap["stable"]["errors"] == 0


def test_mirror_answers_with_stable_and_compares(
    start_server: Callable[..., Server], artifacts: dict[str, Artifact]
) -> None:
    lr = artifacts["lr"]
    shadow = start_server("m", lr.uri, lr.digest, model_version="2", route_track="candidate")
    stable = start_server(
        "m",
        lr.uri,
        lr.digest,
        model_version="1",
        route_mode="mirror",
        route_peer=shadow.url,
        route_peer_version="2",
        route_weight=100,
    )
    peer_ready(stable)
    assert set(versions_answering(stable, 40)) == {"1"}

    def compared() -> bool:
        return snapshot(stable)["shadow"]["rows"] >= 40

    stable.wait_state(compared, timeout=20)
    snap = snapshot(stable, shadow)
    # The same model on both sides: every label agrees.
    assert snap["shadow"]["agreeing"] == snap["shadow"]["rows"] == 40
    assert snap["candidate"]["requests"] == 40 and snap["candidate"]["errors"] == 0
    assert tm.comparison(snap["shadow"])["agreement"] == 1.0


def test_an_address_that_is_not_a_model_server_gets_nothing(
    start_server: Callable[..., Server], artifacts: dict[str, Artifact]
) -> None:
    """A rolled-back canary's address answered by something else (a stale Service IP routed
    off the node, a wildcard DNS name): it passes no readiness check, so it gets no request."""
    import http.server
    import threading

    class Foreign(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    foreign = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Foreign)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    try:
        lr = artifacts["lr"]
        stable = start_server(
            "m",
            lr.uri,
            lr.digest,
            model_version="1",
            route_mode="split",
            route_peer=f"http://127.0.0.1:{foreign.server_port}",
            route_peer_version="2",
            route_weight=50,
        )
        assert set(versions_answering(stable, 20, **{"x-model-variant": "canary"})) == {"1"}
        assert set(versions_answering(stable, 20)) == {"1"}
    finally:
        foreign.shutdown()
