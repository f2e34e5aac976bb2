"""Fixtures for the batch runtime's tests: a model version trained by the real trainer (with its
reference profile and verified ONNX model), input files of generated rows, and configurations."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelfactory_artifacts.metadata import METADATA_FILENAME, metadata_digest
from modelfactory_training.main import main as train_main

CITIES = ["paris", "lyon", "nice"]


def make_frame(n: int, seed: int = 0, start: int = 0) -> pd.DataFrame:
    """Rows of two numeric features and a categorical one, an id and a note to carry, and
    the label the model learns."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": np.arange(start, start + n, dtype="int64"),
            "x0": rng.normal(size=n),
            "x1": rng.normal(2.0, 3.0, size=n),
            "city": rng.choice(CITIES, size=n),
            "note": rng.choice(["a", "b"], size=n),
        }
    )
    score = frame["x0"] + 0.3 * frame["x1"] + (frame["city"] == "nice") - 0.6
    frame["label"] = np.where(score > 0, "yes", "no")
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


@dataclass
class Trained:
    uri: str
    digest: str
    version: int


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Trained:
    """A classifier version written by `modelfactory-train` itself, from a CSV."""
    root = tmp_path_factory.mktemp("trained")
    data = write_csv(make_frame(2000, seed=7).drop(columns=["id", "note"]), root / "train.csv")
    store = root / "store"
    config = {
        "runId": "train-1",
        "spec": {
            "dataset": {"uri": str(data), "target": "label"},
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "tuning": {"algorithm": "grid", "cvFolds": 2},
            "output": {"storageUri": f"file://{store}"},
        },
    }
    path = root / "config.json"
    path.write_text(json.dumps(config))
    assert train_main(["--config", str(path), "--report-file", str(root / "r.json")]) == 0
    version = store / "1"
    digest = metadata_digest((version / METADATA_FILENAME).read_bytes())
    return Trained(uri=str(version), digest=digest, version=1)


def write_config(
    path: Path,
    trained: Trained,
    input_uri: str,
    output_uri: str,
    run_id: str = "run-1",
    **overrides: Any,
) -> Path:
    """A batch configuration file; keyword arguments override (or merge into) its sections."""
    config: dict[str, Any] = {
        "modelUri": trained.uri,
        "modelDigest": trained.digest,
        "modelVersion": trained.version,
        "input": {"uri": input_uri, "format": "csv", "carry": ["id", "note"]},
        "output": {"uri": output_uri, "format": "parquet", "probabilities": True},
        "runId": run_id,
        "batchSize": 4096,
        "job": {"namespace": "ml", "name": "bp"},
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def batch_config(tmp_path: Path, trained: Trained) -> Callable[..., Path]:
    def write(input_uri: str, output_uri: str, name: str = "batch.json", **kw: Any) -> Path:
        return write_config(tmp_path / name, trained, input_uri, output_uri, **kw)

    return write


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
