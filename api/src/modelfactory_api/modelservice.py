"""ModelService: which model to serve, how many replicas, how to batch."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from modelfactory_api.base import (
    CPU_QUANTITY,
    MEMORY_QUANTITY,
    STORAGE_URI,
    ApiModel,
    Condition,
    cel,
)
from modelfactory_api.pod import PodSettings
from modelfactory_api.quantity import parse as parse_quantity

MODELSERVICE_PLURAL = "modelservices"
MODELSERVICE_KIND = "ModelService"


class ModelSource(ApiModel):
    """The model to serve: follow a TrainingJob, or a fixed artifact URI with its digest."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "has(self.trainingJob) != has(self.uri)",
                "spec.model: set exactly one of trainingJob and uri",
            ),
            ("!has(self.uri) || has(self.digest)", "spec.model.digest is required with uri"),
            (
                "!has(self.version) || has(self.trainingJob)",
                "spec.model.version only applies with trainingJob",
            ),
        )
    )

    trainingJob: str | None = Field(
        None,
        description="Name of a TrainingJob in the same namespace; its latest good version is "
        "served unless version pins one.",
        max_length=253,
    )
    version: int | None = Field(
        None, description="Pin this version of the TrainingJob's model.", ge=1
    )
    uri: str | None = Field(
        None,
        description=(
            "URI of a model version directory (holding metadata.json and the model): s3://, "
            "gs://, pvc://<claim>/path, or, with the local launcher only, file:///path or /path."
        ),
        pattern=STORAGE_URI,
        max_length=2048,
    )
    digest: str | None = Field(
        None,
        description="sha256:<hex> of the model file; required with uri.",
        pattern=r"^sha256:[a-f0-9]{64}$",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if (self.trainingJob is None) == (self.uri is None):
            raise ValueError("set exactly one of trainingJob and uri")
        if self.uri is not None and self.digest is None:
            raise ValueError("digest is required with uri")
        if self.version is not None and self.trainingJob is None:
            raise ValueError("version only applies with trainingJob")
        return self


class ReplicaSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel(
            ("self.min <= self.max", "spec.replicas.min must not exceed spec.replicas.max"),
        )
    )

    min: int = Field(1, description="Fewest replicas.", ge=1, le=1000)
    max: int = Field(1, description="Most replicas.", ge=1, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaSpec:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class AutoscalingSpec(ApiModel):
    metric: Literal["cpu", "memory"] = Field("cpu", description="Resource metric to scale on.")
    targetUtilization: int = Field(
        70, description="Target average utilisation in percent of the request.", ge=1, le=100
    )


class ResourceSpec(ApiModel):
    cpu: str = Field("500m", description="CPU request per replica.", pattern=CPU_QUANTITY)
    memory: str = Field(
        "512Mi",
        description="Memory request per replica.",
        pattern=MEMORY_QUANTITY,
    )
    cpuLimit: str | None = Field(
        None, description="CPU limit per replica; none when unset.", pattern=CPU_QUANTITY
    )
    memoryLimit: str | None = Field(
        None,
        description="Memory limit per replica; the request when unset.",
        pattern=MEMORY_QUANTITY,
    )

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> ResourceSpec:
        for request, limit, name in (
            (self.cpu, self.cpuLimit, "cpu"),
            (self.memory, self.memoryLimit, "memory"),
        ):
            if limit is not None and parse_quantity(limit) < parse_quantity(request):
                raise ValueError(f"{name}Limit {limit} is below the {name} request {request}")
        return self


class BatchingSpec(ApiModel):
    maxBatchSize: int = Field(
        32, description="Most rows merged into one predict call.", ge=1, le=4096
    )
    maxLatencyMs: float = Field(
        2.0, description="Longest a request waits for others to join its batch.", ge=0, le=1000
    )


class ModelServiceSpec(ApiModel):
    """Desired state of a ModelService."""

    model: ModelSource = Field(description="Model to serve.")
    replicas: ReplicaSpec = Field(
        default_factory=ReplicaSpec,  # type: ignore[arg-type]
        description="Replica bounds.",
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec,  # type: ignore[arg-type]
        description="Horizontal autoscaling.",
    )
    resources: ResourceSpec = Field(
        default_factory=ResourceSpec,  # type: ignore[arg-type]
        description="Resources per replica.",
    )
    batching: BatchingSpec = Field(
        default_factory=BatchingSpec,  # type: ignore[arg-type]
        description="Adaptive batching.",
    )
    image: str | None = Field(
        None, description="Serving image; the operator's default when unset.", max_length=512
    )
    workers: int = Field(1, description="Server worker processes per replica.", ge=1, le=64)
    pod: PodSettings = Field(
        default_factory=PodSettings,  # type: ignore[arg-type]
        description=(
            "Settings of the server pods: image pull secrets, scheduling, ServiceAccount, extra "
            "environment."
        ),
    )


class ModelServiceStatus(ApiModel):
    phase: str | None = Field(None, description="Pending, Ready, Degraded or Failed.")
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations.")
    observedGeneration: int | None = Field(None, description="Generation last acted upon.")
    url: str | None = Field(None, description="Base URL of the inference endpoints.")
    modelVersion: int | None = Field(None, description="Model version being served.")
    modelUri: str | None = Field(None, description="URI of the model version being served.")
    replicas: int | None = Field(None, description="Current replicas.")
    readyReplicas: int | None = Field(None, description="Replicas ready to serve.")
    releaseRevision: int | None = Field(None, description="Helm release revision.")
    appliedHash: str | None = Field(None, description="Hash of the workload configuration applied.")
