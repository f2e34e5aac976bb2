"""`modelfactory-serve`: settings from MF_* variables and flags, then uvicorn (one process, or a
supervisor with N worker processes sharing one listening socket)."""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import uvicorn

from modelfactory_serving.logs import log_config
from modelfactory_serving.settings import Settings, load_settings

log = logging.getLogger("modelfactory_serving.main")


class ServingServer(uvicorn.Server):
    """uvicorn's server with an optional drain period: on the first SIGTERM readiness turns to
    503 at once, requests keep being served for drain_seconds, then the normal graceful shutdown
    (stop accepting, finish in-flight and queued requests, exit) runs."""

    def __init__(self, config: uvicorn.Config, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        dataplane = _find_dataplane(self.config.loaded_app)
        if dataplane is not None:
            dataplane.draining = True
        if sig == signal.SIGTERM and self.drain_seconds > 0 and self._drain_until is None:
            self._drain_until = time.monotonic() + self.drain_seconds
            log.info("SIGTERM: draining for %.1fs before shutdown", self.drain_seconds)
            return
        log.info("signal %d: shutting down gracefully", sig)
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            self.should_exit = True
        return await super().on_tick(counter)


def _find_dataplane(app: Any) -> Any:
    for _ in range(16):
        if app is None:
            return None
        state = getattr(app, "state", None)
        if state is not None and hasattr(state, "dataplane"):
            return state.dataplane
        app = getattr(app, "app", None)
    return None


def _config(settings: Settings, app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=log_config(settings.log_level),
        access_log=False,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        timeout_keep_alive=settings.timeout_keep_alive_s,
        backlog=settings.backlog,
        server_header=False,
        lifespan="on",
    )


def inherited_socket(settings: Settings) -> socket.socket | None:
    # socket(fileno=) reads the family and type from the descriptor itself.
    return None if settings.listen_fd is None else socket.socket(fileno=settings.listen_fd)


def serve(settings: Settings, sockets: list[socket.socket] | None = None) -> None:
    """One server process (the whole server, or one worker of several)."""
    from modelfactory_serving.rest.app import create_app

    if sockets is None and (inherited := inherited_socket(settings)) is not None:
        sockets = [inherited]
    config = _config(settings, create_app(settings))
    # uvicorn re-raises the signal it shut down for once it is done, with the previous handler
    # in place; a no-op handler makes a graceful SIGTERM shutdown exit with status 0.
    signal.signal(signal.SIGTERM, lambda sig, frame: None)
    ServingServer(config, settings.drain_seconds).run(sockets=sockets)


def _worker(settings_data: dict[str, Any], sock: socket.socket) -> None:
    serve(Settings.model_validate(settings_data), sockets=[sock])


def supervise(settings: Settings) -> int:
    """N worker processes on one socket; SIGTERM/SIGINT are passed on and awaited, a worker
    that dies on its own is replaced."""
    config = _config(settings, None)
    sock = inherited_socket(settings) or config.bind_socket()
    ctx = multiprocessing.get_context("spawn")
    data = settings.model_dump()
    stopping = False

    def spawn(index: int) -> multiprocessing.process.BaseProcess:
        # The first worker owns the health listener (all load the same model, so its state
        # stands for theirs); a replacement of it takes the port over.
        own = data if index == 0 else {**data, "health_port": 0}
        proc = ctx.Process(target=_worker, args=(own, sock), name="modelfactory-worker")
        proc.start()
        return proc

    workers = [spawn(i) for i in range(settings.workers)]
    log.info(
        "started %d worker processes",
        len(workers),
        extra={"pids": [w.pid for w in workers], "port": settings.port},
    )

    def on_signal(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for w in workers:
            if w.pid is not None and w.exitcode is None:
                os.kill(w.pid, sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while True:
        for i, w in enumerate(workers):
            w.join(timeout=0.2)
            if w.exitcode is not None and not stopping:
                log.error("worker %s exited with %s; starting a new one", w.pid, w.exitcode)
                workers[i] = spawn(i)
        if stopping and all(w.exitcode is not None for w in workers):
            break
    sock.close()
    return max((w.exitcode or 0) for w in workers)


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings(sys.argv[1:] if argv is None else argv)
    logging.config.dictConfig(log_config(settings.log_level))
    if settings.workers == 1:
        serve(settings)
        return
    # Metrics from all workers are summed through files in this directory.
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="modelfactory-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        code = supervise(settings)
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
