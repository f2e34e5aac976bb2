"""HTTP layer: thin FastAPI routes over the data plane, plus request context and metrics."""

from __future__ import annotations

import logging
import os
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
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
from modelfactory_serving.errors import BadRequest, InferenceError, NotReady, PayloadTooLarge
from modelfactory_serving.logs import request_id_var
from modelfactory_serving.metrics import Metrics, multiprocess_dir_from
from modelfactory_serving.settings import Settings

log = logging.getLogger("modelfactory_serving.http")
access_log = logging.getLogger("modelfactory_serving.access")

JSON = "application/json"
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def error_response(error: InferenceError) -> Response:
    body: dict[str, Any] = {"error": error.message}
    if isinstance(error, NotReady):
        body["reason"] = error.reason
    return json_response(body, error.status)


# ---------------------------------------------------------------------------- middleware
class RequestContext:
    """Request id (X-Request-ID honoured or generated, always returned), in-flight gauge,
    latency and status metrics by route template, optional JSON access log, and a last-resort
    500 for anything that escaped the exception handlers."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.access = access

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
            rid = uuid.uuid4().hex
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
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
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
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(label, scope["method"], status, seconds)
            if self.access:
                access_log.info(
                    "%s %s %d", scope["method"], scope["path"], status,
                    extra={"method": scope["method"], "path": scope["path"], "status": status,
                           "route": label, "ms": round(seconds * 1000, 3),
                           "client": (scope.get("client") or ("", 0))[0]},
                )
            request_id_var.reset(token)


# ---------------------------------------------------------------------------- body reading
def body_reader(request: Request, limit: int) -> Callable[[], Awaitable[bytes]]:
    """A reader that enforces the size limit before parsing: on Content-Length first, then on
    the bytes actually received, then on the decompressed size."""
    headers = request.headers
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
        if length is not None:
            body = await request.body()
        else:
            parts, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
                parts.append(chunk)
            body = b"".join(parts)
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


def _header_length(request: Request) -> int | None:
    value = request.headers.get("inference-header-content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest("Inference-Header-Content-Length is not a number") from None


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
        await dataplane.start()
        try:
            yield
        finally:
            await dataplane.stop()

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
        return json_response(body, 200 if ok else 503)

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
        return json_response(body, 200 if ok else 503)

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["v2"],
             responses={200: {"model": schemas.ModelReadyResponse},
                        503: {"model": schemas.ModelReadyResponse}, 404: _ERRORS[404]})
    async def model_version_ready(name: str, version: str) -> Response:
        ok, body = dataplane.model_ready(name, version)
        return json_response(body, 200 if ok else 503)

    # ---------------- inference
    infer_doc: dict[str, Any] = {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/InferenceRequest"}}},
        }
    }

    async def infer(request: Request, name: str, version: str | None) -> Response:
        body, header_length = await dataplane.infer_v2(
            name, version, body_reader(request, limit), _header_length(request)
        )
        if header_length is None:
            return Response(body, media_type=JSON)
        return Response(
            body,
            media_type="application/octet-stream",
            headers={"inference-header-content-length": str(header_length)},
        )

    @app.post("/v2/models/{name}/infer", tags=["v2"], openapi_extra=infer_doc,
              responses={200: {"model": schemas.InferenceResponse}, **_ERRORS})
    async def infer_v2(name: str, request: Request) -> Response:
        return await infer(request, name, None)

    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["v2"],
              openapi_extra=infer_doc,
              responses={200: {"model": schemas.InferenceResponse}, **_ERRORS})
    async def infer_v2_version(name: str, version: str, request: Request) -> Response:
        return await infer(request, name, version)

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
                             200 if ok else 503)

    @app.post("/v1/models/{name}:predict", tags=["kserve-v1"],
              openapi_extra={"requestBody": {"required": True, "content": {JSON: {
                  "schema": {"$ref": "#/components/schemas/V1PredictRequest"}}}}},
              responses={200: {"model": schemas.V1PredictResponse}, **_ERRORS})
    async def v1_predict(name: str, request: Request) -> Response:
        body = await dataplane.infer_v1(name, body_reader(request, limit))
        return Response(body, media_type=JSON)

    # ---------------- metrics
    @app.get("/metrics", tags=["observability"], response_class=Response)
    async def prometheus() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            for model in (schemas.InferenceRequest, schemas.V1PredictRequest):
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(js.pop("$defs", {}))
                components[model.__name__] = js
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(RequestContext, metrics=metrics, access=settings.access_log)
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: main() exported the settings as MF_* variables."""
    from modelfactory_serving.settings import load_settings

    return create_app(load_settings([]))
