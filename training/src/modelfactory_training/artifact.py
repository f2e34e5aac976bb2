"""Turning the fitted pipeline into artifact bytes and metadata."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from datetime import datetime
from importlib import metadata as importlib_metadata
from typing import Any

import skops.io as sio

from modelfactory_api.runtime import JobIdentity
from modelfactory_api.timestamps import rfc3339
from modelfactory_api.trainingjob import Trigger
from modelfactory_artifacts.metadata import (
    TRUSTED_TYPES_FILE,
    ArtifactMetadata,
    FeatureInfo,
    GateScores,
    SourceInfo,
    TargetInfo,
    TaskType,
    TrialRecord,
    sha256_hex,
    types_in,
    untrusted_types,
)
from modelfactory_artifacts.onnx_model import OnnxInfo
from modelfactory_artifacts.profile import ReferenceProfile
from modelfactory_training.errors import SpecError

_LIBRARIES = {
    "scikit-learn": "scikit-learn",
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "ray": "ray",
    "skops": "skops",
}


def serialize(model: Any) -> tuple[bytes, list[str]]:
    """The model as skops bytes and the types a loader must trust: all on the allow-list the
    server loads with, or the run fails here rather than leave a model no server will load."""
    data = sio.dumps(model)
    types = sorted(types_in(data))
    outside = untrusted_types(types)
    if outside:
        raise SpecError(
            "UnsafeModel",
            f"model: holds type(s) outside the allow-list of {TRUSTED_TYPES_FILE}: "
            f"{', '.join(outside)}",
        )
    return data, types


def installed_versions(dists: Iterable[str]) -> dict[str, str]:
    """The installed version of each distribution that is installed."""
    versions = {}
    for dist in dists:
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **installed_versions(_LIBRARIES)}


def json_safe(value: Any) -> Any:
    """Params as plain JSON values (numpy scalars and tuples from estimators included)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def build_metadata(
    *,
    version: int,
    model_bytes: bytes,
    task: TaskType,
    features: list[FeatureInfo],
    target: str,
    classes: list[Any] | None,
    estimator: str,
    metric: str,
    metrics: dict[str, float],
    best_params: dict[str, Any],
    trials: list[TrialRecord],
    trials_planned: int | None = None,
    profile: ReferenceProfile | None,
    job: JobIdentity,
    run_id: str,
    trigger: Trigger | None = None,
    data_digest: str | None = None,
    gate: GateScores | None = None,
    onnx: OnnxInfo | None = None,
    now: datetime | None = None,
) -> ArtifactMetadata:
    created = rfc3339(now)
    return ArtifactMetadata(
        version=version,
        createdAt=created,
        task=task,
        modelSha256=sha256_hex(model_bytes),
        libraries=library_versions(),
        features=features,
        target=TargetInfo(name=target, classes=json_safe(classes) if classes else None),
        estimator=estimator,
        metric=metric,
        metrics=metrics,
        bestParams=json_safe(best_params),
        trials=[t.model_copy(update={"params": json_safe(t.params)}) for t in trials],
        trialsPlanned=trials_planned,
        profile=profile,
        source=SourceInfo(
            namespace=job.namespace,
            name=job.name,
            uid=job.uid,
            generation=job.generation,
            runId=run_id,
        ),
        trigger=trigger,
        dataDigest=data_digest,
        gate=gate,
        onnx=onnx,
    )
