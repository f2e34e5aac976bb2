"""ModelService: which model to serve, how many replicas, how to batch."""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from modelfactory_api.base import (
    CPU_QUANTITY,
    MEMORY_QUANTITY,
    STORAGE_URI,
    ApiModel,
    Condition,
    cel,
)
from modelfactory_api.pod import DNS_SUBDOMAIN, PodSettings
from modelfactory_api.quantity import parse as parse_quantity
from modelfactory_api.uris import dot_dot_rule, no_dot_dot

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
        description="Name of a TrainingJob in the same namespace; the version it promoted (its "
        "status.model) is used unless version pins one.",
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
        json_schema_extra=dot_dot_rule("spec.model.uri"),
    )
    digest: str | None = Field(
        None,
        description="sha256:<hex> of the version's metadata.json (which records the model "
        "file's sha256); required with uri.",
        pattern=r"^sha256:[a-f0-9]{64}$",
    )

    _uri = field_validator("uri")(no_dot_dot)

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
    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.maxQueueRows >= self.maxBatchSize",
                "spec.batching.maxQueueRows must be at least spec.batching.maxBatchSize",
            ),
        )
    )

    maxBatchSize: int = Field(
        32, description="Most rows merged into one predict call.", ge=1, le=4096
    )
    maxLatencyMs: float = Field(
        2.0, description="Longest a request waits for others to join its batch.", ge=0, le=1000
    )
    maxQueueRows: int = Field(
        1024,
        description="Rows that may wait for the model in one server process, all requests "
        "together (the queue of adaptive batching). A request that would go past it is refused "
        "at once with 503 and Retry-After, so a client or load balancer can go elsewhere "
        "instead of waiting behind work the replica cannot catch up on.",
        ge=1,
        le=1_000_000,
    )

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> BatchingSpec:
        if self.maxQueueRows < self.maxBatchSize:
            raise ValueError("maxQueueRows must be at least maxBatchSize")
        return self


class DriftThresholds(ApiModel):
    psi: float = Field(
        0.2,
        description="Population stability index above which a numeric feature has drifted "
        "(0.1 is commonly read as a moderate shift, 0.2 as a significant one).",
        gt=0,
        le=100,
    )
    jensenShannon: float = Field(
        0.1,
        description="Jensen-Shannon distance (base 2, 0..1) above which a categorical feature "
        "has drifted.",
        gt=0,
        le=1,
    )
    ksPValue: float = Field(
        0.01,
        description="Two-sample Kolmogorov-Smirnov p-value (live reservoir against the "
        "training sample) below which a numeric feature has drifted, after correction for the "
        "number of features tested.",
        gt=0,
        lt=1,
    )
    driftShare: float = Field(
        0.5,
        description="Share of drifted features from which the whole dataset counts as drifted.",
        gt=0,
        le=1,
    )


class DriftSpec(ApiModel):
    enabled: bool = Field(
        True,
        description="Compare live traffic with the served version's reference profile (from "
        "training) and report drift in status.drift and the DataDrift condition.",
    )
    window: int = Field(
        10_000,
        description="Rows of live traffic compared with the reference (a sliding window, per "
        "replica; the status sums the replicas' windows).",
        ge=100,
        le=10_000_000,
    )
    evaluateEverySamples: int = Field(
        1_000,
        description="Evaluate after this many new rows (at most once a second)...",
        ge=1,
        le=10_000_000,
    )
    evaluateSeconds: int = Field(
        30, description="...or at the latest after this many seconds.", ge=1, le=86_400
    )
    minSamples: int = Field(
        500,
        description="Fewer rows than this in the window give no verdict (InsufficientSamples).",
        ge=10,
        le=10_000_000,
    )
    maxRowsPerSecond: int = Field(
        1_000,
        description="Rows per second and replica measured at most; above it a uniform sample "
        "of the traffic is, so drift costs the same at any load (about 1 % of a CPU at the "
        "default; the window then spans more time, never fewer rows).",
        ge=1,
        le=10_000_000,
    )
    thresholds: DriftThresholds = Field(
        default_factory=DriftThresholds,  # type: ignore[arg-type]
        description="When a feature, and the dataset, count as drifted.",
    )


class MonitoringSpec(ApiModel):
    drift: DriftSpec = Field(
        default_factory=DriftSpec,  # type: ignore[arg-type]
        description="Data drift of live traffic against the training data.",
    )


class CanaryAnalysis(ApiModel):
    """How a canary is judged against the stable version, once per step interval, from the
    servers' own per-version request counts and latency histograms."""

    maxErrorRateIncrease: float = Field(
        0.01,
        description="The canary fails an interval when its share of failed requests (any "
        "non-2xx answer) exceeds the stable version's by more than this (0..1).",
        ge=0,
        le=1,
    )
    latencyPercentile: int = Field(
        95,
        description="Latency percentile compared between the canary and the stable version.",
        ge=50,
        le=99,
    )
    maxLatencyRatio: float = Field(
        1.5,
        description="The canary fails an interval when its latency percentile exceeds this "
        "many times the stable version's (plus latencySlackMs).",
        ge=1,
        le=100,
    )
    latencySlackMs: float = Field(
        5.0,
        description="Absolute slack added to the latency bound, so sub-millisecond noise never "
        "fails a canary.",
        ge=0,
        le=60_000,
    )
    failureThreshold: int = Field(
        2,
        description="Failed intervals in a row after which the canary is rolled back.",
        ge=1,
        le=100,
    )


class ShadowSpec(ApiModel):
    percent: int = Field(
        100,
        description="Share of live requests (percent) mirrored to the new version; its answers "
        "are compared with the stable version's and never returned to clients.",
        ge=1,
        le=100,
    )
    minAgreement: float = Field(
        0.95,
        description="Classifiers: the least share of mirrored rows whose predicted label equals "
        "the stable version's for promotion (0..1).",
        ge=0,
        le=1,
    )
    maxMeanAbsoluteError: float | None = Field(
        None,
        description="Regressors: the largest mean absolute difference between the two "
        "versions' predictions for promotion; unbounded when unset.",
        ge=0,
    )
    maxMirrorsInFlight: int = Field(
        64,
        description="Mirrored requests in flight per server process at most; beyond it a "
        "request is not mirrored (the shadow never slows or grows the stable server).",
        ge=1,
        le=10_000,
    )


class ExperimentSpec(ApiModel):
    model: ModelSource = Field(description="The version served as variant b.")
    weight: int = Field(50, description="Percent of requests answered by variant b.", ge=0, le=100)


class RolloutSpec(ApiModel):
    """How a new model version replaces the served one."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.strategy != 'Experiment' || has(self.experiment)",
                "spec.rollout.experiment is required with strategy Experiment",
            ),
            ("!has(self.steps) || self.steps.isSorted()", "spec.rollout.steps must increase"),
            (
                "!has(self.steps) || size(self.steps) == 0 || "
                "self.steps[size(self.steps) - 1] == 100",
                "spec.rollout.steps must end at 100",
            ),
        )
    )

    strategy: Literal["Immediate", "Canary", "Shadow", "Experiment"] = Field(
        "Immediate",
        description="Immediate: a new version replaces the served one at once (a rolling "
        "update). Canary: the new version takes the weights of steps in turn, judged by "
        "analysis at every step, and is promoted or rolled back. Shadow: the new version gets "
        "a mirror of live traffic and is promoted when it agrees with the stable version. "
        "Experiment: a fixed split between spec.model (variant a) and experiment.model "
        "(variant b) for as long as it stays.",
    )
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 50, 100],
        description="Canary: percent of requests sent to the new version at each step, "
        "increasing, ending at 100.",
        min_length=1,
        max_length=20,
    )
    stepIntervalSeconds: int = Field(
        60,
        description="Canary and Shadow: length of a step (and of one analysis interval).",
        ge=1,
        le=86_400,
    )
    progressDeadlineSeconds: int = Field(
        600,
        description="Canary and Shadow: longest the servers of a step may take to be rolled "
        "out and ready; past it the new version is rolled back (a version that never starts).",
        ge=5,
        le=86_400,
    )
    minRequests: int = Field(
        100,
        description="Requests the new version must have answered in an interval before it is "
        "judged; an interval with fewer is extended.",
        ge=1,
        le=100_000_000,
    )
    autoPromote: bool = Field(
        True,
        description="Promote when every step passed; false: wait at the last step until "
        "status.rollout is approved by setting spec.rollout.promote to the candidate version.",
    )
    promote: int | None = Field(
        None,
        description="With autoPromote false: the candidate version a person approved.",
        ge=1,
    )
    stickyHeader: str = Field(
        "x-model-variant",
        description="Request header that pins a request to a track: stable or canary (a or b "
        "in an Experiment).",
        pattern=r"^[a-z0-9-]{1,64}$",
    )
    analysis: CanaryAnalysis = Field(
        default_factory=CanaryAnalysis,  # type: ignore[arg-type]
        description="When a canary step passes or fails.",
    )
    shadow: ShadowSpec = Field(
        default_factory=ShadowSpec,  # type: ignore[arg-type]
        description="Shadow strategy: what is mirrored and when the shadow passes.",
    )
    experiment: ExperimentSpec | None = Field(
        None, description="Experiment strategy: variant b and its share."
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[int]) -> list[int]:
        if any(not 1 <= w <= 100 for w in steps):
            raise ValueError("each weight is a percent between 1 and 100")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("weights must increase")
        if steps[-1] != 100:
            raise ValueError("the last step must be 100")
        return steps

    @model_validator(mode="after")
    def _experiment(self) -> RolloutSpec:
        if self.strategy == "Experiment" and self.experiment is None:
            raise ValueError("experiment is required with strategy Experiment")
        return self


class DriftStatus(ApiModel):
    modelVersion: int | None = Field(None, description="Model version the drift is measured for.")
    drifted: bool | None = Field(None, description="Whether the dataset has drifted.")
    score: float | None = Field(
        None, description="Share of features that drifted (0..1), the dataset-level score."
    )
    driftedFeatures: list[str] = Field(
        default_factory=list, description="Features whose distribution has moved."
    )
    predictionDrift: float | None = Field(
        None, description="Drift score of the model's predictions against training."
    )
    samples: int = Field(0, description="Rows in the window, summed over all replicas.")
    replicas: int = Field(0, description="Replicas whose windows were summed.")
    lastEvaluated: str | None = Field(None, description="When drift was last evaluated.")


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Gateway API's Hostname: a DNS name, optionally with one leading wildcard label.
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class GatewayParent(ApiModel):
    """A Gateway (or one of its listeners) the route attaches to."""

    name: str = Field(description="Name of the Gateway.", max_length=253, pattern=DNS_SUBDOMAIN)
    namespace: str | None = Field(
        None,
        description="Namespace of the Gateway; the ModelService's when unset.",
        max_length=63,
        pattern=DNS_LABEL,
    )
    sectionName: str | None = Field(
        None, description="Listener of the Gateway.", max_length=253, pattern=DNS_SUBDOMAIN
    )
    port: int | None = Field(None, description="Port of the listener.", ge=1, le=65535)


class GatewaySpec(ApiModel):
    """Expose the servers through Gateway API: an HTTPRoute to the ModelService's Service."""

    parentRefs: list[GatewayParent] = Field(
        description="Gateways the HTTPRoute attaches to.", min_length=1, max_length=16
    )
    hostnames: list[Annotated[str, Field(max_length=253, pattern=HOSTNAME)]] = Field(
        default_factory=list,
        description="Host names the route answers; all of the Gateway's when empty.",
        max_length=16,
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
    runtime: Literal["auto", "onnx", "sklearn"] = Field(
        "auto",
        description="What runs the model: auto serves the version's compiled ONNX model when "
        "the trainer verified one (model.onnx, checked against model.skops on the held-out "
        "split) and scikit-learn otherwise; onnx insists on ONNX Runtime (a version without a "
        "verified ONNX model fails to load, with the reason); sklearn always uses "
        "scikit-learn.",
    )
    timeoutSeconds: int = Field(
        30,
        description="Longest an inference request may take in the server, from its first byte "
        "to its answer (reading, queueing and predicting); past it the answer is 504. Like "
        "KServe's component timeout.",
        ge=1,
        le=3600,
    )
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec,  # type: ignore[arg-type]
        description="What the servers watch in live traffic.",
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,  # type: ignore[arg-type]
        description="How a new model version replaces the served one: at once, as a canary "
        "with automatic analysis, behind a shadow, or side by side as an experiment.",
    )
    gateway: GatewaySpec | None = Field(
        None,
        description="Expose the servers through Gateway API with an HTTPRoute (when the "
        "cluster has it). During a canary or an experiment the route carries the split (backend "
        "weights, and the sticky header as a match) instead of the servers; a shadow is still "
        "mirrored by the servers, which compare the two answers. Ignored by the local launcher.",
    )
    pod: PodSettings = Field(
        default_factory=PodSettings,  # type: ignore[arg-type]
        description=(
            "Settings of the server pods: image pull secrets, scheduling, ServiceAccount, extra "
            "environment."
        ),
    )


class TrafficTarget(ApiModel):
    version: int | None = Field(None, description="Model version.")
    digest: str | None = Field(None, description="sha256 of the version's metadata.json.")
    weight: int = Field(0, description="Percent of requests it answers.")
    role: str = Field(description="stable, canary, shadow, a or b.")


class RolloutStatus(ApiModel):
    strategy: str | None = Field(None, description="Strategy of the rollout.")
    phase: str | None = Field(
        None,
        description="Progressing, Paused (waiting for approval), Promoting, Promoted, "
        "RollingBack (the stable servers roll to sending the candidate nothing), RolledBack "
        "or Experiment.",
    )
    stable: dict[str, Any] | None = Field(
        None, description="The stable version: uri, digest, version."
    )
    candidate: dict[str, Any] | None = Field(
        None, description="The new version under test: uri, digest, version."
    )
    step: int = Field(0, description="Index of the current canary step.")
    weight: int = Field(0, description="Percent of requests the new version answers.")
    stepStartedAt: str | None = Field(None, description="When the current interval began.")
    waitingSince: str | None = Field(
        None, description="Since when the current step's servers have been awaited."
    )
    failures: int = Field(0, description="Failed analysis intervals in a row.")
    baseline: dict[str, Any] | None = Field(
        None, description="Cumulative counts when the current interval began."
    )
    analysis: dict[str, Any] | None = Field(
        None, description="The last interval's figures for each version, and the verdict."
    )
    reference: dict[str, Any] | None = Field(
        None,
        description="The stable version's figures of the last interval with enough stable "
        "requests to judge the candidate by (requests, errorRate, p95Ms).",
    )
    rolledBack: dict[str, Any] | None = Field(
        None, description="The last version rolled back (not tried again until it changes)."
    )
    rollbackReason: str | None = Field(
        None, description="Why the candidate is being rolled back (while RollingBack)."
    )
    message: str | None = Field(None, description="What the rollout is doing and why.")


ServicePhase = Literal["Pending", "Ready", "Degraded", "Failed"]


class ModelServiceStatus(ApiModel):
    phase: ServicePhase | None = Field(None, description="Pending, Ready, Degraded or Failed.")
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations.")
    observedGeneration: int | None = Field(None, description="Generation last acted upon.")
    url: str | None = Field(None, description="Base URL of the inference endpoints.")
    modelVersion: int | None = Field(None, description="Model version being served.")
    modelUri: str | None = Field(None, description="URI of the model version being served.")
    replicas: int | None = Field(None, description="Current replicas.")
    readyReplicas: int | None = Field(None, description="Replicas ready to serve.")
    drift: DriftStatus | None = Field(
        None, description="Drift of live traffic from the training data, over all replicas."
    )
    traffic: list[TrafficTarget] = Field(
        default_factory=list, description="Which versions answer requests, and how much."
    )
    rollout: RolloutStatus | None = Field(None, description="Progress of the rollout.")
    releaseRevision: int | None = Field(None, description="Helm release revision.")
    appliedHash: str | None = Field(None, description="Hash of the workload configuration applied.")
