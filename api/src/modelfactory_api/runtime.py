"""Runtime configuration that the operator renders and the workloads read.

The same configuration reaches a pod (as environment variables) and a local process (the same
variables), so a workload behaves the same under both launchers.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelfactory_api.batchprediction import BatchInput, BatchOutput
from modelfactory_api.trainingjob import ModelRef, TrainingSpec, Trigger

ENV_PREFIX = "MF_"
# The Ray of the training image (constraints.txt pins it): a RayJob's Ray cluster declares it.
RAY_VERSION = "2.60.0"


class JobIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    generation: int | None = None


class ReportSpec(BaseModel):
    """Where the training runtime reports progress and its result.

    kubernetes: patch `status.result` / `status.progress` of the TrainingJob named in `job`
    (the pod's ServiceAccount may patch only that object's status). file: write JSON to `path`.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["none", "file", "kubernetes"] = "none"
    path: str | None = None


class RaySizing(BaseModel):
    """The share of the machine a Ray started by the run itself may take (one pod's requests).

    Without it Ray counts every CPU and all memory of the node or laptop it runs on. A RayJob's
    Ray is sized by KubeRay from each pod's resources instead.
    """

    model_config = ConfigDict(extra="forbid")

    numCpus: int = Field(ge=1, description="CPUs Ray schedules trials on.")
    memoryBytes: int = Field(ge=1, description="The pod's memory limit.")
    objectStoreBytes: int = Field(ge=1, description="Ray's object store, part of memoryBytes.")

    @property
    def heap_bytes(self) -> int:
        """What the tasks may use beside the object store."""
        return max(self.memoryBytes - self.objectStoreBytes, 1)


class TrainingRuntimeConfig(BaseModel):
    """Everything one training run needs: MF_TRAINING_CONFIG holds it as JSON."""

    model_config = ConfigDict(extra="forbid")

    spec: TrainingSpec
    job: JobIdentity = Field(default_factory=JobIdentity)
    runId: str = Field(description="Unique per run; a result carries it back.")
    report: ReportSpec = Field(default_factory=ReportSpec)
    ray: RaySizing | None = Field(
        None, description="Size of a Ray the run starts itself; Ray's own guess when unset."
    )
    trigger: Trigger = Field("spec", description="Why this run was started.")
    baseline: ModelRef | None = Field(
        None,
        description="The promoted version (in the workload's URIs), scored on this run's "
        "held-out data for the promotion gate.",
    )
    gateMetric: str | None = Field(
        None, description="Scorer of the gate's comparison; the tuning metric when unset."
    )

    def to_env(self) -> dict[str, str]:
        return {f"{ENV_PREFIX}TRAINING_CONFIG": self.model_dump_json(exclude_none=True)}

    @classmethod
    def from_env(cls, env: dict[str, str]) -> TrainingRuntimeConfig:
        return cls.model_validate(json.loads(env[f"{ENV_PREFIX}TRAINING_CONFIG"]))


class ServingRuntimeConfig(BaseModel):
    """What a model server needs; rendered as MF_<FIELD> environment variables."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(description="Name the model is served under.")
    model_uri: str = Field(description="URI of the model version directory.")
    model_digest: str | None = Field(
        None,
        description="Expected sha256:<hex> of the version's metadata.json (which records the "
        "model file's sha256).",
    )
    model_version: str | None = Field(None, description="Version label reported by the server.")
    max_batch_size: int = 32
    max_latency_ms: float = 2.0
    max_queue_rows: int = Field(
        1024, description="Rows that may wait for the model; beyond them a request gets 503."
    )
    timeout_seconds: float = Field(
        30.0, description="Longest a request may take; past it the answer is 504."
    )
    workers: int = 1
    runtime: Literal["auto", "onnx", "sklearn"] = Field(
        "auto",
        description="What runs the model: auto (the version's verified ONNX model if it has "
        "one, else scikit-learn), onnx (ONNX Runtime or fail) or sklearn.",
    )
    host: str = "0.0.0.0"
    port: int = 8080
    # Rollouts (spec.rollout): the stable version's servers split or mirror traffic to the
    # other version's Service themselves, so a share is exact on any number of replicas and no
    # mesh is needed.
    route_track: Literal["stable", "candidate"] = Field(
        "stable", description="Which track this server is: a metrics label the analysis reads."
    )
    route_mode: Literal["none", "split", "mirror"] = Field(
        "none",
        description="split: route_weight percent of requests are answered by route_peer; "
        "mirror: route_weight percent are also sent to route_peer, whose answers are compared "
        "and dropped.",
    )
    route_peer: str | None = Field(None, description="Base URL of the other version's Service.")
    route_peer_version: str | None = Field(None, description="The other version's label.")
    route_weight: int = Field(0, ge=0, le=100, description="Percent routed or mirrored.")
    route_header: str = Field(
        "x-model-variant", description="Header that pins a request to a track."
    )
    route_pin_local: str = Field("stable", description="Header value answered here.")
    route_pin_peer: str = Field("canary", description="Header value answered by the peer.")
    route_mirrors_in_flight: int = Field(
        64, ge=1, description="Mirrored requests in flight at most; beyond it none is mirrored."
    )
    # Drift of live traffic from the artifact's reference profile (spec.monitoring.drift).
    drift_enabled: bool = True
    drift_window: int = Field(10_000, description="Rows in the sliding window.")
    drift_evaluate_every: int = Field(1_000, description="Evaluate after this many new rows...")
    drift_evaluate_seconds: float = Field(30.0, description="...or after this long.")
    drift_min_samples: int = Field(500, description="Fewer rows in the window: no verdict.")
    drift_max_rows_per_second: int = Field(
        1_000,
        description="Rows binned per second at most; above it a uniform sample of the traffic "
        "is, so measuring drift costs the same at any load.",
    )
    drift_psi: float = Field(0.2, description="PSI above which a numeric feature drifted.")
    drift_jensen_shannon: float = Field(
        0.1, description="Jensen-Shannon distance above which a categorical feature drifted."
    )
    drift_ks_pvalue: float = Field(
        0.01, description="Two-sample KS p-value below which a numeric feature drifted."
    )
    drift_share: float = Field(
        0.5, description="Share of drifted features from which the dataset drifted."
    )

    def to_env(self) -> dict[str, str]:
        return {
            f"{ENV_PREFIX}{key.upper()}": str(value)
            for key, value in self.model_dump().items()
            if value is not None
        }


class BatchRuntimeConfig(BaseModel):
    """Everything one scoring run needs: MF_BATCH_CONFIG holds it as JSON. URIs are as the
    workload sees them (a pvc:// claim is a mounted path)."""

    model_config = ConfigDict(extra="forbid")

    modelUri: str = Field(description="The model version's directory.")
    modelDigest: str = Field(description="Expected sha256:<hex> of its metadata.json.")
    modelVersion: int | None = Field(None, description="Version number, when known.")
    input: BatchInput
    output: BatchOutput
    runtime: Literal["auto", "onnx", "sklearn"] = "auto"
    batchSize: int = Field(65536, ge=1)
    job: JobIdentity = Field(default_factory=JobIdentity)
    runId: str = Field(description="Unique per run: names the output's data folder.")
    report: ReportSpec = Field(default_factory=ReportSpec)
    ray: RaySizing | None = Field(
        None, description="Size of a Ray the run starts itself; Ray's own guess when unset."
    )

    def to_env(self) -> dict[str, str]:
        return {f"{ENV_PREFIX}BATCH_CONFIG": self.model_dump_json(exclude_none=True)}

    @classmethod
    def from_env(cls, env: dict[str, str]) -> BatchRuntimeConfig:
        return cls.model_validate(json.loads(env[f"{ENV_PREFIX}BATCH_CONFIG"]))
