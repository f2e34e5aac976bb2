"""How errors are answered: one JSON body `{"error": ...}` (with the reason of a not-ready
answer, Retry-After when overloaded), the same from the routes, the middleware and FastAPI's own
HTTP and validation errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelfactory_serving.errors import InferenceError, NotReady, Overloaded

JSON = "application/json"
JSON_HEADERS = [(b"content-type", JSON.encode())]


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
    headers = JSON_HEADERS
    if isinstance(error, Overloaded):
        headers = [*headers, (b"retry-after", str(error.retry_after).encode())]
    return error.status, orjson.dumps(body), headers


def add_error_handlers(app: FastAPI) -> None:
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
