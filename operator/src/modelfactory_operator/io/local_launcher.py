"""The local launcher: the same entrypoints and configuration as in the cluster, as processes here.

Training runs `modelfactory-train` with a local Ray; serving runs `modelfactory-serve` with uvicorn
on a free 127.0.0.1 port behind a small TCP proxy whose port never changes, so a new model version
rolls out like a Deployment does: start the new server, wait until it is ready, send new
connections to it, let the old one drain, then stop it gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfactory_api.batchprediction import BATCHPREDICTION_PLURAL
from modelfactory_api.trainingjob import TRAININGJOB_PLURAL
from modelfactory_operator.logic import drift, observe, pod
from modelfactory_operator.logic import traffic_metrics as tm
from modelfactory_operator.logic.plans import (
    RunObservation,
    ServiceObservation,
    ServingPlan,
    TrainingPlan,
    config_hash,
)

log = logging.getLogger("modelfactory.operator.local")

READY_TIMEOUT = 120.0
# A run's folder: <namespace>/<prefix>-<name>.
RUN_PREFIX = {TRAININGJOB_PLURAL: "tj", BATCHPREDICTION_PLURAL: "bp"}
DRAIN_SECONDS = 3.0
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


class Callbacks:
    """What the launcher calls when something changes on its own (a process exits, gets ready)."""

    def __init__(self) -> None:
        self.trainingjob: Callable[[str, str], Awaitable[None]] | None = None
        self.modelservice: Callable[[str, str], Awaitable[None]] | None = None
        self.batchprediction: Callable[[str, str], Awaitable[None]] | None = None


def entrypoint(script: str) -> str:
    beside = Path(sys.executable).parent / script
    found = str(beside) if beside.exists() else shutil.which(script)
    if not found:
        raise FileNotFoundError(f"{script} is not installed (pip install the component)")
    return found


def listening_socket() -> socket.socket:
    """A bound, listening 127.0.0.1 socket on a port of the kernel's choice, for a server to
    inherit: choosing a free port and letting the server bind it later races with every other
    process (and server) picking ports meanwhile."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def kill_group(pid: int | None, sig: int = signal.SIGTERM) -> None:
    if pid and pid_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)


async def stop_process(pid: int | None, grace: float = 15.0) -> None:
    kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    kill_group(pid, signal.SIGKILL)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def spawn(
    cmd: list[str],
    env: dict[str, str],
    logfile: Path,
    exitfile: Path,
    pass_fds: tuple[int, ...] = (),
) -> int:
    """Start a process in its own group; a shell wrapper records its exit code for adoption."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    exitfile.unlink(missing_ok=True)
    script = '"$@"; echo $? > "$MF_EXIT_FILE"'
    with logfile.open("ab") as out:
        child = subprocess.Popen(
            ["/bin/sh", "-c", script, "sh", *cmd],
            env={**env, "MF_EXIT_FILE": str(exitfile)},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    return child.pid


def read_exit(exitfile: Path) -> int | None:
    try:
        return int(exitfile.read_text().strip())
    except (OSError, ValueError):
        return None


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


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


# ----------------------------------------------------------------------------- serving proxy


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


class LocalLauncher:
    name = "local"

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.callbacks = Callbacks()
        self.services: dict[tuple[str, str], ServiceState] = {}
        self.training_tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.background: set[asyncio.Task[None]] = set()

    def chart_digest(self, chart: str) -> str:
        return ""  # processes, no chart

    # --- lifecycle

    async def start(self, reconciler: Any) -> None:
        self.callbacks.trainingjob = reconciler.trainingjob
        self.callbacks.modelservice = reconciler.modelservice
        self.callbacks.batchprediction = reconciler.batchprediction
        self.dir.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        """Stopping the operator stops every process it started."""
        for key in list(self.training_tasks):
            self.training_tasks.pop(key).cancel()
        for run in [*self.dir.glob("*/tj-*/run.json"), *self.dir.glob("*/bp-*/run.json")]:
            rec = json.loads(run.read_text())
            await stop_process(rec.get("pid"), grace=5)
        for state in list(self.services.values()):
            await self._close_service(state)

    def _notify(self, kind: str, namespace: str, name: str) -> None:
        callback = {
            "tj": self.callbacks.trainingjob,
            "bp": self.callbacks.batchprediction,
        }.get(kind, self.callbacks.modelservice)
        if callback is None:
            return

        async def call() -> None:
            try:
                await callback(namespace, name)
            except Exception:
                log.exception("reconcile of %s %s/%s failed", kind, namespace, name)

        task = asyncio.ensure_future(call())
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # --- training

    def _tj_dir(self, namespace: str, name: str, plural: str = TRAININGJOB_PLURAL) -> Path:
        return self.dir / namespace / f"{RUN_PREFIX[plural]}-{name}"

    def _run_record(
        self, namespace: str, name: str, plural: str = TRAININGJOB_PLURAL
    ) -> dict[str, Any] | None:
        try:
            path = self._tj_dir(namespace, name, plural) / "run.json"
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return None

    def _save_run(
        self, namespace: str, name: str, rec: dict[str, Any], plural: str = TRAININGJOB_PLURAL
    ) -> None:
        path = self._tj_dir(namespace, name, plural) / "run.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec))
        tmp.replace(path)

    async def rayjob_available(self) -> bool:
        return True  # workers > 0 runs the same search on this machine's local Ray

    async def httproute_available(self) -> bool:
        return False  # the stable port splits traffic itself

    async def launch_training(self, plan: TrainingPlan) -> int | None:
        rec = self._run_record(plan.namespace, plan.name, plan.plural)
        alive = rec is not None and pid_alive(rec.get("pid"))
        if rec is not None and alive and (rec["runId"] != plan.run_id or plan.suspend):
            await stop_process(rec.get("pid"))
            alive = False
        if plan.suspend:
            return None
        if rec is not None and rec["runId"] == plan.run_id and (alive or rec.get("final")):
            self._watch_training(plan, rec)
            return None
        attempts = rec["attempts"] + 1 if rec and rec["runId"] == plan.run_id else 1
        self._start_training(plan, attempts)
        return None

    def _start_training(self, plan: TrainingPlan, attempts: int) -> None:
        d = self._tj_dir(plan.namespace, plan.name, plan.plural)
        env = {
            **os.environ,
            **pod.literal_env(plan.chart_values.get("pod") or {}),
            **plan.runtime.to_env(),
        }
        pid = spawn([entrypoint(plan.entrypoint)], env, d / "train.log", d / "exit")
        rec = {
            "runId": plan.run_id,
            "pid": pid,
            "attempts": attempts,
            "startTime": now_iso(),
            "backoffLimit": plan.chart_values.get("backoffLimit", 0),
            "final": False,
        }
        self._save_run(plan.namespace, plan.name, rec, plan.plural)
        log.info(
            "started %s %s/%s run %s (pid %s)",
            plan.entrypoint,
            plan.namespace,
            plan.name,
            plan.run_id,
            pid,
        )
        self._watch_training(plan, rec)

    def _watch_training(self, plan: TrainingPlan, rec: dict[str, Any]) -> None:
        key = (plan.namespace, f"{plan.plural}/{plan.name}")
        task = self.training_tasks.get(key)
        if task is not None and not task.done():
            return
        self.training_tasks[key] = asyncio.ensure_future(self._supervise_training(plan))

    async def _supervise_training(self, plan: TrainingPlan) -> None:
        """Wake the reconciler when the process exits; observe_training reads the outcome."""
        while True:
            rec = self._run_record(plan.namespace, plan.name, plan.plural)
            if rec is None or rec["runId"] != plan.run_id or rec.get("final"):
                return
            if not pid_alive(rec["pid"]):
                self._notify(RUN_PREFIX[plan.plural], plan.namespace, plan.name)
                return
            await asyncio.sleep(0.5)

    async def observe_training(self, plan: TrainingPlan) -> RunObservation:
        rec = self._run_record(plan.namespace, plan.name, plan.plural)
        if rec is None or rec["runId"] != plan.run_id:
            return RunObservation(state="absent")
        common: dict[str, Any] = {
            "start_time": rec.get("startTime"),
            "attempts": int(rec.get("attempts", 1)),
        }
        if not rec.get("final"):
            if pid_alive(rec.get("pid")):
                self._watch_training(plan, rec)
                return RunObservation(state="running", **common)
            code = read_exit(self._tj_dir(plan.namespace, plan.name, plan.plural) / "exit")
            # Killed (no exit code, e.g. the operator stopped it) or a retryable failure:
            # absent makes the reconciler launch the run again.
            if code is None:
                return RunObservation(state="absent", **common)
            if code not in (0, 2) and rec["attempts"] <= int(rec.get("backoffLimit") or 0):
                return RunObservation(state="absent", **common)
            rec.update(exitCode=code, completionTime=now_iso(), final=True)
            self._save_run(plan.namespace, plan.name, rec, plan.plural)
        if rec.get("exitCode") == 0:
            return RunObservation(
                state="succeeded", completion_time=rec.get("completionTime"), **common
            )
        log_tail = tail(self._tj_dir(plan.namespace, plan.name, plan.plural) / "train.log")
        return RunObservation(
            state="failed",
            reason="ProcessFailed",
            message=f"{plan.entrypoint} exited with code {rec.get('exitCode')}: {log_tail}",
            completion_time=rec.get("completionTime"),
            **common,
        )

    async def delete_training(
        self, namespace: str, name: str, plural: str = TRAININGJOB_PLURAL
    ) -> None:
        task = self.training_tasks.pop((namespace, f"{plural}/{name}"), None)
        if task:
            task.cancel()
        rec = self._run_record(namespace, name, plural)
        if rec:
            await stop_process(rec.get("pid"), grace=5)
        shutil.rmtree(self._tj_dir(namespace, name, plural), ignore_errors=True)

    # --- serving

    async def _service(self, namespace: str, name: str) -> ServiceState:
        key = (namespace, name)
        state = self.services.get(key)
        if state is not None:
            return state
        d = self.dir / namespace / f"msvc-{name}"
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
                    self._notify("msvc", state.namespace, state.name)
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
            self._notify("msvc", state.namespace, state.name)
            return
        backend.ready = True
        old, state.active, state.pending = state.active, backend, None
        state.message = ""
        state.save()
        self._notify("msvc", state.namespace, state.name)
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
            self._notify("msvc", state.namespace, state.name)
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
            self._notify("msvc", state.namespace, state.name)

    async def observe_service(self, namespace: str, name: str) -> ServiceObservation:
        state = self.services.get((namespace, name))
        if state is None:
            saved = self.dir / namespace / f"msvc-{name}" / "service.json"
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
        if state is None and (self.dir / namespace / f"msvc-{name}").exists():
            state = await self._service(namespace, name)
        if state is not None:
            await self._close_service(state)
        shutil.rmtree(self.dir / namespace / f"msvc-{name}", ignore_errors=True)
