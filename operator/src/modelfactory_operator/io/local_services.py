"""Services of the local launcher: `modelfactory-serve` with uvicorn on a free 127.0.0.1 port
behind a small TCP proxy whose port never changes, so a new model version rolls out like a
Deployment does: start the new server, wait until it is ready, send new connections to it, let
the old one drain, then stop it gracefully. During a rollout the other version's server runs
beside it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfactory_operator.logic import drift, observe, pod
from modelfactory_operator.logic import traffic_metrics as tm
from modelfactory_operator.logic.kinds import MODELSERVICE
from modelfactory_operator.logic.plans import ServiceObservation, ServingPlan, config_hash

from .local_base import LocalBase, log
from .processes import (
    entrypoint,
    listening_socket,
    pid_alive,
    read_exit,
    spawn,
    stop_process,
    tail,
)

READY_TIMEOUT = 120.0
DRAIN_SECONDS = 3.0
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


def ready_state(port: int) -> tuple[bool, str | None]:
    """Whether the server is ready and, if it says it never will be, why ("Reason: message",
    from the body of its 503 readiness answer, as a kubelet probe cannot tell the operator)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as r:
            return bool(r.status == 200), None
    except urllib.error.HTTPError as e:
        try:
            return False, observe.readiness_failure(e.read(65536))
        finally:
            e.close()
    except OSError:
        return False, None


def http_json(
    port: int, path: str, body: dict[str, Any] | None = None, limit: int = 65536
) -> dict[str, Any] | None:
    """GET (or POST `body` to) a local server's JSON endpoint; None when it does not answer
    with a JSON object."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        headers={"Content-Type": "application/json"} if data is not None else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return drift.parse(int(r.status), r.read(limit))
    except (OSError, ValueError):
        return None


def http_text(port: int, path: str, limit: int = tm.METRICS_LIMIT_BYTES) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return bytes(r.read(limit)).decode("utf-8", "replace")
    except OSError:
        return None


def http_ready(port: int) -> bool:
    return ready_state(port)[0]


@dataclass
class Backend:
    pid: int
    port: int
    hash: str
    version: int | None
    ready: bool = False
    # The port of the other version's server it routes to during a rollout (0: none).
    peer: int = 0


@dataclass
class ServiceState:
    namespace: str
    name: str
    dir: Path
    port: int
    server: asyncio.base_events.Server | None = None
    active: Backend | None = None
    pending: Backend | None = None
    # During a rollout: the other version's server, which the active one routes to.
    candidate: Backend | None = None
    desired: ServingPlan | None = None
    restarts: int = 0
    message: str = ""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def save(self) -> None:
        data = {
            "port": self.port,
            "active": self.active.__dict__ if self.active else None,
            "candidate": self.candidate.__dict__ if self.candidate else None,
            "restarts": self.restarts,
        }
        (self.dir / "service.json").write_text(json.dumps(data))


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class LocalServices(LocalBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.services: dict[tuple[str, str], ServiceState] = {}

    async def httproute_available(self) -> bool:
        return False  # the stable port splits traffic itself

    def chart_digest(self, chart: str) -> str:
        return ""  # processes, no chart

    async def stop_services(self) -> None:
        for state in list(self.services.values()):
            await self._close_service(state)

    async def _service(self, namespace: str, name: str) -> ServiceState:
        key = (namespace, name)
        state = self.services.get(key)
        if state is not None:
            return state
        d = self.folder(MODELSERVICE, namespace, name)
        d.mkdir(parents=True, exist_ok=True)
        saved: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads((d / "service.json").read_text())
        state = ServiceState(namespace=namespace, name=name, dir=d, port=0)
        # Keep the URL across operator restarts when the old port is still free.
        for port in (saved.get("port"), 0):
            try:
                state.server = await asyncio.start_server(
                    functools.partial(self._proxy, state), "127.0.0.1", port or 0
                )
                break
            except OSError:
                continue
        assert state.server is not None
        state.port = int(state.server.sockets[0].getsockname()[1])
        old = saved.get("active")
        if old and pid_alive(old.get("pid")):
            # An earlier operator's server is still up: adopt it.
            state.active = Backend(**{k: v for k, v in old.items() if k != "connections"})
            state.active.ready = http_ready(state.active.port)
        cand = saved.get("candidate")
        if cand and pid_alive(cand.get("pid")):
            state.candidate = Backend(**cand)
        self.services[key] = state
        state.save()
        self._spawn(state, self._supervise_service(state))
        return state

    def _spawn(self, state: ServiceState, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

    async def _proxy(
        self, state: ServiceState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        backend = state.active
        if backend is None or not backend.ready:
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n"
                b"connection: close\r\n\r\n"
            )
            with contextlib.suppress(Exception):
                await writer.drain()
                writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend.port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def apply_service(self, plan: ServingPlan) -> int | None:
        state = await self._service(plan.namespace, plan.name)
        state.desired = plan
        peer = await self._apply_candidate(state, plan)
        current = state.pending or state.active
        if (
            current is not None
            and current.hash == plan.hash
            and current.peer == peer
            and pid_alive(current.pid)
        ):
            return None
        if state.pending is not None:
            await stop_process(state.pending.pid, grace=5)
            state.pending = None
            state.message = ""  # it was about the server just stopped
        state.pending = self._start_backend(state, plan)
        self._spawn(state, self._roll(state, state.pending))
        return None

    async def _apply_candidate(self, state: ServiceState, plan: ServingPlan) -> int:
        """Start, replace or stop the other version's server as the plan says; the port the
        stable server routes to (0: none)."""
        want = plan.candidate
        have = state.candidate
        if want is None:
            if have is not None:
                state.candidate = None
                state.save()
                self._spawn(state, stop_process(have.pid, grace=DRAIN_SECONDS + 5))
            return 0
        digest = config_hash(want.to_env())
        if have is not None and have.hash == digest and pid_alive(have.pid):
            return have.port
        if have is not None:
            self._spawn(state, stop_process(have.pid, grace=DRAIN_SECONDS + 5))
        state.candidate = self._spawn_server(
            state, plan, want.to_env(), digest, plan.candidate_version, "candidate"
        )
        state.save()
        return state.candidate.port

    def _start_backend(self, state: ServiceState, plan: ServingPlan) -> Backend:
        peer = state.candidate.port if state.candidate is not None else 0
        env = plan.runtime.to_env()
        if peer:
            env["MF_ROUTE_PEER"] = f"http://127.0.0.1:{peer}"
        backend = self._spawn_server(state, plan, env, plan.hash, plan.model_version, "serve")
        backend.peer = peer
        return backend

    def _spawn_server(
        self,
        state: ServiceState,
        plan: ServingPlan,
        runtime_env: dict[str, str],
        digest: str,
        version: int | None,
        role: str,
    ) -> Backend:
        listener = listening_socket()
        port = int(listener.getsockname()[1])
        # On SIGTERM the server keeps answering for a moment with "connection: close", so
        # keep-alive clients reconnect through the proxy to the new server before it stops.
        env = {
            "MF_DRAIN_SECONDS": str(DRAIN_SECONDS),
            **os.environ,
            **pod.literal_env(plan.chart_values.get("pod") or {}),
            **runtime_env,
            "MF_HOST": "127.0.0.1",
            "MF_PORT": str(port),
            "MF_LISTEN_FD": str(listener.fileno()),
        }
        with listener:
            pid = spawn(
                [entrypoint("modelfactory-serve")],
                env,
                state.dir / f"{role}-{port}.log",
                state.dir / f"exit-{port}",
                pass_fds=(listener.fileno(),),
            )
        log.info(
            "started model server %s/%s (%s) on port %s (pid %s)",
            state.namespace,
            state.name,
            role,
            port,
            pid,
        )
        return Backend(pid=pid, port=port, hash=digest, version=version)

    async def _roll(self, state: ServiceState, backend: Backend) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and pid_alive(backend.pid):
            ready, failure = await asyncio.to_thread(ready_state, backend.port)
            if ready:
                break
            if failure is not None:
                # Up but refusing to serve (an artifact it must not load): like a pod that
                # fails its readiness probe it stays, the old server keeps serving, and the
                # status says why until the spec changes.
                if state.pending is backend:
                    state.message = f"the new model server is not ready: {failure}"
                    self.notify(MODELSERVICE, state.namespace, state.name)
                return
            await asyncio.sleep(0.3)
        if state.pending is not backend:
            return
        if not pid_alive(backend.pid) or not await asyncio.to_thread(http_ready, backend.port):
            state.message = "the new model server did not become ready: " + tail(
                state.dir / f"serve-{backend.port}.log"
            )
            await stop_process(backend.pid, grace=2)
            state.pending = None
            self.notify(MODELSERVICE, state.namespace, state.name)
            return
        backend.ready = True
        old, state.active, state.pending = state.active, backend, None
        state.message = ""
        state.save()
        self.notify(MODELSERVICE, state.namespace, state.name)
        if old is not None:
            await stop_process(old.pid, grace=DRAIN_SECONDS + 15)

    async def _supervise_service(self, state: ServiceState) -> None:
        """Restart a server that died, and let the status say so meanwhile."""
        failures = 0
        while True:
            await asyncio.sleep(0.5)
            backend = state.active
            if backend is None or pid_alive(backend.pid):
                if backend is not None and backend.ready:
                    failures = 0
                continue
            code = read_exit(state.dir / f"exit-{backend.port}")
            backend.ready = False
            state.restarts += 1
            state.message = f"model server exited (code {code}); restarting"
            log.warning(
                "model server %s/%s exited (%s); restarting", state.namespace, state.name, code
            )
            self.notify(MODELSERVICE, state.namespace, state.name)
            await asyncio.sleep(RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)])
            failures += 1
            plan = state.desired
            if plan is None or state.active is not backend:
                continue
            replacement = self._start_backend(state, plan)
            state.active = replacement
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline and pid_alive(replacement.pid):
                if await asyncio.to_thread(http_ready, replacement.port):
                    replacement.ready = True
                    state.message = ""
                    break
                await asyncio.sleep(0.3)
            state.save()
            self.notify(MODELSERVICE, state.namespace, state.name)

    async def observe_service(self, namespace: str, name: str) -> ServiceObservation:
        state = self.services.get((namespace, name))
        if state is None:
            saved = self.folder(MODELSERVICE, namespace, name) / "service.json"
            if not saved.exists():
                return ServiceObservation(exists=False)
            state = await self._service(namespace, name)
        active = state.active
        ready = active is not None and active.ready and pid_alive(active.pid)
        desired = state.desired
        rolled_out = (
            ready
            and state.pending is None
            and (desired is None or (active is not None and active.hash == desired.hash))
        )
        return ServiceObservation(
            exists=active is not None or state.pending is not None,
            replicas=1 if active or state.pending else 0,
            ready_replicas=1 if ready else 0,
            rolled_out=rolled_out,
            served_version=active.version if active else None,
            url=f"http://127.0.0.1:{state.port}",
            message=state.message,
            restarts=state.restarts,
        )

    async def _close_service(self, state: ServiceState) -> None:
        for task in list(state.tasks):
            task.cancel()
        if state.server is not None:
            state.server.close()
        for backend in (state.pending, state.active, state.candidate):
            if backend is not None:
                await stop_process(backend.pid, grace=10)
        self.services.pop((state.namespace, state.name), None)

    async def drift_windows(
        self, namespace: str, name: str
    ) -> tuple[list[dict[str, Any]], Callable[[dict[str, Any]], dict[str, Any] | None]]:
        state = self.services.get((namespace, name))
        active = state.active if state is not None else None
        if active is None or not active.ready:
            return [], lambda window: None
        port = active.port
        window = await asyncio.to_thread(
            http_json, port, drift.drift_path(name), None, drift.WINDOW_LIMIT_BYTES
        )

        def evaluate(w: dict[str, Any]) -> dict[str, Any] | None:
            return http_json(port, drift.evaluate_path(name), w, drift.WINDOW_LIMIT_BYTES)

        return ([window] if window is not None else []), evaluate

    async def traffic_snapshot(self, namespace: str, name: str) -> tm.Snapshot | None:
        state = self.services.get((namespace, name))
        active = state.active if state is not None else None
        if state is None or active is None or not active.ready:
            return None
        snapshot = tm.empty()
        for backend in (active, state.candidate):
            if backend is None:
                continue
            text = await asyncio.to_thread(http_text, backend.port, "/metrics")
            if text is None:
                return None
            tm.parse(text, snapshot)
        return snapshot

    async def delete_service(self, namespace: str, name: str) -> None:
        state = self.services.get((namespace, name))
        if state is None and (self.folder(MODELSERVICE, namespace, name)).exists():
            state = await self._service(namespace, name)
        if state is not None:
            await self._close_service(state)
        shutil.rmtree(self.folder(MODELSERVICE, namespace, name), ignore_errors=True)
