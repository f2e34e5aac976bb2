"""Batch prediction on this machine: the operator with the local launcher scores CSV rows on Ray
Data with a model version it trained, in several batches, refuses an input that lacks a feature
before scoring a row, and a run killed halfway through a million rows ends with every row exactly
once. Its throughput is a benchmark's (hack/bench/batch_scoring.py), not a test's."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from modelfactory_artifacts.batch_manifest import read_manifest
from modelfactory_artifacts.read import load_artifact
from tests.conftest import Kube, eventually, install_crds
from tests.e2e.test_local_flow import Flow
from tests.operator.conftest import condition

pytestmark = pytest.mark.e2e
# Enough for several batches of the default batchSize (65,536).
ROWS = 200_000
# Long enough a run to be killed while it writes.
KILLED_ROWS = 1_000_000


class BatchFlow(Flow):
    def batch(self, name: str, input_uri: str, output: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "BatchPrediction",
            "metadata": {"name": name},
            "spec": {
                "model": {"trainingJob": "iris"},
                "input": {"uri": input_uri, "format": "csv", "carry": ["id"]},
                "output": {"uri": f"file://{self.root}/{output}", "probabilities": True},
                **spec,
            },
        }

    def run_record(self, name: str) -> dict[str, Any]:
        path = self.state / self.namespace / f"bp-{name}" / "run.json"
        return dict(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def flow(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchFlow]:
    install_crds(kube)
    namespace = f"e2e-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    f = BatchFlow(kube, namespace, tmp_path_factory.mktemp("batch"))
    f.operator.start()
    f.apply(f.trainingjob("iris", trials=2))
    yield f
    f.operator.stop()
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def model(flow: BatchFlow) -> Any:
    tj = flow.wait_phase("tj", "iris", "Succeeded")
    return load_artifact(tj["model"]["uri"], tj["model"]["digest"])


def write_rows(path: Path, model: Any, rows: int) -> Path:
    """Rows of iris-like features with an id, written in chunks."""
    features = [f.name for f in model.metadata.features]
    rng = np.random.default_rng(7)
    first = True
    for start in range(0, rows, 250_000):
        n = min(250_000, rows - start)
        frame = pd.DataFrame(
            rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], (n, 4)), columns=features
        ).round(2)
        frame.insert(0, "id", np.arange(start, start + n))
        frame.to_csv(path, mode="w" if first else "a", header=first, index=False)
        first = False
    return path


@pytest.fixture(scope="module")
def rows_csv(flow: BatchFlow, model: Any) -> Path:
    return write_rows(flow.root / "rows.csv", model, ROWS)


@pytest.fixture(scope="module")
def million_csv(flow: BatchFlow, model: Any) -> Path:
    return write_rows(flow.root / "million.csv", model, KILLED_ROWS)


def committed(out: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """The output as a reader sees it: the parts its manifest lists."""
    manifest = read_manifest(f"file://{out}")
    assert manifest is not None, f"nothing committed under {out}"
    files = [uri.removeprefix("file://") for uri in manifest.file_uris()]
    return manifest.model_dump(), pq.ParquetDataset(files).read().to_pandas()


def test_rows_scored_to_parquet_match_the_model(
    flow: BatchFlow, model: Any, rows_csv: Path
) -> None:
    flow.apply(flow.batch("scored", f"file://{rows_csv}", "scores"))
    status = flow.wait_phase("bp", "scored", "Succeeded", timeout=900)
    assert status["model"]["version"] == 1
    assert status["progress"]["rowsWritten"] == ROWS
    manifest, out = committed(flow.root / "scores")
    assert status["manifest"] == f"file://{flow.root}/scores/manifest.json"
    assert manifest["rows"]["written"] == ROWS == len(out)
    assert manifest["model"]["digest"] == model.digest
    assert out["id"].is_unique and out["id"].min() == 0 and out["id"].max() == ROWS - 1
    sample = out.sample(2000, random_state=1).sort_values("id")
    features = [f.name for f in model.metadata.features]
    source = pd.read_csv(rows_csv, nrows=ROWS).set_index("id").loc[sample["id"], features]
    assert (sample["prediction"].to_numpy() == model.estimator.predict(source)).all()
    proba = [c for c in out.columns if c.startswith("proba_")]
    assert len(proba) == 3
    assert np.allclose(sample[proba].sum(axis=1), 1.0, atol=1e-4)
    assert "drift" in manifest


def test_an_input_missing_a_feature_fails_before_scoring(flow: BatchFlow, model: Any) -> None:
    features = [f.name for f in model.metadata.features]
    bad = flow.root / "bad.csv"
    pd.DataFrame({"id": [1, 2], **{f: [5.0, 6.0] for f in features[1:]}}).to_csv(bad, index=False)
    flow.apply(flow.batch("bad", f"file://{bad}", "bad-scores"))
    status = flow.wait_phase("bp", "bad", "Failed", timeout=300)
    failed = condition({"status": status}, "Failed")
    assert failed["reason"] == "SchemaMismatch", failed
    assert features[0] in failed["message"]
    out = flow.root / "bad-scores"
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("data/**/*.parquet"))


def test_a_run_killed_halfway_ends_with_every_row_once(
    flow: BatchFlow, model: Any, million_csv: Path
) -> None:
    flow.apply(flow.batch("killed", f"file://{million_csv}", "killed-scores"))
    eventually(
        lambda: (flow.status("bp", "killed").get("progress") or {}).get("rowsWritten", 0) > 0,
        timeout=600,
        interval=0.2,
        what="rows written",
    )
    first = flow.run_record("killed")
    os.killpg(first["pid"], signal.SIGKILL)
    status = flow.wait_phase("bp", "killed", "Succeeded", timeout=900)
    assert flow.run_record("killed")["attempts"] == 2
    assert status["attempts"] == 2
    manifest, out = committed(flow.root / "killed-scores")
    assert len(out) == KILLED_ROWS and out["id"].is_unique
    # Nothing of the killed attempt is left beside the committed output.
    assert not list((flow.root / "killed-scores").glob("_staging/*"))
    assert [f"data/{p.name}" for p in (flow.root / "killed-scores" / "data").iterdir()] == [
        manifest["output"]["folder"]
    ]
