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

from modelfactory_serving.artifact import ArtifactError, load_artifact
from modelfactory_serving.batcher import Batcher
from modelfactory_serving.codec import (
    Decoded,
    decode_v1,
    decode_v2,
    encode_v1,
    encode_v2,
    parse_json,
)
from modelfactory_serving.errors import BadRequest, NotFound, NotReady
from modelfactory_serving.metrics import Metrics
from modelfactory_serving.model import ModelRuntime
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


class DataPlane:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = ModelState("Loading", "Loading", "the model is being loaded")
        self.runtime: ModelRuntime | None = None
        self.batcher: Batcher | None = None
        self.draining = False
        self._load_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self, wait: bool = False) -> None:
        """Begin loading. In the background by default: the server answers (not ready)
        meanwhile. With `wait`, only return once loaded or failed: a worker that shares its
        listening socket with others then takes no connection it could not serve."""
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

    async def _load(self) -> None:
        s = self.settings
        started = time.perf_counter()
        log.info("loading model", extra={"model": s.model_name, "uri": s.model_uri})
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")
        try:
            runtime = await loop.run_in_executor(pool, self._load_sync)
        except ArtifactError as e:
            self._failed(e.reason, e.message)
            return
        except Exception as e:
            self._failed("WarmupFailed", f"the model could not predict a sample row: {e}")
            return
        finally:
            # A shutdown during loading must not wait for the load to finish.
            pool.shutdown(wait=False)
        inline = s.predict_mode == "inline" or (
            s.predict_mode == "auto"
            and (runtime.batch_predict_seconds or 0.0) * 1000.0 <= s.inline_predict_ms
        )
        m = self.metrics
        self.batcher = Batcher(
            runtime,
            max_batch_size=s.max_batch_size,
            max_latency_ms=s.max_latency_ms,
            inline=inline,
            on_batch=m.batch_rows.observe if m else None,
            on_queue=m.queue_rows.set if m else None,
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
                "frame_mode": runtime.frame_mode,
                "accepts_nan": runtime.allow_nan,
                "batch_predict_ms": round((runtime.batch_predict_seconds or 0) * 1000, 3),
                "predict": "inline" if inline else "thread",
            },
        )

    def _load_sync(self) -> ModelRuntime:
        s = self.settings
        loaded = load_artifact(s.model_uri, s.model_digest)
        runtime = ModelRuntime(loaded, s.model_name, s.model_version)
        runtime.warm_up(s.max_batch_size)
        return runtime

    def _failed(self, reason: str, message: str) -> None:
        self.state = ModelState("Failed", reason, message)
        if self.metrics is not None:
            self.metrics.ready.set(0)
        log.error(
            "model not loaded: %s", message,
            extra={"model": self.settings.model_name, "uri": self.settings.model_uri,
                   "reason": reason},
        )

    # ------------------------------------------------------------------ health and metadata
    def live(self) -> dict[str, Any]:
        return {"live": True}

    def server_ready(self) -> tuple[bool, dict[str, Any]]:
        if self.draining:
            return False, {"ready": False, "reason": "ShuttingDown",
                           "message": "the server is shutting down"}
        st = self.state
        if st.status == "Ready":
            return True, {"ready": True}
        return False, {"ready": False, "reason": st.reason, "message": st.message}

    def server_metadata(self) -> dict[str, Any]:
        return {
            "name": SERVER_NAME,
            "version": SERVER_VERSION,
            "extensions": ["binary_tensor_data", "model_repository_metadata"],
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
                f"model '{name}' has no version '{version}' here (serving version "
                f"'{rt.version}')"
            )
        return rt

    def model_ready(self, name: str, version: str | None = None) -> tuple[bool, dict[str, Any]]:
        self._check_name(name)
        try:
            rt = self.model(name, version)
        except NotReady as e:
            return False, {"name": name, "ready": False, "reason": e.reason, "message": e.message}
        if self.draining:
            return False, {"name": name, "version": rt.version, "ready": False,
                           "reason": "ShuttingDown", "message": "the server is shutting down"}
        return True, {"name": name, "version": rt.version, "ready": True}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        return self.model(name, version).describe()

    def models(self) -> list[str]:
        return [self.settings.model_name]

    # ------------------------------------------------------------------ inference
    async def infer_v2(
        self,
        name: str,
        version: str | None,
        read_body: Callable[[], Awaitable[bytes]],
        header_length: int | None = None,
    ) -> tuple[bytes, int | None]:
        """-> (response body, JSON header length when it carries binary outputs)."""
        rt = self.model(name, version)
        batcher = self.batcher
        assert batcher is not None
        batcher.arriving()
        try:
            body = await read_body()
            decoded = self.decode_v2_body(rt, body, header_length)
        finally:
            batcher.arrived()
        result = await batcher.submit(decoded.batch, decoded.rows, decoded.want_proba)
        return encode_v2(rt, decoded, result.labels, result.proba)

    def decode_v2_body(self, rt: ModelRuntime, body: bytes, header_length: int | None) -> Decoded:
        if header_length is None:
            return decode_v2(rt, parse_json(body), self.settings.max_rows)
        if header_length < 0 or header_length > len(body):
            raise BadRequest(
                f"Inference-Header-Content-Length {header_length} does not fit the "
                f"{len(body)}-byte body"
            )
        view = memoryview(body)
        return decode_v2(
            rt, parse_json(view[:header_length]), self.settings.max_rows, view[header_length:]
        )

    async def infer_v1(
        self, name: str, read_body: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        rt = self.model(name)
        batcher = self.batcher
        assert batcher is not None
        batcher.arriving()
        try:
            body = await read_body()
            decoded = decode_v1(rt, parse_json(body), self.settings.max_rows)
        finally:
            batcher.arrived()
        result = await batcher.submit(decoded.batch, decoded.rows, False)
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
