#!/usr/bin/env python3
"""Write api/src/modelfactory_api/sklearn_estimators.json: every public scikit-learn estimator's
import path, kind and constructor parameters.

The operator checks `spec.model` against it without importing scikit-learn, so an unknown
estimator or parameter fails the TrainingJob at once, before any pod starts.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import sklearn
from sklearn.utils import all_estimators

OUT = Path(__file__).resolve().parent.parent / "api/src/modelfactory_api/sklearn_estimators.json"


def public_path(cls: type) -> str:
    """The shortest public import path: sklearn.ensemble.X, not sklearn.ensemble._forest.X."""
    parts = cls.__module__.split(".")
    for depth in range(2, len(parts) + 1):
        module = importlib.import_module(".".join(parts[:depth]))
        if getattr(module, cls.__name__, None) is cls:
            return f"{module.__name__}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__name__}"


def main() -> None:
    estimators = {}
    for kind in ("classifier", "regressor"):
        for _, cls in all_estimators(type_filter=kind):
            params = sorted(
                p
                for p in inspect.signature(cls.__init__).parameters
                if p not in ("self", "args", "kwargs")
            )
            estimators[public_path(cls)] = {"kind": kind, "params": params}
    OUT.write_text(
        json.dumps(
            {"sklearn": sklearn.__version__, "estimators": estimators}, indent=1, sort_keys=True
        )
        + "\n"
    )
    print(f"{len(estimators)} estimators -> {OUT}")


if __name__ == "__main__":
    main()
