"""Reading a request off the ASGI connection: the body within its size limit (declared,
received and decompressed), gzip and deflate, the binary header length, and whether the client
is still there."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from modelfactory_serving.errors import BadRequest, InferenceError, PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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


def binary_header_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("inference-header-content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest("Inference-Header-Content-Length is not a number") from None


def disconnected(receive: Receive) -> Callable[[], bool] | None:
    """A cheap check that the client has gone, read from the server's request cycle (uvicorn
    marks it when the connection drops), so queued work for nobody is dropped before predict."""
    cycle = getattr(receive, "__self__", None)
    if cycle is None or not hasattr(cycle, "disconnected"):
        return None
    return lambda: bool(cycle.disconnected)


def replay(body: bytes) -> Receive:
    """A receive() that hands over a body already read, once."""

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
