"""Scoring end to end through the entrypoint: a version trained by the real trainer, real Ray
Data, files on disk. One 100k-row run is shared by the assertions about a successful run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from modelfactory_artifacts.batch_manifest import (
    BatchManifest,
    read_manifest,
)
from modelfactory_artifacts.metadata import METADATA_FILENAME, metadata_digest
from modelfactory_artifacts.onnx_model import clear_labels
from modelfactory_artifacts.read import load_artifact
from modelfactory_training.batch.main import main
from tests.serving.conftest import numeric_data, numeric_features, write_artifact
from tests.training.batch.conftest import Trained, make_frame, read_json, write_config, write_csv

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("ray_local")]

ROWS = 100_000


def run(config: Path, report: Path) -> int:
    return main(["--config", str(config), "--report-file", str(report)])


@dataclass
class Scored:
    frame: pd.DataFrame
    input: Path
    output: Path
    code: int
    result: dict[str, Any]
    manifest: BatchManifest


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, trained: Trained) -> Scored:
    root = tmp_path_factory.mktemp("scored")
    frame = make_frame(ROWS, seed=1)
    data = write_csv(frame, root / "in.csv")
    out = root / "out"
    config = write_config(root / "c.json", trained, str(data), str(out))
    code = run(config, root / "r.json")
    manifest = read_manifest(str(out))
    assert manifest is not None, read_json(root / "r.json")
    return Scored(frame, data, out, code, read_json(root / "r.json"), manifest)


def test_every_row_is_scored_once_in_order_with_carried_columns(scored: Scored) -> None:
    assert scored.code == 0 and scored.result["succeeded"] is True
    table = pq.read_table(scored.manifest.file_uris()[0])
    assert table.column_names == ["id", "note", "prediction", "proba_no", "proba_yes"]
    assert table.num_rows == ROWS == scored.result["rowsRead"] == scored.result["rowsWritten"]
    np.testing.assert_array_equal(table.column("id").to_numpy(), scored.frame["id"].to_numpy())
    assert table.column("note").to_pylist() == scored.frame["note"].tolist()
    # A dataset reader of data/ sees exactly the committed rows.
    assert pads.dataset(str(scored.output / "data"), format="parquet").count_rows() == ROWS


def test_predictions_equal_the_estimators_in_process(scored: Scored, trained: Trained) -> None:
    loaded = load_artifact(trained.uri, trained.digest)
    features = [f.name for f in loaded.metadata.features]
    expected = loaded.estimator.predict(scored.frame[features])
    table = pq.read_table(scored.manifest.file_uris()[0])
    got = table.column("prediction").to_numpy(zero_copy_only=False)
    proba = np.column_stack([table.column("proba_no"), table.column("proba_yes")])
    np.testing.assert_allclose(
        proba, loaded.estimator.predict_proba(scored.frame[features]), atol=1e-4
    )
    # The compiled model ran: the labels agree wherever the classes are not a float32 tie.
    assert scored.manifest.runtime == "onnx"
    clear = clear_labels(proba)
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(got[clear], expected[clear])


def test_manifest_records_lineage_rows_and_drift(scored: Scored, trained: Trained) -> None:
    m = scored.manifest
    raw = (Path(trained.uri) / METADATA_FILENAME).read_bytes()
    assert m.model.digest == trained.digest == metadata_digest(raw)
    assert m.model.version == 1 and m.runId == "run-1"
    [entry] = m.input.files
    assert entry.path.endswith("in.csv") and entry.size == scored.input.stat().st_size
    assert entry.sha256 is not None and entry.sha256.startswith("sha256:")
    assert (m.rows.read, m.rows.written) == (ROWS, ROWS)
    assert m.output.folder == "data/run-1"
    assert [f.path for f in m.output.files] == ["data/run-1/part-00000.parquet"]
    assert m.output.files[0].rows == ROWS and m.output.files[0].bytes > 0
    assert {"modelfactory", "python", "ray", "scikit-learn", "onnxruntime"} <= set(m.code)
    assert m.drift is not None and m.drift["samples"] == ROWS
    assert {f["name"] for f in m.drift["features"]} == {"x0", "x1", "city"}
    # The same distribution as the training data: no drift.
    assert m.drift["drifted"] is False
    assert scored.result["drift"]["drifted"] is False
    assert scored.result["manifest"] == str(scored.output / "manifest.json")
    assert not (scored.output / "_staging").exists()


def test_a_prefix_of_csv_files_in_name_order_with_scikit_learn_to_csv(
    tmp_path: Path, trained: Trained
) -> None:
    folder = tmp_path / "in"
    parts = [make_frame(3000, seed=s, start=s * 3000) for s in range(3)]
    for i, part in enumerate(parts):  # written out of order: read sorted by name
        write_csv(part, folder / f"part-{2 - i}.csv")
    (folder / "README.txt").write_text("not data")
    write_csv(make_frame(10, seed=9), folder / "_tmp" / "skip.csv")
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "c.json",
        trained,
        f"{folder}/",
        str(out),
        runtime="sklearn",
        output={"format": "csv", "probabilities": False},
    )
    assert run(config, tmp_path / "r.json") == 0
    manifest = read_manifest(str(out))
    assert manifest is not None and manifest.runtime == "sklearn"
    assert [Path(f.path).name for f in manifest.input.files] == [f"part-{i}.csv" for i in range(3)]
    frame = pd.concat([parts[2], parts[1], parts[0]], ignore_index=True)
    got = pd.concat(pd.read_csv(uri) for uri in manifest.file_uris())
    assert list(got.columns) == ["id", "note", "prediction"]
    assert got["id"].tolist() == frame["id"].tolist()
    loaded = load_artifact(trained.uri, trained.digest)
    expected = loaded.estimator.predict(frame[[f.name for f in loaded.metadata.features]])
    assert got["prediction"].tolist() == list(expected)


def test_parquet_input(tmp_path: Path, trained: Trained) -> None:
    frame = make_frame(5000, seed=3)
    data = tmp_path / "in.parquet"
    frame.to_parquet(data)
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "c.json", trained, str(data), str(out), input={"format": "parquet"}
    )
    assert run(config, tmp_path / "r.json") == 0
    manifest = read_manifest(str(out))
    assert manifest is not None and manifest.rows.written == 5000
    table = pq.read_table(manifest.file_uris()[0])
    assert table.column("id").to_pylist() == frame["id"].tolist()


# ---------------------------------------------------------------------- refusals
def _refused(tmp_path: Path, config: Path, reason: str) -> str:
    out = tmp_path / "out"
    assert run(config, tmp_path / "r.json") == 2
    result = read_json(tmp_path / "r.json")
    assert result["succeeded"] is False and result["reason"] == reason, result
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("**/part-*")), "no part may be written"
    return str(result["message"])


def test_missing_feature_and_carried_columns_refused_before_scoring(
    tmp_path: Path, trained: Trained
) -> None:
    data = write_csv(make_frame(500).drop(columns=["x1", "note"]), tmp_path / "in.csv")
    config = write_config(tmp_path / "c.json", trained, str(data), str(tmp_path / "out"))
    message = _refused(tmp_path, config, "SchemaMismatch")
    assert "'x1'" in message and "'note'" in message and "in.csv" in message


def test_text_in_a_numeric_column_is_caught_by_the_sample(tmp_path: Path, trained: Trained) -> None:
    frame = make_frame(500).astype({"x0": object})
    frame.loc[10, "x0"] = "twelve"
    data = write_csv(frame, tmp_path / "in.csv")
    config = write_config(tmp_path / "c.json", trained, str(data), str(tmp_path / "out"))
    message = _refused(tmp_path, config, "SchemaMismatch")
    assert "'x0'" in message and "'twelve'" in message


def test_text_past_the_sample_fails_the_run_naming_the_column(
    tmp_path: Path, trained: Trained
) -> None:
    data = write_csv(make_frame(60_000), tmp_path / "in.csv")
    with data.open("a") as fh:
        fh.write("60000,0.5,oops,paris,a,yes\n")
    config = write_config(tmp_path / "c.json", trained, str(data), str(tmp_path / "out"))
    message = _refused(tmp_path, config, "InvalidData")
    assert "'x1'" in message and "oops" in message


def test_probabilities_of_a_regressor_are_refused(tmp_path: Path) -> None:
    X, _ = numeric_data(n_features=3, seed=3)
    from sklearn.linear_model import Ridge

    artifact = write_artifact(
        tmp_path / "ridge" / "1",
        Ridge(),
        X,
        X @ [1.0, 2.0, -1.0],
        numeric_features(3),
        "regression",
    )
    data = tmp_path / "in.csv"
    pd.DataFrame(X, columns=["x0", "x1", "x2"]).assign(id=range(len(X)), note="n").to_csv(
        data, index=False
    )
    model = Trained(uri=artifact.uri, digest=artifact.digest, version=1)
    config = write_config(tmp_path / "c.json", model, str(data), str(tmp_path / "out"))
    message = _refused(tmp_path, config, "ProbabilitiesUnavailable")
    assert "regression" in message


def test_a_tampered_digest_is_refused(tmp_path: Path, trained: Trained) -> None:
    data = write_csv(make_frame(100), tmp_path / "in.csv")
    config = write_config(
        tmp_path / "c.json",
        trained,
        str(data),
        str(tmp_path / "out"),
        modelDigest="sha256:" + "0" * 64,
    )
    _refused(tmp_path, config, "DigestMismatch")
