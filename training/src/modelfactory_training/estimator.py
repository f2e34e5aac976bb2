"""Resolving the estimator's import path and checking its parameters before any compute."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from sklearn.base import BaseEstimator, is_classifier, is_regressor

from modelfactory_training.errors import SpecError

_MAX_LISTED = 60


def resolve_estimator(path: str) -> type[BaseEstimator]:
    """The class an import path names, if it is a scikit-learn classifier or regressor."""
    module_name, _, attr = path.rpartition(".")
    if not module_name.startswith("sklearn") or module_name.split(".")[0] != "sklearn":
        raise SpecError(
            "InvalidEstimator", f"model.estimator: {path!r} is not inside the sklearn package"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(
            "InvalidEstimator", f"model.estimator: module {module_name!r} not found"
        ) from exc
    cls = getattr(module, attr, None)
    if cls is None:
        raise SpecError(
            "InvalidEstimator", f"model.estimator: {module_name!r} has no attribute {attr!r}"
        )
    if not isinstance(cls, type) or not issubclass(cls, BaseEstimator):
        raise SpecError(
            "InvalidEstimator", f"model.estimator: {path!r} is not a scikit-learn estimator class"
        )
    if not cls.__module__.startswith("sklearn."):
        raise SpecError(
            "InvalidEstimator", f"model.estimator: {path!r} is not defined by scikit-learn"
        )
    if not (callable(getattr(cls, "fit", None)) and callable(getattr(cls, "predict", None))):
        raise SpecError(
            "InvalidEstimator",
            f"model.estimator: {path!r} has no fit and predict; it must be a classifier or "
            "regressor",
        )
    try:
        instance = cls()
    except TypeError as exc:
        raise SpecError(
            "InvalidEstimator",
            f"model.estimator: {path!r} cannot be built without arguments: {exc}",
        ) from exc
    if not (is_classifier(instance) or is_regressor(instance)):
        raise SpecError(
            "InvalidEstimator",
            f"model.estimator: {path!r} is neither a classifier nor a regressor",
        )
    return cls


def param_names(cls: type[BaseEstimator]) -> list[str]:
    return sorted(cls().get_params(deep=True))


def check_param_names(cls: type[BaseEstimator], names: Iterable[str], where: str) -> None:
    known = set(param_names(cls))
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = ", ".join(sorted(known)[:_MAX_LISTED])
        raise SpecError(
            "InvalidParams",
            f"{where}: {', '.join(repr(n) for n in unknown)} is not a parameter of "
            f"{cls.__name__}; it takes: {listed}",
        )


def check_params(cls: type[BaseEstimator], params: Mapping[str, Any], where: str) -> None:
    """Raise InvalidParams unless scikit-learn accepts these values (checked without fitting)."""
    estimator = cls()
    try:
        estimator.set_params(**params)
        validate = getattr(estimator, "_validate_params", None)
        if callable(validate):
            validate()
    except (ValueError, TypeError) as exc:
        raise SpecError("InvalidParams", f"{where}: {exc}") from exc


def validate_model_params(
    cls: type[BaseEstimator],
    fixed: Mapping[str, Any],
    candidates: Mapping[str, list[Any]],
) -> None:
    """Check fixed params and every candidate value of each searched parameter."""
    check_param_names(cls, fixed, "model.params")
    check_param_names(cls, candidates, "tuning.searchSpace")
    both = sorted(set(fixed) & set(candidates))
    if both:
        raise SpecError(
            "InvalidParams",
            f"model.params: {', '.join(repr(n) for n in both)} is both fixed and in "
            "tuning.searchSpace",
        )
    check_params(cls, fixed, "model.params")
    for name, values in candidates.items():
        for value in values:
            check_params(cls, {**fixed, name: value}, f"tuning.searchSpace.{name}")


def supports_n_jobs(cls: type[BaseEstimator]) -> bool:
    """Whether the estimator parallelises with n_jobs (some keep it only as a deprecated no-op)."""
    if "n_jobs" not in cls().get_params(deep=False):
        return False
    doc = cls.__doc__ or ""
    start = doc.find("n_jobs :")
    if start < 0:
        return True
    end = doc.find(" : ", start + len("n_jobs :"))
    section = doc[start : end if end > 0 else len(doc)]
    return "deprecated" not in section and "Does not have any effect" not in section
