"""A health listener that does not depend on the event loop.

The kubelet's probes are answered on a port of their own by a stdlib HTTP server on its own
thread. On the main port a probe waits behind every request the event loop has accepted before
it; under saturation that is hundreds of milliseconds, enough to fail a probe and get a busy pod
killed or taken out of its Service. Here a probe only waits for the GIL.

Readiness reads the same state as the main port's `/v2/health/ready` (the data plane's). Liveness
says the process is alive and its event loop still turns: a loop that has not run its periodic
sweep for `stall_seconds` (a deadlock, a predict stuck forever) answers 503, so a wedged server is
restarted, while a merely busy one (the loop turns between requests) never is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

log = logging.getLogger("modelfactory_serving.health")

# (status, JSON body) of one probe path.
Answer = Callable[[], tuple[int, dict[str, Any]]]


class Heartbeat:
    """When the event loop last ran its periodic work (monotonic seconds; None before start)."""

    def __init__(self) -> None:
        self.last: float | None = None

    def beat(self) -> None:
        self.last = time.monotonic()

    def stalled_for(self) -> float:
        return 0.0 if self.last is None else time.monotonic() - self.last


def readiness_status(ready: bool) -> int:
    """The HTTP status of a readiness answer: 200 when ready, 503 (try elsewhere) when not."""
    return 200 if ready else 503


def probe_answers(
    ready: Callable[[], tuple[bool, dict[str, Any]]],
    heartbeat: Heartbeat,
    stall_seconds: float,
) -> dict[str, Answer]:
    """The probe paths and how each is answered (pure: no I/O)."""

    def live() -> tuple[int, dict[str, Any]]:
        stalled = heartbeat.stalled_for()
        if stalled > stall_seconds:
            return 503, {
                "live": False,
                "reason": "EventLoopStalled",
                "message": f"the event loop has not run for {stalled:.0f} s",
            }
        return 200, {"live": True}

    def ready_answer() -> tuple[int, dict[str, Any]]:
        ok, body = ready()
        return readiness_status(ok), body

    return {"/v2/health/live": live, "/v2/health/ready": ready_answer}


# Probes come one at a time from the kubelet: a few connections at once are plenty, and each may
# sit idle only briefly, so nobody can hold threads (and memory) open on this port.
MAX_CONNECTIONS = 32
IDLE_SECONDS = 2.0


class _Handler(BaseHTTPRequestHandler):
    answers: dict[str, Answer] = {}
    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS
    # Buffered: the status line, headers and body leave in one send (each send is one more wait
    # for the GIL when the server is busy).
    wbufsize = 4096

    def do_GET(self) -> None:
        answer = self.answers.get(self.path.split("?", 1)[0])
        if answer is None:
            code, body = 404, {"error": f"no health endpoint at {self.path!r}"}
        else:
            code, body = answer()
        data = orjson.dumps(body)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # probes are not worth a log line
        pass


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most `limit` at once: beyond that a connection is closed
    without an answer."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], limit: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(limit)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class HealthServer:
    """The listener on (host, port), served from a daemon thread until stop()."""

    def __init__(
        self, host: str, port: int, answers: dict[str, Answer], limit: int = MAX_CONNECTIONS
    ) -> None:
        handler = type("HealthHandler", (_Handler,), {"answers": answers})
        self._server = _BoundedServer((host, port), handler, limit)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="health",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("health listener started", extra={"port": self.port})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
