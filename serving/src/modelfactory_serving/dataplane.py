"""The data plane: model state, readiness, metadata and inference, independent of HTTP.

Routes hand it names, versions and bodies; it answers with dicts or encoded bodies, or raises an
InferenceError that says what is wrong (the route maps it to a status code).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata as pkg_metadata
from typing import Any, Literal

from modelfactory_artifacts.read import ArtifactError, load_artifact
from modelfactory_artifacts.window import WindowError
from modelfactory_serving.batcher import Batcher, PredictCost
from modelfactory_serving.codec.request import Decoded, parse_json
from modelfactory_serving.codec.tensors import Limits
from modelfactory_serving.codec.v1 import decode_v1, encode_v1
from modelfactory_serving.codec.v2 import decode_v2, encode_v2
from modelfactory_serving.cpus import cpu_budget, threads_for
from modelfactory_serving.drift_monitor import DriftConfig, DriftMonitor
from modelfactory_serving.errors import (
    BadRequest,
    DeadlineExceeded,
    NotFound,
    NotReady,
    Overloaded,
)
from modelfactory_serving.health import Heartbeat
from modelfactory_serving.metrics import Metrics
from modelfactory_serving.model import ModelRuntime, Prediction
from modelfactory_serving.settings import Settings

log = logging.getLogger("modelfactory_serving.dataplane")

Status = Literal["Loading", "Ready", "Failed"]
SERVER_NAME = "modelfactory-serving"
try:
    SERVER_VERSION = pkg_metadata.version("modelfactory-serving")
except pkg_metadata.PackageNotFoundError:  # running from a source tree
    SERVER_VERSION = "0.0.0"


@dataclass(frozen=True)
class ModelState:
    status: Status
    reason: str
    message: str


class Deadlines:
    """Per-request deadlines, enforced by one periodic sweep rather than a timer per request
    (a timer costs more than the rest of a small request's handling). Every request gets the
    same timeout, so deadlines expire in arrival order: the sweep looks only at the oldest."""

    def __init__(self, seconds: float, heartbeat: Heartbeat | None = None) -> None:
        self.seconds = seconds
        self.heartbeat = heartbeat or Heartbeat()
        self.tick = min(0.05, seconds / 4)
        # Insertion-ordered: the oldest deadline is the first key.
        self._tasks: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._run(), name="deadlines")

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()

    def add(self, task: asyncio.Task[Any], now: float) -> float:
        deadline = now + self.seconds
        self._tasks[task] = deadline
        return deadline

    def forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """True when `task` was cancelled because its deadline passed; the cancellation is
        then taken back, so the handler can answer 504."""
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    def sweep(self, now: float) -> None:
        expired = []
        for task, deadline in self._tasks.items():  # oldest first: stop at the first alive
            if deadline > now:
                break
            expired.append(task)
        for task in expired:
            del self._tasks[task]
            self._expired.add(task)
            task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.heartbeat.beat()
            await asyncio.sleep(self.tick)
            self.sweep(loop.time())


class DataPlane:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = ModelState("Loading", "Loading", "the model is being loaded")
        self.runtime: ModelRuntime | None = None
        self.batcher: Batcher | None = None
        self.drift: DriftMonitor | None = None
        self.draining = False
        self._load_task: asyncio.Task[None] | None = None
        self.limits = Limits(max_string_chars=settings.max_string_chars)
        # The sweep also shows the event loop still turns (the health listener's liveness).
        self.heartbeat = Heartbeat()
        self.deadlines = Deadlines(settings.timeout_seconds, self.heartbeat)
        self._in_flight = 0
        # Large bodies are parsed and decoded here, off the event loop (one at a time: the
        # work holds the GIL anyway, and this bounds the memory of decodes in progress).
        self._decode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")

    def version_label(self) -> str:
        """The served version's label (metrics of rollouts count answers by it)."""
        if self.runtime is not None:
            return self.runtime.version
        return self.settings.model_version or "unknown"

    @property
    def is_classifier(self) -> bool:
        return self.runtime is not None and self.runtime.is_classifier

    # ------------------------------------------------------------------ lifecycle
    async def start(self, wait: bool = False) -> None:
        """Begin loading. In the background by default: the server answers (not ready)
        meanwhile. With `wait`, only return once loaded or failed: a worker that shares its
        listening socket with others then takes no connection it could not serve."""
        self.deadlines.start()
        self._load_task = asyncio.get_running_loop().create_task(self._load(), name="model-load")
        if wait:
            await asyncio.shield(self._load_task)

    async def wait_loaded(self) -> ModelState:
        if self._load_task is not None:
            await asyncio.shield(self._load_task)
        return self.state

    async def stop(self) -> None:
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self.batcher is not None:
            await self.batcher.stop()
        if self.drift is not None:
            self.drift.stop()
        self.deadlines.stop()
        self._decode_pool.shutdown(wait=False)

    async def _load(self) -> None:
        s = self.settings
        started = time.perf_counter()
        log.info("loading model", extra={"model": s.model_name, "uri": s.model_uri})
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")
        try:
            loaded = await loop.run_in_executor(pool, self._load_sync)
        except ArtifactError as e:
            self._failed(e.reason, e.message)
            return
        except Exception as e:
            self._failed("WarmupFailed", f"the model could not predict a sample row: {e}")
            return
        finally:
            # A shutdown during loading must not wait for the load to finish.
            pool.shutdown(wait=False)
        runtime, cost = loaded
        m = self.metrics
        self.drift = self._drift_monitor(runtime)
        self.batcher = Batcher(
            runtime,
            max_batch_size=s.max_batch_size,
            max_latency_ms=s.max_latency_ms,
            on_batch=m.batch_rows.observe if m else None,
            on_queue=m.queue_rows.set if m else None,
            mode=s.predict_mode,
            cost=cost,
            inline_predict_ms=s.inline_predict_ms,
            max_queue_rows=s.max_queue_rows,
            on_drop=self._dropped,
            on_predicted=self.drift.offer if self.drift is not None else None,
        )
        self.batcher.start()
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # collector's full passes, which would otherwise walk it and stall requests.
        gc.collect()
        gc.freeze()
        self.runtime = runtime
        seconds = time.perf_counter() - started
        self.state = ModelState("Ready", "Ready", f"serving version {runtime.version}")
        if m is not None:
            m.load_seconds.set(seconds)
            m.ready.set(1)
            m.info.labels(
                s.model_name, runtime.version, runtime.loaded.digest, runtime.metadata.estimator
            ).set(1)
        log.info(
            "model ready",
            extra={
                "model": s.model_name,
                "version": runtime.version,
                "digest": runtime.loaded.digest,
                "load_seconds": round(seconds, 3),
                "runtime": runtime.runtime_name,
                "frame_mode": runtime.frame_mode,
                "accepts_nan": runtime.allow_nan,
                "batch_predict_ms": round((runtime.batch_predict_seconds or 0) * 1000, 3),
                "row_predict_ms": round(cost.fixed * 1000, 3),
                "predict": s.predict_mode,
            },
        )

    def _load_sync(self) -> tuple[ModelRuntime, PredictCost]:
        s = self.settings
        loaded = load_artifact(s.model_uri, s.model_digest, with_onnx=s.runtime != "sklearn")
        if s.runtime == "onnx" and loaded.onnx is None:
            onnx = loaded.metadata.onnx
            why = onnx.reason if onnx is not None else "it was written without one"
            raise ArtifactError(
                "OnnxUnavailable",
                f"runtime onnx asked for, but version {loaded.metadata.version} has no verified "
                f"ONNX model: {why}",
            )
        runtime = ModelRuntime(
            loaded,
            s.model_name,
            s.model_version,
            onnx_threads=threads_for(s.onnx_threads, cpu_budget()),
        )
        runtime.warm_up(s.max_batch_size)
        # The cost of one row beside the warm-up's full batch: where each batch is predicted
        # (inline or on the thread) follows from its rows.
        one = runtime.rows_to_batch([runtime.sample_row()])
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            runtime.predict(one, want_proba=False)
            timings.append(time.perf_counter() - started)
        cost = PredictCost.measured(
            min(timings), runtime.batch_predict_seconds or 0.0, s.max_batch_size
        )
        return runtime, cost

    def _drift_monitor(self, runtime: ModelRuntime) -> DriftMonitor | None:
        config = DriftConfig.from_settings(self.settings)
        profile = runtime.metadata.profile
        if not config.enabled or profile is None:
            return None
        monitor = DriftMonitor(
            profile,
            runtime.features,
            config,
            self.settings.model_name,
            runtime.version,
            self.metrics,
            concat=runtime.concat,
        )
        monitor.start()
        return monitor

    def _dropped(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejected.labels(reason).inc()

    def _failed(self, reason: str, message: str) -> None:
        self.state = ModelState("Failed", reason, message)
        if self.metrics is not None:
            self.metrics.ready.set(0)
        log.error(
            "model not loaded: %s",
            message,
            extra={
                "model": self.settings.model_name,
                "uri": self.settings.model_uri,
                "reason": reason,
            },
        )

    # ------------------------------------------------------------------ health and metadata
    def live(self) -> dict[str, Any]:
        return {"live": True}

    def server_ready(self) -> tuple[bool, dict[str, Any]]:
        if self.draining:
            return False, {
                "ready": False,
                "reason": "ShuttingDown",
                "message": "the server is shutting down",
            }
        st = self.state
        if st.status == "Ready":
            return True, {"ready": True}
        return False, {"ready": False, "reason": st.reason, "message": st.message}

    def server_metadata(self) -> dict[str, Any]:
        return {
            "name": SERVER_NAME,
            "version": SERVER_VERSION,
            "extensions": ["binary_tensor_data"],
        }

    def _check_name(self, name: str) -> None:
        if name != self.settings.model_name:
            raise NotFound(
                f"model '{name}' is not served here (this server serves "
                f"'{self.settings.model_name}')"
            )

    def model(self, name: str, version: str | None = None) -> ModelRuntime:
        """The runtime for name[/version], or NotFound / NotReady saying why not."""
        self._check_name(name)
        rt = self.runtime
        if rt is None:
            st = self.state
            raise NotReady(f"model '{name}' is not ready: {st.message}", st.reason)
        if version is not None and version != rt.version:
            raise NotFound(
                f"model '{name}' has no version '{version}' here (serving version '{rt.version}')"
            )
        return rt

    def model_ready(self, name: str, version: str | None = None) -> tuple[bool, dict[str, Any]]:
        self._check_name(name)
        try:
            rt = self.model(name, version)
        except NotReady as e:
            return False, {"name": name, "ready": False, "reason": e.reason, "message": e.message}
        if self.draining:
            return False, {
                "name": name,
                "version": rt.version,
                "ready": False,
                "reason": "ShuttingDown",
                "message": "the server is shutting down",
            }
        return True, {"name": name, "version": rt.version, "ready": True}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        return self.model(name, version).describe()

    def models(self) -> list[str]:
        return [self.settings.model_name]

    # ------------------------------------------------------------------ drift
    def drift_state(self, name: str) -> dict[str, Any]:
        """This replica's drift report and window (the operator sums the replicas')."""
        rt = self.model(name)
        head = {"model_name": rt.name, "model_version": rt.version}
        if self.drift is not None:
            return {**head, **self.drift.state()}
        reason = (
            "drift monitoring is off (MF_DRIFT_ENABLED=false)"
            if not self.settings.drift_enabled
            else f"version {rt.version} has no reference profile to compare live data with"
        )
        return {**head, "enabled": False, "reason": reason, "report": None, "window": None}

    def evaluate_drift(self, name: str, body: bytes) -> dict[str, Any]:
        """Score a window handed in (the sum over replicas) against this version's profile."""
        self.model(name)
        if self.drift is None:
            raise NotFound(self.drift_state(name)["reason"])
        try:
            return self.drift.evaluate_given(parse_json(body))
        except WindowError as e:
            raise BadRequest(f"invalid drift window: {e}") from None

    # ------------------------------------------------------------------ inference
    async def _infer(
        self,
        read_body: Callable[[], Awaitable[bytes]],
        decode: Callable[[bytes], Decoded],
        gone: Callable[[], bool] | None,
    ) -> tuple[Decoded, Prediction]:
        """Admission, deadline, read, decode (off the loop when large), queue, predict."""
        s = self.settings
        batcher = self.batcher
        assert batcher is not None
        if self._in_flight >= s.max_concurrent_requests:
            self._dropped("concurrency")
            raise Overloaded(
                f"the server is at capacity ({self._in_flight} requests in progress); retry later",
                batcher.retry_after(),
            )
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        deadline = self.deadlines.add(task, loop.time())
        self._in_flight += 1
        try:
            batcher.arriving()
            try:
                body = await read_body()
                if len(body) > s.decode_inline_bytes:
                    decoded = await loop.run_in_executor(self._decode_pool, decode, body)
                else:
                    decoded = decode(body)
            finally:
                batcher.arrived()
            try:
                result = await batcher.submit(
                    decoded.batch, decoded.rows, decoded.want_proba, deadline, gone
                )
            except Overloaded:
                self._dropped("queue_full")
                raise
        except asyncio.CancelledError:
            if self.deadlines.expired(task):
                self._dropped("timeout")
                raise DeadlineExceeded(
                    f"no answer within the server's request timeout of {s.timeout_seconds:g} s"
                ) from None
            raise
        finally:
            self._in_flight -= 1
            self.deadlines.forget(task)
        return decoded, result

    async def infer_v2(
        self,
        name: str,
        version: str | None,
        read_body: Callable[[], Awaitable[bytes]],
        header_length: int | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> tuple[bytes, int | None]:
        """-> (response body, JSON header length when it carries binary outputs)."""
        rt = self.model(name, version)
        decoded, result = await self._infer(
            read_body, lambda body: self.decode_v2_body(rt, body, header_length), gone
        )
        return encode_v2(rt, decoded, result.labels, result.proba)

    def decode_v2_body(self, rt: ModelRuntime, body: bytes, header_length: int | None) -> Decoded:
        max_rows, limits = self.settings.max_rows, self.limits
        if header_length is None:
            return decode_v2(rt, parse_json(body), max_rows, limits=limits)
        if header_length < 0 or header_length > len(body):
            raise BadRequest(
                f"Inference-Header-Content-Length {header_length} does not fit the "
                f"{len(body)}-byte body"
            )
        view = memoryview(body)
        return decode_v2(
            rt, parse_json(view[:header_length]), max_rows, view[header_length:], limits
        )

    async def infer_v1(
        self,
        name: str,
        read_body: Callable[[], Awaitable[bytes]],
        gone: Callable[[], bool] | None = None,
    ) -> bytes:
        rt = self.model(name)
        max_rows, limits = self.settings.max_rows, self.limits
        _, result = await self._infer(
            read_body, lambda body: decode_v1(rt, parse_json(body), max_rows, limits), gone
        )
        return encode_v1(rt, result.labels)

    async def infer_v2_dict(
        self, name: str, version: str | None, request: dict[str, Any]
    ) -> dict[str, Any]:
        """Dict in, dict out (JSON tensors only): the same path as HTTP, without HTTP."""
        import orjson

        raw = orjson.dumps(request)

        async def read() -> bytes:
            return raw

        body, _ = await self.infer_v2(name, version, read)
        out: dict[str, Any] = orjson.loads(body)
        return out
