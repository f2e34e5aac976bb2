"""The inference path, the same whether a route or the middleware's direct path takes it:
which paths infer, and one request read, decoded, predicted and answered."""

from __future__ import annotations

from collections.abc import Mapping

from modelfactory_serving.dataplane import DataPlane
from modelfactory_serving.errors import InferenceError
from modelfactory_serving.rest.errors import JSON_HEADERS, error_parts
from modelfactory_serving.rest.transport import (
    Receive,
    binary_header_length,
    body_reader,
    disconnected,
)

INFER_HEADERS = frozenset(
    {b"content-length", b"content-encoding", b"inference-header-content-length"}
)


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
            return 200, await dataplane.infer_v1(name, reader, gone), JSON_HEADERS
        body, header_length = await dataplane.infer_v2(
            name, version, reader, binary_header_length(headers), gone
        )
    except InferenceError as e:
        return error_parts(e)
    if header_length is None:
        return 200, body, JSON_HEADERS
    return (
        200,
        body,
        [
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", str(header_length).encode()),
        ],
    )


def match_inference(method: str, path: str) -> tuple[str, str, str | None, str] | None:
    """(protocol, model name, version, route template) for an inference path, else None."""
    if method != "POST":
        return None
    parts = path.split("/")
    n = len(parts)
    if n == 5 and parts[1] == "v2" and parts[2] == "models" and parts[4] == "infer" and parts[3]:
        return "v2", parts[3], None, "/v2/models/{name}/infer"
    if (
        n == 7
        and parts[1] == "v2"
        and parts[2] == "models"
        and parts[4] == "versions"
        and parts[6] == "infer"
        and parts[3]
        and parts[5]
    ):
        return "v2", parts[3], parts[5], "/v2/models/{name}/versions/{version}/infer"
    if n == 4 and parts[1] == "v1" and parts[2] == "models" and parts[3].endswith(":predict"):
        name = parts[3][: -len(":predict")]
        if name:
            return "v1", name, None, "/v1/models/{name}:predict"
    return None
