"""Traffic between two versions during a rollout, done by the stable version's servers.

A canary's share is split per request here, not by replica ratio (10 % on two replicas would be
0 or 50 %) and not by a mesh: each server sends exactly `weight` requests in a hundred to the
other version's Service, in an even pattern (a counter, not a coin: the share holds over any
hundred requests). A shadow gets a copy of its share instead, answered here; the two answers
are compared and the shadow's is dropped. A request header pins a client to either side.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp
import numpy as np
import orjson

from modelfactory_serving.logs import request_id_var
from modelfactory_serving.metrics import Metrics
from modelfactory_serving.settings import Settings

log = logging.getLogger("modelfactory_serving.routing")

# Headers passed to the other version with a request, and back with its answer.
FORWARD_HEADERS = frozenset({"content-type", "content-encoding", "inference-header-content-length"})
RETURN_HEADERS = frozenset({"content-type", "inference-header-content-length"})
# An answer of our own server is proportional to its request; a peer that sends more is cut off.
MAX_ANSWER_BYTES = 256 * 2**20
READY_PATH = "/v2/health/ready"
PROBE_ID = "rollout-readiness-probe"
# A proxied answer costs the stable server a quarter of a millisecond of CPU with aiohttp's
# client (httpx's took six times as much).
READY_POLL_SECONDS = 1.0
READY_TIMEOUT_SECONDS = 2.0


class Share:
    """`weight` of every hundred calls answer True, evenly spread (a smooth weighted counter)."""

    def __init__(self, weight: int) -> None:
        self.weight = max(0, min(int(weight), 100))
        self._credit = 0

    def take(self) -> bool:
        self._credit += self.weight
        if self._credit >= 100:
            self._credit -= 100
            return True
        return False


def outcome(status: int) -> str:
    """The outcome label of an answer: the analysis counts every non-2xx as a failure."""
    if status < 400:
        return "ok"
    return "client_error" if status < 500 else "server_error"


@dataclass(frozen=True)
class Comparison:
    rows: int
    agreeing: int
    abs_error: float


def predictions(body: bytes) -> np.ndarray | None:
    """The first output of a JSON answer (v2 outputs[0].data or v1 predictions), else None."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("predictions"), list):
        data = doc["predictions"]
    else:
        outputs = doc.get("outputs")
        if not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], dict):
            return None
        data = outputs[0].get("data")
        if not isinstance(data, list):
            return None
    return np.asarray(data, dtype=object)


def compare(local: bytes, peer: bytes, classifier: bool) -> Comparison | None:
    """Row by row: equal labels for a classifier, absolute difference for a regressor. None
    when the answers cannot be compared (not JSON, different lengths)."""
    a, b = predictions(local), predictions(peer)
    if a is None or b is None or a.shape != b.shape or a.ndim != 1:
        return None
    if classifier:
        return Comparison(len(a), int(np.count_nonzero(a == b)), 0.0)
    try:
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    except (TypeError, ValueError):
        return None
    return Comparison(len(a), 0, float(diff.sum()))


class Router:
    """The stable server's side of a rollout: decide, forward, mirror and compare."""

    def __init__(self, settings: Settings, metrics: Metrics | None) -> None:
        assert settings.route_peer is not None
        self.mode = settings.route_mode
        self.share = Share(settings.route_weight)
        self.header = settings.route_header.encode()
        self.pin_local = settings.route_pin_local.encode()
        self.pin_peer = settings.route_pin_peer.encode()
        self.peer_version = settings.route_peer_version or "unknown"
        self.model = settings.model_name
        self.metrics = metrics
        self.mirrors_in_flight = 0
        self.max_mirrors = settings.route_mirrors_in_flight
        self.tasks: set[asyncio.Task[None]] = set()
        # Like a Service's endpoints: the peer gets requests only while it says it is ready
        # (a canary still loading its model never answers a client's request with 503).
        self.peer_ready = False
        self._watch: asyncio.Task[None] | None = None
        self.peer = settings.route_peer.rstrip("/")
        self.timeout = settings.timeout_seconds
        self.session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        """In the event loop: the connection pool and the readiness watch."""
        self.session = aiohttp.ClientSession(
            # No DNS cache: a rolled-back version's Service name must stop resolving at once.
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=15, use_dns_cache=False),
            timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=2.0),
        )
        self._watch = asyncio.ensure_future(self._watch_peer())

    async def _watch_peer(self) -> None:
        assert self.session is not None
        timeout = aiohttp.ClientTimeout(total=READY_TIMEOUT_SECONDS)
        while True:
            try:
                async with self.session.get(
                    self.peer + READY_PATH, timeout=timeout, headers={"x-request-id": PROBE_ID}
                ) as r:
                    ready = r.status == 200 and r.headers.get("x-request-id") == PROBE_ID
            except (TimeoutError, aiohttp.ClientError, OSError):
                ready = False
            if ready != self.peer_ready:
                log.info(
                    "the %s version is %s",
                    self.pin_peer.decode(),
                    "ready" if ready else "not ready",
                )
            self.peer_ready = ready
            await asyncio.sleep(READY_POLL_SECONDS)

    def to_peer(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether the peer answers this request (split mode): a pin header decides, else the
        share; never while the peer is not ready."""
        if not self.peer_ready:
            return False
        for key, value in headers:
            if key == self.header:
                if value == self.pin_peer:
                    return True
                if value == self.pin_local:
                    return False
                break
        return self.share.take()

    def mirror_now(self) -> bool:
        """Whether this request is mirrored (mirror mode): its share, while room is left."""
        return self.peer_ready and self.share.take() and self.mirrors_in_flight < self.max_mirrors

    async def forward(
        self, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """The peer's answer. PeerUnreachable when no connection could be made (the caller
        answers itself: a canary that is gone never fails a request), PeerTimeout when it did
        not answer in time, PeerBroken when the connection broke."""
        assert self.session is not None, "start() first"
        out = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in headers
            if k.decode("latin-1") in FORWARD_HEADERS
        }
        # Our model servers echo the request id: an answer without it is not the other
        # version's (a stale address of a deleted Service routed elsewhere) and is dropped.
        rid = request_id_var.get() or ""
        out["x-request-id"] = rid
        try:
            async with self.session.post(self.peer + path, data=body, headers=out) as r:
                if not rid or r.headers.get("x-request-id") != rid:
                    raise PeerUnreachable(f"an answer ({r.status}) not from a model server")
                answer = await _read_bounded(r)
                back = [
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in r.headers.items()
                    if k.lower() in RETURN_HEADERS
                ]
                return r.status, answer, back
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as e:
            raise PeerUnreachable(str(e)) from e
        except TimeoutError as e:
            raise PeerTimeout("no answer in time") from e
        except (aiohttp.ClientError, OSError) as e:
            raise PeerBroken(f"{type(e).__name__}: {e}") from e

    def observe_routed(self, result: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.routed.labels(self.model, self.peer_version, result).inc()
            if result != "unreachable":
                self.metrics.routed_latency.labels(self.model, self.peer_version).observe(seconds)

    def mirror(
        self,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        local_status: int,
        local_answer: bytes,
        classifier: bool,
    ) -> None:
        """Send a copy in the background; its answer is compared with ours and dropped."""
        self.mirrors_in_flight += 1
        task = asyncio.ensure_future(
            self._mirror(path, headers, body, local_status, local_answer, classifier)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _mirror(
        self,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        local_status: int,
        local_answer: bytes,
        classifier: bool,
    ) -> None:
        m = self.metrics
        started = time.perf_counter()
        try:
            status, answer, _ = await self.forward(path, headers, body)
        except PeerError as e:
            if m is not None:
                m.shadow_requests.labels(self.model, self.peer_version, "unreachable").inc()
            log.debug("mirror failed: %s", e)
            return
        finally:
            self.mirrors_in_flight -= 1
        if m is None:
            return
        m.shadow_requests.labels(self.model, self.peer_version, outcome(status)).inc()
        m.shadow_latency.labels(self.model, self.peer_version).observe(
            time.perf_counter() - started
        )
        if status >= 400 or local_status >= 400:
            return
        result = compare(local_answer, answer, classifier)
        if result is None:
            return
        m.shadow_rows.labels(self.model, self.peer_version, "compared").inc(result.rows)
        if classifier:
            m.shadow_rows.labels(self.model, self.peer_version, "agreeing").inc(result.agreeing)
        else:
            m.shadow_abs_error.labels(self.model, self.peer_version).inc(result.abs_error)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for task in list(self.tasks):
            task.cancel()
        if self.session is not None:
            await self.session.close()


class PeerError(Exception):
    pass


class PeerUnreachable(PeerError):
    pass


class PeerTimeout(PeerError):
    pass


class PeerBroken(PeerError):
    pass


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise aiohttp.ClientPayloadError(f"the peer's answer exceeds {MAX_ANSWER_BYTES} bytes")
        parts.append(chunk)
    return b"".join(parts)
