"""The OpenAPI document: the request schemas the routes take as raw bodies, the one model's
name and version as the only path values, and examples that fit the served model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from modelfactory_serving import schemas
from modelfactory_serving.dataplane import DataPlane
from modelfactory_serving.rest.errors import JSON
from modelfactory_serving.settings import Settings


def openapi_builder(
    app: FastAPI, settings: Settings, dataplane: DataPlane
) -> Callable[[], dict[str, Any]]:
    """FastAPI's `app.openapi`: the document, kept once the model is loaded."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
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

    return openapi


def _add_examples(doc: dict[str, Any], runtime: Any) -> None:
    """Request examples that fit the served model (shown in /docs, used by schema tools)."""
    row = runtime.sample_row()
    v2_example = {
        "inputs": [
            {"name": f.name, "shape": [1], "datatype": f.v2_datatype, "data": [row[i]]}
            for i, f in enumerate(runtime.features)
        ],
        "outputs": [{"name": name} for name in runtime.outputs],
    }
    v1_example = {"instances": [dict(zip(runtime.feature_names, row, strict=True))]}
    for path, item in doc.get("paths", {}).items():
        post = item.get("post")
        if post is None or "requestBody" not in post:
            continue
        example = v1_example if path.startswith("/v1/") else v2_example
        post["requestBody"]["content"][JSON]["example"] = example
