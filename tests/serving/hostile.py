"""Hostile model artifacts, built here: each is a working model with one thing skops must not be
allowed to construct (a function that reads, writes, downloads or runs code, or a class that is
not ours). Written as complete version directories with a matching digest, so only the type
allow-list stands between them and a server."""

from __future__ import annotations

import datetime
import operator
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.lib._datasource
import scipy.datasets
import scipy.sparse
import skops.io as sio
from numpy._pytesttester import PytestTester
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from modelfactory_artifacts.metadata import (
    COMPLETE_MARKER,
    METADATA_FILENAME,
    MODEL_FILENAME,
    ArtifactMetadata,
    sha256_hex,
)

from .conftest import Artifact, numeric_data, numeric_features


class Evil:
    """A class of nobody's library."""

    def __init__(self) -> None:
        self.payload = "rm -rf /"


def steal(X: Any) -> Any:
    return X


def _fitted() -> LogisticRegression:
    X, y = numeric_data(n=60, n_features=2)
    return LogisticRegression().fit(X, y)


def _step(func: Callable[..., Any]) -> Any:
    """The function as a pipeline step in front of a fitted model (never fitted itself: fitting
    would call it here)."""
    return Pipeline([("evil", FunctionTransformer(func)), ("lr", _fitted())])


def _attribute(value: Any) -> Any:
    model = _fitted()
    model.extra_ = value
    return model


# label -> (model builder, the type name the refusal must give)
HOSTILE: dict[str, tuple[Callable[[], Any], str]] = {
    "datasource-open": (
        lambda: _step(numpy.lib._datasource.open),
        "numpy.lib._datasource.open",
    ),
    "fromregex": (lambda: _step(np.fromregex), "numpy.fromregex"),
    "load-npz": (lambda: _step(scipy.sparse.load_npz), "scipy.sparse._matrix_io.load_npz"),
    "pytest-tester": (
        lambda: _attribute(PytestTester("numpy")),
        "numpy._pytesttester.PytestTester",
    ),
    "datasets-face": (lambda: _step(scipy.datasets.face), "scipy.datasets._fetchers.face"),
    "custom-class": (lambda: _attribute(Evil()), f"{__name__}.Evil"),
    "eval": (lambda: _step(eval), "builtins.eval"),
    # os.system is posix.system (nt.system on Windows): skops records where it is defined.
    "os-system": (lambda: _step(os.system), f"{os.system.__module__}.system"),
    "callable-in-function-transformer": (lambda: _step(steal), f"{__name__}.steal"),
    "builtin-callable": (lambda: _step(operator.neg), "_operator.neg"),
    # skops trusts numpy's ufuncs by default; the allow-list holds no function at all.
    "ufunc-in-function-transformer": (lambda: _step(np.exp), "numpy.exp"),
}


def write_hostile(directory: Path, label: str) -> tuple[Artifact, str]:
    """The version directory of HOSTILE[label] and the type its refusal must name."""
    build, type_name = HOSTILE[label]
    model = build()
    data = sio.dumps(model)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILENAME).write_bytes(data)
    features = numeric_features(2)
    meta = ArtifactMetadata(
        version=1,
        createdAt=datetime.datetime.now(datetime.UTC).isoformat(),
        task="binary",
        modelSha256=sha256_hex(data),
        libraries={"python": sys.version.split()[0]},
        features=features,  # type: ignore[arg-type]
        target={"name": "y", "classes": [0, 1]},  # type: ignore[arg-type]
        estimator=type(model).__name__,
        metric="accuracy",
        metrics={},
        bestParams={},
        trials=[],
    )
    (directory / METADATA_FILENAME).write_bytes(meta.to_json())
    (directory / COMPLETE_MARKER).write_text("")
    art = Artifact(str(directory), meta.digest, [f["name"] for f in features], [0, 1], model, None)
    return art, type_name
