"""HTTP layer: thin FastAPI routes over the data plane, plus request context and metrics."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelfactory_serving import schemas
from modelfactory_serving.dataplane import SERVER_VERSION, DataPlane
from modelfactory_serving.errors import (
    BadRequest,
    InferenceError,
    NotReady,
    Overloaded,
    PayloadTooLarge,
)
from modelfactory_serving.health import HealthServer, probe_answers, readiness_status
from modelfactory_serving.logs import request_id_var
from modelfactory_serving.metrics import Metrics, multiprocess_dir_from
from modelfactory_serving.routing import (
    PeerBroken,
    PeerTimeout,
    PeerUnreachable,
    Router,
    outcome,
)
from modelfactory_serving.settings import Settings

log = logging.getLogger("modelfactory_serving.http")
access_log = logging.getLogger("modelfactory_serving.access")

JSON = "application/json"
# A drift window summed over replicas: bin counts and at most 10,000 values per feature.
DRIFT_BODY_BYTES = 16 * 2**20
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def error_response(error: InferenceError) -> Response:
    code, body, headers = error_parts(error)
    return Response(body, status_code=code, headers={k.decode(): v.decode() for k, v in headers})


def error_parts(error: InferenceError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """(status, JSON body, headers) of an error answer."""
    body: dict[str, Any] = {"error": error.message}
    if isinstance(error, NotReady):
        body["reason"] = error.reason
    headers = _JSON_HEADERS
    if isinstance(error, Overloaded):
        headers = [*headers, (b"retry-after", str(error.retry_after).encode())]
    return error.status, orjson.dumps(body), headers


# ---------------------------------------------------------------------------- middleware
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

    def __init__(self, app: ASGIApp, metrics: Metrics, access: bool,
                 dataplane: DataPlane | None = None, limit: int = 0,
                 router: Router | None = None, track: str = "stable") -> None:
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
            direct = (match_inference(scope["method"], scope["path"])
                      if self.dataplane is not None else None)
            health = _HEALTH.get(scope["path"]) if scope["method"] == "GET" else None
            if health is not None and self.dataplane is not None:
                # Probes are answered first, without routing: a saturated server must still
                # answer the kubelet quickly (admission control never applies here).
                route_label = scope["path"]
                code, out = health(self.dataplane)
                body = orjson.dumps(out)
                await send_with_id({"type": "http.response.start", "status": code, "headers": [
                    *_JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
            elif direct is None:
                await self.app(scope, receive, send_with_id)
            else:
                protocol, name, version, route_label = direct
                headers = {k.decode("latin-1"): v.decode("latin-1")
                           for k, v in scope["headers"] if k in _INFER_HEADERS}
                assert self.dataplane is not None
                if self.router is None:
                    code, body, extra = await run_inference(
                        self.dataplane, protocol, name, version, headers, receive, self.limit
                    )
                    answered_here = True
                else:
                    code, body, extra, answered_here = await self.route(
                        scope, protocol, name, version, headers, receive)
                await send_with_id({"type": "http.response.start", "status": code, "headers": [
                    *extra, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
        except ClientDisconnected:
            status = 499
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"],
                          extra={"path": scope["path"]})
            if not started_response:
                body = orjson.dumps({"error": "internal server error", "request_id": rid})
                await send_with_id({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]})
                await send({"type": "http.response.body", "body": body})
        finally:
            in_flight.dec()
            seconds = time.perf_counter() - started
            label = route_label or getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.observe_request(label, method if method in _METHODS else "other",
                                         status, seconds)
            if answered_here and self.version is not None:
                self.metrics.observe_inference(self.version(), self.track, outcome(status),
                                               seconds)
            if self.access:
                access_log.info(
                    "%s %s %d", scope["method"], scope["path"], status,
                    extra={"method": scope["method"], "path": scope["path"], "status": status,
                           "route": label, "ms": round(seconds * 1000, 3),
                           "client": (scope.get("client") or ("", 0))[0]},
                )
            request_id_var.reset(token)


    async def route(
        self, scope: Scope, protocol: str, name: str, version: str | None,
        headers: Mapping[str, str], receive: Receive,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
        """(status, body, headers, answered here) of a request during a rollout."""
        router, dataplane = self.router, self.dataplane
        assert router is not None and dataplane is not None
        raw_headers = scope["headers"]
        split = router.mode == "split"
        if split and not router.to_peer(raw_headers):
            code, body, extra = await run_inference(
                dataplane, protocol, name, version, headers, receive, self.limit)
            return code, body, extra, True
        if not split and not router.mirror_now():
            code, body, extra = await run_inference(
                dataplane, protocol, name, version, headers, receive, self.limit)
            return code, body, extra, True
        try:
            raw = await body_reader({**headers, "content-encoding": "identity"}, receive,
                                    self.limit)()
        except InferenceError as e:
            code, body, extra = error_parts(e)
            return code, body, extra, True
        replay = _replay(raw)
        path = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}"
                                if scope.get("query_string") else "")
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
                err = InferenceError(f"the {router.pin_peer.decode()} version did not answer in "
                                     f"time ({type(e).__name__})", status=504)
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
            dataplane, protocol, name, version, headers, replay, self.limit)
        if not split:
            router.mirror(path, raw_headers, raw, code, body, dataplane.is_classifier)
        return code, body, extra, True


def _replay(body: bytes) -> Receive:
    """A receive() that hands over a body already read, once."""
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}
    return receive


def _live(dataplane: DataPlane) -> tuple[int, dict[str, Any]]:
    return 200, dataplane.live()


def _ready(dataplane: DataPlane) -> tuple[int, dict[str, Any]]:
    ok, body = dataplane.server_ready()
    return readiness_status(ok), body


_HEALTH: dict[str, Callable[[DataPlane], tuple[int, dict[str, Any]]]] = {
    "/v2/health/live": _live,
    "/v2/health/ready": _ready,
}


# ---------------------------------------------------------------------------- inference
_INFER_HEADERS = frozenset({b"content-length", b"content-encoding",
                            b"inference-header-content-length"})


class ClientDisconnected(Exception):
    pass


def body_reader(
    headers: Mapping[str, str], receive: Receive, limit: int
) -> Callable[[], Awaitable[bytes]]:
    """A reader that enforces the size limit before parsing: on Content-Length first, then on
    the bytes actually received, then on the decompressed size."""
    length = headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if declared > limit:
            raise PayloadTooLarge(f"request body is {declared} bytes, the limit is {limit}")
    encoding = (headers.get("content-encoding") or "identity").lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise InferenceError(f"Content-Encoding {encoding!r} is not supported", status=415)

    async def read() -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        if encoding != "identity":
            body = _decompress(body, encoding, limit)
        return body

    return read


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise BadRequest(f"body is not valid {encoding} data: {e}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed request body exceeds the limit of {limit} bytes")
    return out


def _header_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("inference-header-content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest("Inference-Header-Content-Length is not a number") from None


_JSON_HEADERS = [(b"content-type", JSON.encode())]


async def run_inference(
    dataplane: DataPlane,
    protocol: str,
    name: str,
    version: str | None,
    headers: Mapping[str, str],
    receive: Receive,
    limit: int,
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """One inference request -> (status, body, headers). Shared by the FastAPI routes and the
    middleware's direct path, so both answer byte for byte the same."""
    gone = disconnected(receive)
    try:
        reader = body_reader(headers, receive, limit)
        if protocol == "v1":
            return 200, await dataplane.infer_v1(name, reader, gone), _JSON_HEADERS
        body, header_length = await dataplane.infer_v2(
            name, version, reader, _header_length(headers), gone
        )
    except InferenceError as e:
        return error_parts(e)
    if header_length is None:
        return 200, body, _JSON_HEADERS
    return 200, body, [(b"content-type", b"application/octet-stream"),
                       (b"inference-header-content-length", str(header_length).encode())]


def disconnected(receive: Receive) -> Callable[[], bool] | None:
    """A cheap check that the client has gone, read from the server's request cycle (uvicorn
    marks it when the connection drops), so queued work for nobody is dropped before predict."""
    cycle = getattr(receive, "__self__", None)
    if cycle is None or not hasattr(cycle, "disconnected"):
        return None
    return lambda: bool(cycle.disconnected)


def match_inference(method: str, path: str) -> tuple[str, str, str | None, str] | None:
    """(protocol, model name, version, route template) for an inference path, else None."""
    if method != "POST":
        return None
    parts = path.split("/")
    n = len(parts)
    if n == 5 and parts[1] == "v2" and parts[2] == "models" and parts[4] == "infer" and parts[3]:
        return "v2", parts[3], None, "/v2/models/{name}/infer"
    if (n == 7 and parts[1] == "v2" and parts[2] == "models" and parts[4] == "versions"
            and parts[6] == "infer" and parts[3] and parts[5]):
        return "v2", parts[3], parts[5], "/v2/models/{name}/versions/{version}/infer"
    if n == 4 and parts[1] == "v1" and parts[2] == "models" and parts[3].endswith(":predict"):
        name = parts[3][: -len(":predict")]
        if name:
            return "v1", name, None, "/v1/models/{name}:predict"
    return None


# ---------------------------------------------------------------------------- app
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse} for code in (400, 404, 413, 422, 503)
}


def create_app(settings: Settings, environ: dict[str, str] | None = None) -> FastAPI:
    env = dict(os.environ) if environ is None else environ
    metrics = Metrics(settings.model_name, settings.max_batch_size, multiprocess_dir_from(env))
    dataplane = DataPlane(settings, metrics)
    limit = settings.max_body_bytes

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        health = None
        if settings.health_port:
            # Up before loading starts: the startup probe sees "loading", not a refused port.
            health = HealthServer(settings.host, settings.health_port, probe_answers(
                dataplane.server_ready, dataplane.heartbeat, settings.live_stall_seconds))
            health.start()
        try:
            await dataplane.start(wait=settings.workers > 1)
            if router is not None:
                router.start()
            yield
        finally:
            if router is not None:
                await router.close()
            await dataplane.stop()
            if health is not None:
                health.stop()

    app = FastAPI(
        title="Model Factory model server",
        version=SERVER_VERSION,
        description="Open Inference Protocol v2 and KServe v1 for one scikit-learn model "
        f"('{settings.model_name}').",
        lifespan=lifespan,
    )
    app.state.dataplane = dataplane
    app.state.metrics = metrics
    app.state.settings = settings

    # ---------------- errors
    @app.exception_handler(InferenceError)
    async def on_inference_error(request: Request, exc: InferenceError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return json_response({"error": str(exc.detail)}, exc.status_code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return json_response({"error": f"invalid request: {problems}"}, 422)

    # ---------------- health and metadata
    @app.get("/", tags=["kserve-v1"], responses={200: {"model": dict[str, str]}})
    async def root() -> Response:
        return json_response({"status": "alive"})

    @app.get("/v2/health/live", tags=["v2"], responses={200: {"model": schemas.LiveResponse}})
    async def live() -> Response:
        return json_response(dataplane.live())

    @app.get("/v2/health/ready", tags=["v2"],
             responses={200: {"model": schemas.ReadyResponse},
                        503: {"model": schemas.ReadyResponse}})
    async def ready() -> Response:
        ok, body = dataplane.server_ready()
        return json_response(body, readiness_status(ok))

    @app.get("/v2", tags=["v2"], responses={200: {"model": schemas.ServerMetadataResponse}})
    async def server_metadata() -> Response:
        return json_response(dataplane.server_metadata())

    @app.get("/v2/models/{name}", tags=["v2"],
             responses={200: {"model": schemas.ModelMetadataResponse}, **_ERRORS})
    async def model_metadata(name: str) -> Response:
        return json_response(dataplane.model_metadata(name))

    @app.get("/v2/models/{name}/versions/{version}", tags=["v2"],
             responses={200: {"model": schemas.ModelMetadataResponse}, **_ERRORS})
    async def model_version_metadata(name: str, version: str) -> Response:
        return json_response(dataplane.model_metadata(name, version))

    @app.get("/v2/models/{name}/ready", tags=["v2"],
             responses={200: {"model": schemas.ModelReadyResponse},
                        503: {"model": schemas.ModelReadyResponse}, 404: _ERRORS[404]})
    async def model_ready(name: str) -> Response:
        ok, body = dataplane.model_ready(name)
        return json_response(body, readiness_status(ok))

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["v2"],
             responses={200: {"model": schemas.ModelReadyResponse},
                        503: {"model": schemas.ModelReadyResponse}, 404: _ERRORS[404]})
    async def model_version_ready(name: str, version: str) -> Response:
        ok, body = dataplane.model_ready(name, version)
        return json_response(body, readiness_status(ok))

    # ---------------- drift
    @app.get("/v2/models/{name}/drift", tags=["drift"],
             responses={200: {"model": dict[str, Any]}, **_ERRORS})
    async def drift(name: str) -> Response:
        return json_response(dataplane.drift_state(name))

    @app.post("/v2/models/{name}/drift/evaluate", tags=["drift"],
              responses={200: {"model": dict[str, Any]}, **_ERRORS})
    async def drift_evaluate(name: str, request: Request) -> Response:
        body = await body_reader(request.headers, request.receive, DRIFT_BODY_BYTES)()
        return json_response(await asyncio.to_thread(dataplane.evaluate_drift, name, body))

    # ---------------- inference
    infer_doc: dict[str, Any] = {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/InferenceRequest"}}},
        }
    }

    async def infer(request: Request, protocol: str, name: str, version: str | None) -> Response:
        status, body, headers = await run_inference(
            dataplane, protocol, name, version, request.headers, request.receive, limit
        )
        response = Response(body, status_code=status)
        response.raw_headers = [*response.raw_headers, *headers]
        return response

    @app.post("/v2/models/{name}/infer", tags=["v2"], openapi_extra=infer_doc,
              responses={200: {"model": schemas.InferenceResponse}, **_ERRORS})
    async def infer_v2(name: str, request: Request) -> Response:
        return await infer(request, "v2", name, None)

    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["v2"],
              openapi_extra=infer_doc,
              responses={200: {"model": schemas.InferenceResponse}, **_ERRORS})
    async def infer_v2_version(name: str, version: str, request: Request) -> Response:
        return await infer(request, "v2", name, version)

    # ---------------- KServe v1
    @app.get("/v1/models", tags=["kserve-v1"], responses={200: {"model": schemas.V1ModelsResponse}})
    async def v1_models() -> Response:
        return json_response({"models": dataplane.models()})

    @app.get("/v1/models/{name}", tags=["kserve-v1"],
             responses={200: {"model": schemas.V1ModelResponse},
                        503: {"model": schemas.V1ModelResponse}, 404: _ERRORS[404]})
    async def v1_model(name: str) -> Response:
        ok, body = dataplane.model_ready(name)
        return json_response({k: v for k, v in body.items() if k != "version"},
                             readiness_status(ok))

    @app.post("/v1/models/{name}:predict", tags=["kserve-v1"],
              openapi_extra={"requestBody": {"required": True, "content": {JSON: {
                  "schema": {"$ref": "#/components/schemas/V1PredictRequest"}}}}},
              responses={200: {"model": schemas.V1PredictResponse}, **_ERRORS})
    async def v1_predict(name: str, request: Request) -> Response:
        return await infer(request, "v1", name, None)

    # ---------------- metrics
    @app.get("/metrics", tags=["observability"], response_class=Response)
    async def prometheus() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version,
                          description=app.description, routes=app.routes)
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in (schemas.InferenceRequest, schemas.V1PredictRequest):
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(js.pop("$defs", {}))
            components[model.__name__] = js
        # This server has one model (and, once loaded, one version): say so, so clients and
        # schema-driven tools address it.
        runtime = dataplane.runtime
        enums = {"name": [settings.model_name]}
        if runtime is not None:
            enums["version"] = [runtime.version]
        for item in doc.get("paths", {}).values():
            for operation in item.values():
                for param in operation.get("parameters", []):
                    if param.get("in") == "path" and param.get("name") in enums:
                        param["schema"] = {"type": "string", "enum": enums[param["name"]]}
        if runtime is not None:
            _add_examples(doc, runtime)
            app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
    router = (Router(settings, metrics)
              if settings.route_mode != "none" and settings.route_peer else None)
    app.state.router = router
    app.add_middleware(RequestContext, metrics=metrics, access=settings.access_log,
                       dataplane=dataplane if settings.direct_inference or router else None,
                       limit=limit, router=router, track=settings.route_track)
    return app


def _add_examples(doc: dict[str, Any], runtime: Any) -> None:
    """Request examples that fit the served model (shown in /docs, used by schema tools)."""
    row = runtime.sample_row()
    v2_example = {
        "inputs": [{"name": f.name, "shape": [1], "datatype": f.v2_datatype, "data": [row[i]]}
                   for i, f in enumerate(runtime.features)],
        "outputs": [{"name": name} for name in runtime.outputs],
    }
    v1_example = {"instances": [dict(zip(runtime.feature_names, row, strict=True))]}
    for path, item in doc.get("paths", {}).items():
        post = item.get("post")
        if post is None or "requestBody" not in post:
            continue
        example = v1_example if path.startswith("/v1/") else v2_example
        post["requestBody"]["content"][JSON]["example"] = example


def create_app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: main() exported the settings as MF_* variables."""
    from modelfactory_serving.settings import load_settings

    return create_app(load_settings([]))
