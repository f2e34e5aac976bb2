"""What a launcher runs: plans rendered from a spec, and what it observes back."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from modelfactory_api.runtime import (
    BatchRuntimeConfig,
    ServingRuntimeConfig,
    TrainingRuntimeConfig,
)
from modelfactory_api.trainingjob import PromotionSpec
from modelfactory_operator.logic.kinds import Kind

RunState = Literal["absent", "pending", "running", "succeeded", "failed", "suspended"]


def config_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunPlan:
    """One run of a kind that starts runs: a TrainingJob's training or a BatchPrediction's
    scoring, each one Job, one RayJob or one local process."""

    kind: Kind
    namespace: str
    name: str
    uid: str
    run_id: str
    release: str
    job_name: str
    mode: Literal["job", "rayjob"]
    suspend: bool
    runtime: TrainingRuntimeConfig | BatchRuntimeConfig
    chart_values: dict[str, Any]
    mount_root: str
    # The image the run's pods run: kept for the run's whole life (a Job's pods are immutable).
    image: str = ""
    # What the run is made from, and the promoted version it is compared with (status form).
    run_inputs: dict[str, str] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    promotion: PromotionSpec = field(default_factory=PromotionSpec)

    @property
    def plural(self) -> str:
        return self.kind.plural

    @property
    def entrypoint(self) -> str:
        """What the run's process runs."""
        return self.kind.entrypoint

    @property
    def generation(self) -> int | None:
        """The generation the run started from."""
        return self.runtime.job.generation

    @property
    def hash(self) -> str:
        return config_hash(self.chart_values)

    @property
    def claims(self) -> list[str]:
        """PersistentVolumeClaims the run's pods mount."""
        return [
            v["persistentVolumeClaim"]["claimName"]
            for v in self.chart_values.get("volumes") or []
            if "persistentVolumeClaim" in v
        ]


@dataclass(frozen=True)
class ServingPlan:
    namespace: str
    name: str
    uid: str
    release: str
    model_version: int | None
    runtime: ServingRuntimeConfig
    chart_values: dict[str, Any]
    # During a rollout, the other version's servers (their route_peer is the stable ones'
    # business only).
    candidate: ServingRuntimeConfig | None = None
    candidate_version: int | None = None
    # The digest of the chart the values go into (empty where no chart is used): a release is
    # applied again when its chart changed, not only its values.
    chart_digest: str = ""

    @property
    def hash(self) -> str:
        """The digest of the release's inputs: what `appliedHash` records once it is applied."""
        if not self.chart_digest:
            return config_hash(self.chart_values)
        return config_hash({"chart": self.chart_digest, "values": self.chart_values})


@dataclass
class RunObservation:
    """A run as the launcher sees it (a Job, a RayJob or a local process)."""

    state: RunState
    reason: str = ""
    message: str = ""
    start_time: str | None = None
    completion_time: str | None = None
    attempts: int = 0


@dataclass
class ServiceObservation:
    """A model server as the launcher sees it (a Deployment or a local process)."""

    exists: bool
    replicas: int = 0
    ready_replicas: int = 0
    rolled_out: bool = False
    served_version: int | None = None
    url: str | None = None
    message: str = ""
    restarts: int = 0


@dataclass
class Decision:
    status: dict[str, Any]
    launch: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)
