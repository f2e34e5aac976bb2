"""The routes: health, server and model metadata, drift, inference (v2 and KServe v1) and
/metrics, each a thin call into the data plane."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from modelfactory_serving import schemas
from modelfactory_serving.dataplane import DataPlane
from modelfactory_serving.health import readiness_status
from modelfactory_serving.metrics import Metrics
from modelfactory_serving.rest.errors import JSON, json_response
from modelfactory_serving.rest.inference import run_inference
from modelfactory_serving.rest.transport import body_reader

# A drift window summed over replicas: bin counts and at most 10,000 values per feature.
DRIFT_BODY_BYTES = 16 * 2**20
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse} for code in (400, 404, 413, 422, 503)
}


def add_routes(app: FastAPI, dataplane: DataPlane, metrics: Metrics, limit: int) -> None:
    """The server's routes on `app`; inference bodies are read up to `limit` bytes."""

    # ---------------- health and metadata
    @app.get("/", tags=["kserve-v1"], responses={200: {"model": dict[str, str]}})
    async def root() -> Response:
        return json_response({"status": "alive"})

    @app.get("/v2/health/live", tags=["v2"], responses={200: {"model": schemas.LiveResponse}})
    async def live() -> Response:
        return json_response(dataplane.live())

    @app.get(
        "/v2/health/ready",
        tags=["v2"],
        responses={200: {"model": schemas.ReadyResponse}, 503: {"model": schemas.ReadyResponse}},
    )
    async def ready() -> Response:
        ok, body = dataplane.server_ready()
        return json_response(body, readiness_status(ok))

    @app.get("/v2", tags=["v2"], responses={200: {"model": schemas.ServerMetadataResponse}})
    async def server_metadata() -> Response:
        return json_response(dataplane.server_metadata())

    @app.get(
        "/v2/models/{name}",
        tags=["v2"],
        responses={200: {"model": schemas.ModelMetadataResponse}, **_ERRORS},
    )
    async def model_metadata(name: str) -> Response:
        return json_response(dataplane.model_metadata(name))

    @app.get(
        "/v2/models/{name}/versions/{version}",
        tags=["v2"],
        responses={200: {"model": schemas.ModelMetadataResponse}, **_ERRORS},
    )
    async def model_version_metadata(name: str, version: str) -> Response:
        return json_response(dataplane.model_metadata(name, version))

    @app.get(
        "/v2/models/{name}/ready",
        tags=["v2"],
        responses={
            200: {"model": schemas.ModelReadyResponse},
            503: {"model": schemas.ModelReadyResponse},
            404: _ERRORS[404],
        },
    )
    async def model_ready(name: str) -> Response:
        ok, body = dataplane.model_ready(name)
        return json_response(body, readiness_status(ok))

    @app.get(
        "/v2/models/{name}/versions/{version}/ready",
        tags=["v2"],
        responses={
            200: {"model": schemas.ModelReadyResponse},
            503: {"model": schemas.ModelReadyResponse},
            404: _ERRORS[404],
        },
    )
    async def model_version_ready(name: str, version: str) -> Response:
        ok, body = dataplane.model_ready(name, version)
        return json_response(body, readiness_status(ok))

    # ---------------- drift
    @app.get(
        "/v2/models/{name}/drift",
        tags=["drift"],
        responses={200: {"model": dict[str, Any]}, **_ERRORS},
    )
    async def drift(name: str) -> Response:
        return json_response(dataplane.drift_state(name))

    @app.post(
        "/v2/models/{name}/drift/evaluate",
        tags=["drift"],
        responses={200: {"model": dict[str, Any]}, **_ERRORS},
    )
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

    @app.post(
        "/v2/models/{name}/infer",
        tags=["v2"],
        openapi_extra=infer_doc,
        responses={200: {"model": schemas.InferenceResponse}, **_ERRORS},
    )
    async def infer_v2(name: str, request: Request) -> Response:
        return await infer(request, "v2", name, None)

    @app.post(
        "/v2/models/{name}/versions/{version}/infer",
        tags=["v2"],
        openapi_extra=infer_doc,
        responses={200: {"model": schemas.InferenceResponse}, **_ERRORS},
    )
    async def infer_v2_version(name: str, version: str, request: Request) -> Response:
        return await infer(request, "v2", name, version)

    # ---------------- KServe v1
    @app.get("/v1/models", tags=["kserve-v1"], responses={200: {"model": schemas.V1ModelsResponse}})
    async def v1_models() -> Response:
        return json_response({"models": dataplane.models()})

    @app.get(
        "/v1/models/{name}",
        tags=["kserve-v1"],
        responses={
            200: {"model": schemas.V1ModelResponse},
            503: {"model": schemas.V1ModelResponse},
            404: _ERRORS[404],
        },
    )
    async def v1_model(name: str) -> Response:
        ok, body = dataplane.model_ready(name)
        return json_response(
            {k: v for k, v in body.items() if k != "version"}, readiness_status(ok)
        )

    @app.post(
        "/v1/models/{name}:predict",
        tags=["kserve-v1"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/V1PredictRequest"}}},
            }
        },
        responses={200: {"model": schemas.V1PredictResponse}, **_ERRORS},
    )
    async def v1_predict(name: str, request: Request) -> Response:
        return await infer(request, "v1", name, None)

    # ---------------- metrics
    @app.get("/metrics", tags=["observability"], response_class=Response)
    async def prometheus() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)
