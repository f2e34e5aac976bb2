"""Spec validation beyond what the CRD schema and CEL rules catch; messages name the field."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from pydantic import ValidationError

from modelfactory_api.batchprediction import BatchPredictionSpec
from modelfactory_api.modelservice import ModelServiceSpec
from modelfactory_api.trainingjob import TrainingJobSpec
from modelfactory_operator.logic import retrain


class SpecError(ValueError):
    """An invalid spec: permanent until the user changes it."""


def is_pod_local(uri: str) -> bool:
    """file:// URIs and bare paths: a directory of the machine the workload runs on."""
    return uri.startswith(("file://", "/"))


def shared_storage(field: str, uri: str) -> None:
    """In a cluster a pod's own filesystem is gone when the pod ends: storage must outlive it."""
    if is_pod_local(uri):
        raise SpecError(
            f"{field}: {uri!r} is a path on the pod's own filesystem, which is lost when the pod "
            "ends; with the kubernetes launcher use pvc://<claim>/<path> (a PersistentVolumeClaim "
            "in this namespace) or s3:// / gs://"
        )


def _field_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in ("spec", *err["loc"]))
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


@cache
def estimator_catalogue() -> dict[str, Any]:
    text = resources.files("modelfactory_api").joinpath("sklearn_estimators.json").read_text()
    return dict(json.loads(text)["estimators"])


def trainingjob_spec(spec: dict[str, Any], launcher: str = "kubernetes") -> TrainingJobSpec:
    try:
        parsed = TrainingJobSpec.model_validate(spec)
    except ValidationError as exc:
        raise SpecError(_field_errors(exc)) from exc
    if launcher == "kubernetes":
        shared_storage("spec.dataset.uri", parsed.dataset.uri)
        shared_storage("spec.output.storageUri", parsed.output.storageUri)
    schedule = parsed.retrain.schedule if parsed.retrain is not None else None
    if schedule is not None and (error := retrain.cron_error(schedule)) is not None:
        raise SpecError(error)
    catalogue = estimator_catalogue()
    entry = catalogue.get(parsed.model.estimator)
    if entry is None:
        raise SpecError(
            f"spec.model.estimator: {parsed.model.estimator!r} is not a scikit-learn classifier "
            "or regressor (use its public import path, e.g. sklearn.ensemble."
            "RandomForestClassifier)"
        )
    known = set(entry["params"])
    for source, names in (
        ("spec.model.params", parsed.model.params),
        ("spec.tuning.searchSpace", parsed.tuning.searchSpace),
    ):
        unknown = sorted(set(names) - known)
        if unknown:
            raise SpecError(
                f"{source}: {', '.join(unknown)} not a parameter of {parsed.model.estimator} "
                f"(it takes {', '.join(sorted(known))})"
            )
    both = sorted(set(parsed.model.params) & set(parsed.tuning.searchSpace))
    if both:
        raise SpecError(
            f"spec.tuning.searchSpace: {', '.join(both)} also fixed in spec.model.params"
        )
    if parsed.tuning.algorithm == "grid":
        ranged = sorted(k for k, d in parsed.tuning.searchSpace.items() if d.values is None)
        if ranged:
            raise SpecError(
                "spec.tuning.searchSpace: grid search needs values lists, not ranges "
                f"({', '.join(ranged)})"
            )
    return parsed


def estimator_kind(estimator: str) -> str:
    return str(estimator_catalogue()[estimator]["kind"])


def modelservice_spec(spec: dict[str, Any], launcher: str = "kubernetes") -> ModelServiceSpec:
    try:
        parsed = ModelServiceSpec.model_validate(spec)
    except ValidationError as exc:
        raise SpecError(_field_errors(exc)) from exc
    if launcher == "kubernetes" and parsed.model.uri is not None:
        shared_storage("spec.model.uri", parsed.model.uri)
    return parsed


def batchprediction_spec(spec: dict[str, Any], launcher: str = "kubernetes") -> BatchPredictionSpec:
    try:
        parsed = BatchPredictionSpec.model_validate(spec)
    except ValidationError as exc:
        raise SpecError(_field_errors(exc)) from exc
    if parsed.schedule is not None:
        error = retrain.cron_error(parsed.schedule, "spec.schedule")
        if error is not None:
            raise SpecError(error)
    if launcher == "kubernetes":
        shared_storage("spec.input.uri", parsed.input.uri)
        shared_storage("spec.output.uri", parsed.output.uri)
        if parsed.model.uri is not None:
            shared_storage("spec.model.uri", parsed.model.uri)
    return parsed
