"""The model artifact: layout of a version directory and the schema of its metadata.json.

Written by the training runtime, read and verified by the serving runtime and the operator.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ARTIFACT_SCHEMA_VERSION = 1
MODEL_FILENAME = "model.skops"
METADATA_FILENAME = "metadata.json"
# Written last, after the model and metadata: a version directory without it is incomplete.
COMPLETE_MARKER = "_COMPLETE"

TaskType = Literal["binary", "multiclass", "regression"]


class FeatureInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    dtype: str = Field(description="pandas dtype of the column in the training data.")
    kind: Literal["numeric", "categorical", "boolean"]


class TargetInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    classes: list[Any] | None = Field(None, description="Class labels, for classifiers.")


class TrialRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any]
    score: float | None = None
    scoreStd: float | None = None
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None


class SourceInfo(BaseModel):
    """The TrainingJob a version came from."""

    model_config = ConfigDict(extra="forbid")

    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    generation: int | None = None
    runId: str | None = None


class ArtifactMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schemaVersion: int = ARTIFACT_SCHEMA_VERSION
    version: int = Field(ge=1)
    createdAt: str
    task: TaskType
    format: Literal["skops"] = "skops"
    modelFile: str = MODEL_FILENAME
    modelSha256: str = Field(pattern=r"^[a-f0-9]{64}$")
    libraries: dict[str, str] = Field(
        description="python, scikit-learn, numpy, ray, skops versions."
    )
    features: list[FeatureInfo]
    target: TargetInfo
    estimator: str
    metric: str
    metrics: dict[str, float] = Field(
        description="cv_mean, cv_std and held-out scores (test_<metric>, ...)."
    )
    bestParams: dict[str, Any]
    trials: list[TrialRecord]
    referenceStats: dict[str, dict[str, Any]] = Field(
        description="Per feature: count, missing, and quantile bins or category frequencies."
    )
    source: SourceInfo = Field(default_factory=SourceInfo)

    @property
    def digest(self) -> str:
        return f"sha256:{self.modelSha256}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_digest(digest: str) -> str:
    """'sha256:<hex>' -> '<hex>'; raises ValueError on anything else."""
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ValueError(f"digest {digest!r} is not of the form sha256:<64 hex digits>")
    return hexpart


def version_uri(storage_uri: str, version: int) -> str:
    return f"{storage_uri.rstrip('/')}/{version}"
