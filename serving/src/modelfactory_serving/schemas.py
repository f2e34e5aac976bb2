"""Pydantic models for the OpenAPI document only: request bodies on the hot path are parsed with
orjson and checked by the codec, never validated through these."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelfactory_api.oip import Datatype


class RequestInput(BaseModel):
    name: str = Field(
        description="'input-0' for one 2-D [rows, features] tensor, or a feature "
        "name for one 1-D tensor per feature."
    )
    shape: list[int]
    datatype: Datatype
    data: list[Any] = Field(description="Row-major tensor data.")
    parameters: dict[str, Any] | None = None


class RequestOutput(BaseModel):
    name: Literal["predict", "predict_proba"]
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "inputs": [
                    {"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [0.5, 1.5]}
                ],
                "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
            }
        }
    )

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


class V1PredictRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"instances": [[0.5, 1.5]]}})

    instances: list[list[Any] | dict[str, Any]] | None = Field(
        None, description="Rows: lists in feature order, or objects keyed by feature name."
    )
    inputs: list[list[Any] | dict[str, Any]] | dict[str, list[Any]] | None = Field(
        None,
        description="Instead of instances: the same rows, or columns ({feature: [values]}).",
    )


class V1PredictResponse(BaseModel):
    predictions: list[Any]


class ErrorResponse(BaseModel):
    error: str
    reason: str | None = None
    request_id: str | None = None


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool
    reason: str | None = None
    message: str | None = None


class ModelReadyResponse(ReadyResponse):
    name: str
    version: str | None = None


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] | None = None


class V1ModelResponse(BaseModel):
    name: str
    ready: bool
    reason: str | None = None
    message: str | None = None


class V1ModelsResponse(BaseModel):
    models: list[str]
