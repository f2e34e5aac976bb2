"""The middleware every request passes: request id, in-flight gauge, latency and status
metrics, access log, probes answered before anything else, inference taken straight to the data
plane (or, during a rollout, split or mirrored to the other version), and a last-resort 500."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from modelfactory_serving.dataplane import DataPlane
from modelfactory_serving.errors import InferenceError
from modelfactory_serving.health import readiness_status
from modelfactory_serving.logs import request_id_var
from modelfactory_serving.metrics import Metrics
from modelfactory_serving.rest.errors import JSON_HEADERS, error_parts
from modelfactory_serving.rest.inference import INFER_HEADERS, match_inference, run_inference
from modelfactory_serving.rest.transport import (
    ASGIApp,
    ClientDisconnected,
    Message,
    Receive,
    Scope,
    Send,
    body_reader,
    replay,
)
from modelfactory_serving.routing import (
    PeerBroken,
    PeerTimeout,
    PeerUnreachable,
    Router,
    outcome,
)

log = logging.getLogger("modelfactory_serving.http")
access_log = logging.getLogger("modelfactory_serving.access")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class RequestIds:
    """Request ids that are unique without a uuid4 per request (a tenth of its cost): 32 hex
    digits, a random per-process prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFFFFFF:016x}"


class RequestContext:
    """Request id (X-Request-ID honoured or generated, always returned), in-flight gauge,
    latency and status metrics by route template, optional JSON access log, and a last-resort
    500 for anything that escaped the exception handlers."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        access: bool,
        dataplane: DataPlane | None = None,
        limit: int = 0,
        router: Router | None = None,
        track: str = "stable",
    ) -> None:
        self.app = app
        # During a rollout the stable version's server splits or mirrors traffic (routing.py).
        self.router = router
        self.track = track
        self.version = dataplane.version_label if dataplane is not None else None
        self.metrics = metrics
        self.access = access
        # With a data plane, inference requests skip FastAPI's routing and dependency
        # machinery (the same handler, run directly: a large share of per-request CPU).
        self.dataplane = dataplane
        self.limit = limit
        self.ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                if 0 < len(value) <= 128 and value.isascii() and value.decode().isprintable():
                    rid = value.decode()
                break
        if rid is None:
            rid = self.ids.next()
        token = request_id_var.set(rid)
        rid_header = (b"x-request-id", rid.encode())
        status = 500
        started_response = False
        started = time.perf_counter()
        in_flight = self.metrics.in_flight
        in_flight.inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                message["headers"] = [*message.get("headers", ()), rid_header]
                if self.dataplane is not None and self.dataplane.draining:
                    # Keep-alive clients reconnect, and so reach a server that is staying.
                    message["headers"].append((b"connection", b"close"))
            await send(message)

        route_label: str | None = None
        answered_here = False
        try:
            direct = (
                match_inference(scope["method"], scope["path"])
                if self.dataplane is not None
                else None
            )
            health = _HEALTH.get(scope["path"]) if scope["method"] == "GET" else None
            if health is not None and self.dataplane is not None:
                # Probes are answered first, without routing: a saturated server must still
                # answer the kubelet quickly (admission control never applies here).
                route_label = scope["path"]
                code, out = health(self.dataplane)
                body = orjson.dumps(out)
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": code,
                        "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": body})
            elif direct is None:
                await self.app(scope, receive, send_with_id)
            else:
                protocol, name, version, route_label = direct
                headers = {
                    k.decode("latin-1"): v.decode("latin-1")
                    for k, v in scope["headers"]
                    if k in INFER_HEADERS
                }
                assert self.dataplane is not None
                if self.router is None:
                    code, body, extra = await run_inference(
                        self.dataplane, protocol, name, version, headers, receive, self.limit
                    )
                    answered_here = True
                else:
                    code, body, extra, answered_here = await self.route(
                        scope, protocol, name, version, headers, receive
                    )
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": code,
                        "headers": [*extra, (b"content-length", str(len(body)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        except ClientDisconnected:
            status = 499
        except Exception:
            log.exception(
                "unhandled error in %s %s",
                scope["method"],
                scope["path"],
                extra={"path": scope["path"]},
            )
            if not started_response:
                body = orjson.dumps({"error": "internal server error", "request_id": rid})
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            in_flight.dec()
            seconds = time.perf_counter() - started
            label = route_label or getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.observe_request(
                label, method if method in _METHODS else "other", status, seconds
            )
            if answered_here and self.version is not None:
                self.metrics.observe_inference(self.version(), self.track, outcome(status), seconds)
            if self.access:
                access_log.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "route": label,
                        "ms": round(seconds * 1000, 3),
                        "client": (scope.get("client") or ("", 0))[0],
                    },
                )
            request_id_var.reset(token)

    async def route(
        self,
        scope: Scope,
        protocol: str,
        name: str,
        version: str | None,
        headers: Mapping[str, str],
        receive: Receive,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
        """(status, body, headers, answered here) of a request during a rollout."""
        router, dataplane = self.router, self.dataplane
        assert router is not None and dataplane is not None
        raw_headers = scope["headers"]
        split = router.mode == "split"
        if split and not router.to_peer(raw_headers):
            code, body, extra = await run_inference(
                dataplane, protocol, name, version, headers, receive, self.limit
            )
            return code, body, extra, True
        if not split and not router.mirror_now():
            code, body, extra = await run_inference(
                dataplane, protocol, name, version, headers, receive, self.limit
            )
            return code, body, extra, True
        try:
            raw = await body_reader(
                {**headers, "content-encoding": "identity"}, receive, self.limit
            )()
        except InferenceError as e:
            code, body, extra = error_parts(e)
            return code, body, extra, True
        replayed = replay(raw)
        path = scope["path"] + (
            f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else ""
        )
        if split:
            started = time.perf_counter()
            try:
                code, body, extra = await router.forward(path, raw_headers, raw)
            except PeerUnreachable:
                # The other version is gone or not up (a rollback, a scale-down): answer here.
                router.observe_routed("unreachable", 0.0)
                router.peer_ready = False
            except PeerTimeout as e:
                router.observe_routed("no_answer", time.perf_counter() - started)
                err = InferenceError(
                    f"the {router.pin_peer.decode()} version did not answer in "
                    f"time ({type(e).__name__})",
                    status=504,
                )
                code, body, extra = error_parts(err)
                return code, body, extra, False
            except PeerBroken:
                # The connection broke (a server stopping or crashing): the canary is charged
                # with it, and the request, idempotent, is answered here.
                router.observe_routed("no_answer", time.perf_counter() - started)
            else:
                router.observe_routed(outcome(code), time.perf_counter() - started)
                return code, body, extra, False
        code, body, extra = await run_inference(
            dataplane, protocol, name, version, headers, replayed, self.limit
        )
        if not split:
            router.mirror(path, raw_headers, raw, code, body, dataplane.is_classifier)
        return code, body, extra, True


def _live(dataplane: DataPlane) -> tuple[int, dict[str, Any]]:
    return 200, dataplane.live()


def _ready(dataplane: DataPlane) -> tuple[int, dict[str, Any]]:
    ok, body = dataplane.server_ready()
    return readiness_status(ok), body


_HEALTH: dict[str, Callable[[DataPlane], tuple[int, dict[str, Any]]]] = {
    "/v2/health/live": _live,
    "/v2/health/ready": _ready,
}
