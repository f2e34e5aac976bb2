"""The FastAPI application of one model server: its lifespan (probe server, model load,
rollout router), error handlers, routes, OpenAPI document and middleware."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from modelfactory_serving.dataplane import SERVER_VERSION, DataPlane
from modelfactory_serving.health import HealthServer, probe_answers
from modelfactory_serving.metrics import Metrics, multiprocess_dir_from
from modelfactory_serving.rest.endpoints import add_routes
from modelfactory_serving.rest.errors import add_error_handlers
from modelfactory_serving.rest.middleware import RequestContext
from modelfactory_serving.rest.openapi import openapi_builder
from modelfactory_serving.routing import Router
from modelfactory_serving.settings import Settings


def create_app(settings: Settings, environ: dict[str, str] | None = None) -> FastAPI:
    env = dict(os.environ) if environ is None else environ
    metrics = Metrics(settings.model_name, settings.max_batch_size, multiprocess_dir_from(env))
    dataplane = DataPlane(settings, metrics)
    limit = settings.max_body_bytes
    router = (
        Router(settings, metrics) if settings.route_mode != "none" and settings.route_peer else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        health = None
        if settings.health_port:
            # Up before loading starts: the startup probe sees "loading", not a refused port.
            health = HealthServer(
                settings.host,
                settings.health_port,
                probe_answers(
                    dataplane.server_ready, dataplane.heartbeat, settings.live_stall_seconds
                ),
            )
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
    app.state.router = router
    add_error_handlers(app)
    add_routes(app, dataplane, metrics, limit)
    app.openapi = openapi_builder(app, settings, dataplane)  # type: ignore[method-assign]
    app.add_middleware(
        RequestContext,
        metrics=metrics,
        access=settings.access_log,
        dataplane=dataplane if settings.direct_inference or router else None,
        limit=limit,
        router=router,
        track=settings.route_track,
    )
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: main() exported the settings as MF_* variables."""
    from modelfactory_serving.settings import load_settings

    return create_app(load_settings([]))
