"""End to end through the entrypoint: real Ray, real scikit-learn, artifacts on disk."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelfactory_artifacts.metadata import (
    COMPLETE_MARKER,
    METADATA_FILENAME,
    MODEL_FILENAME,
    metadata_digest,
    sha256_hex,
)
from modelfactory_artifacts.onnx_model import ONNX_FILENAME, feeds, open_session, read_outputs
from modelfactory_training import train as train_module
from modelfactory_training.main import main
from modelfactory_training.store import ModelStore

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("ray_local")]


@pytest.fixture
def capture_model(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The fitted models the runtime serialises, as they were before saving."""
    captured: list[Any] = []
    original = train_module.serialize

    def spy(model: Any) -> Any:
        captured.append(model)
        return original(model)

    monkeypatch.setattr(train_module, "serialize", spy)
    return captured


def run(config: Path, report: Path) -> int:
    return main(["--config", str(config), "--report-file", str(report)])


@pytest.mark.parametrize(
    ("dataset", "model", "tuning", "task", "metric"),
    [
        (
            "breast_cancer",
            {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300}},
            {"algorithm": "grid", "searchSpace": {"C": {"values": [0.1, 1.0]}}},
            "binary",
            "test_accuracy",
        ),
        (
            "iris",
            {
                "estimator": "sklearn.ensemble.RandomForestClassifier",
                "params": {"random_state": 0},
            },
            {
                "algorithm": "random",
                "trials": 3,
                "searchSpace": {
                    "n_estimators": {"low": 5, "high": 15, "type": "int"},
                    "max_depth": {"values": [2, None]},
                },
            },
            "multiclass",
            "test_f1_macro",
        ),
        (
            "diabetes",
            {"estimator": "sklearn.linear_model.Ridge"},
            {
                "algorithm": "random",
                "trials": 3,
                "searchSpace": {"alpha": {"low": 0.01, "high": 10.0, "log": True}},
            },
            "regression",
            "test_rmse",
        ),
    ],
)
def test_task_trains_and_loads_back_safely(
    tmp_path: Path,
    write_config: Callable[..., Path],
    result_of: Callable[[Path], dict[str, Any]],
    verified_loader: Callable[[Path], Any],
    capture_model: list[Any],
    dataset: str,
    model: dict[str, Any],
    tuning: dict[str, Any],
    task: str,
    metric: str,
) -> None:
    store = tmp_path / "store"
    config = write_config(
        store, dataset={"uri": f"sklearn://{dataset}"}, model=model, tuning=tuning
    )
    report = tmp_path / "result.json"

    assert run(config, report) == 0

    result = result_of(report)
    assert result["succeeded"] is True
    assert result["model"]["version"] == 1
    assert result["model"]["uri"] == f"file://{store}/1"
    loaded, metadata = verified_loader(store / "1")
    raw = (store / "1" / METADATA_FILENAME).read_bytes()
    assert result["model"]["digest"] == metadata_digest(raw) == metadata.digest
    assert metadata.task == task
    assert metadata.source.runId == "run-1"
    assert metadata.source.namespace == "ml" and metadata.source.generation == 3
    assert {"python", "scikit-learn", "numpy", "ray", "skops"} <= set(metadata.libraries)
    assert metric in metadata.metrics and "cv_mean" in metadata.metrics
    assert len(metadata.trials) == result["progress"]["trialsTotal"]
    assert result["progress"]["trialsCompleted"] == len(metadata.trials)
    # One Ray node here: every fold ran on this host, and the record says so.
    assert result["progress"]["rayNodes"] == 1
    assert all(t.nodes == [socket.gethostname()] for t in metadata.trials)
    assert set(metadata.bestParams) == set(tuning["searchSpace"])
    profile = metadata.profile
    assert profile is not None and set(profile.features) == {f.name for f in metadata.features}
    first = profile.features[metadata.features[0].name]
    assert first.kind == "numeric" and len(first.proportions) >= 10
    assert profile.target is not None and profile.predictions is not None
    assert 0 < len(next(iter(profile.sample.values()))) <= 1000
    if task == "regression":
        assert metadata.target.classes is None
        assert profile.predictions.kind == "numeric"
    else:
        assert profile.predictions.kind == "categorical"
        assert metadata.target.classes == sorted(metadata.target.classes or [])

    (before,) = capture_model
    frame = pd.DataFrame(
        np.random.default_rng(0).normal(size=(25, len(metadata.features))),
        columns=[f.name for f in metadata.features],
    )
    np.testing.assert_array_equal(loaded.predict(frame), before.predict(frame))
    if task != "regression":
        np.testing.assert_allclose(loaded.predict_proba(frame), before.predict_proba(frame))
    # The compiled model sits beside the skops one, checked on the held-out split.
    onnx = metadata.onnx
    assert onnx is not None and onnx.status == "verified", onnx
    assert onnx.rowsChecked and onnx.maxDifference is not None and onnx.maxDifference <= 1e-4
    graph = (store / "1" / ONNX_FILENAME).read_bytes()
    assert sha256_hex(graph) == onnx.sha256
    classes = None if task == "regression" else np.asarray(metadata.target.classes)
    got, _ = read_outputs(
        open_session(graph, 1).run(None, feeds(onnx, [frame[c].to_numpy() for c in frame], 25)),
        classes,
    )
    if task == "regression":
        np.testing.assert_allclose(got, before.predict(frame), rtol=1e-4, atol=1e-4)
    else:
        np.testing.assert_array_equal(got, before.predict(frame))


def test_mixed_csv_with_categoricals_and_missing_values(
    tmp_path: Path,
    write_config: Callable[..., Path],
    result_of: Callable[[Path], dict[str, Any]],
    verified_loader: Callable[[Path], Any],
) -> None:
    rng = np.random.default_rng(1)
    n = 120
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n),
            "flag": rng.choice([True, False], size=n),
        }
    )
    frame.loc[::10, "size"] = np.nan
    frame.loc[::7, "colour"] = None
    frame["label"] = np.where(frame["colour"] == "red", "yes", "no")
    data = tmp_path / "train.parquet"
    frame.to_parquet(data)
    store = tmp_path / "store"
    config = write_config(
        store,
        dataset={"uri": str(data), "target": "label"},
        model={"estimator": "sklearn.tree.DecisionTreeClassifier"},
        tuning={"searchSpace": {"max_depth": {"values": [2, 4]}}},
    )
    report = tmp_path / "result.json"

    assert run(config, report) == 0

    loaded, metadata = verified_loader(store / "1")
    kinds = {f.name: f.kind for f in metadata.features}
    assert kinds == {"size": "numeric", "colour": "categorical", "flag": "boolean"}
    assert metadata.profile is not None
    assert metadata.profile.features["size"].missingRate > 0
    colour = metadata.profile.features["colour"]
    assert colour.kind == "categorical" and set(colour.categories) == {"red", "green", "blue"}
    assert metadata.profile.target is not None and metadata.profile.target.kind == "categorical"
    assert metadata.target.classes == ["no", "yes"]
    unseen = pd.DataFrame({"size": [0.1], "colour": ["purple"], "flag": [True]})
    assert loaded.predict(unseen)[0] in {"yes", "no"}
    # Missing values, booleans and categories compile too.
    assert metadata.onnx is not None and metadata.onnx.status == "verified", metadata.onnx
    assert [i.kind for i in metadata.onnx.inputs] == ["double", "string", "string"]


FAILURES = [
    (
        {"dataset": {"uri": "/nonexistent/data.csv", "target": "y"}},
        "DataNotFound",
        "/nonexistent/data.csv does not exist",
    ),
    (
        {"dataset": {"uri": "CSV", "target": "label"}},
        "TargetNotFound",
        "dataset: column 'label' (target) not found; columns are: a, b, c",
    ),
    (
        {"dataset": {"uri": "CSV", "target": "c", "features": ["a", "zz"]}},
        "UnknownFeatures",
        "feature column(s) not found: zz",
    ),
    ({"dataset": {"uri": "EMPTY", "target": "c"}}, "EmptyData", "has no rows"),
    ({"dataset": {"uri": "CSV", "target": "a"}}, "SingleClass", "single class"),
    (
        {
            "dataset": {"uri": "CSV", "target": "c"},
            "model": {
                "estimator": "sklearn.linear_model.LogisticRegression",
                "preprocessing": False,
            },
        },
        "NonNumericFeatures",
        "b (str)",
    ),
    (
        {"model": {"estimator": "sklearn.cluster.KMeans"}},
        "InvalidEstimator",
        "neither a classifier nor a regressor",
    ),
    (
        {"model": {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"Cc": 1}}},
        "InvalidParams",
        "'Cc' is not a parameter of LogisticRegression",
    ),
    (
        {"tuning": {"searchSpace": {"C": {"values": [1.0, -1.0]}}}},
        "InvalidParams",
        "tuning.searchSpace.C: The 'C' parameter of LogisticRegression",
    ),
    ({"tuning": {"metric": "acuracy"}}, "InvalidMetric", "'acuracy' is not a scikit-learn scorer"),
]


@pytest.mark.parametrize(("spec", "reason", "message"), FAILURES)
def test_bad_input_fails_permanently_with_reason(
    tmp_path: Path,
    write_config: Callable[..., Path],
    result_of: Callable[[Path], dict[str, Any]],
    spec: dict[str, Any],
    reason: str,
    message: str,
) -> None:
    csv = tmp_path / "data.csv"
    pd.DataFrame({"a": [1] * 12, "b": list("xyz") * 4, "c": [0, 1] * 6}).to_csv(csv, index=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b,c\n")
    dataset = spec.get("dataset")
    if dataset:
        uri = {"CSV": f"file://{csv}", "EMPTY": str(empty)}.get(dataset["uri"], dataset["uri"])
        spec = {**spec, "dataset": {**dataset, "uri": uri}}
    store = tmp_path / "store"
    report = tmp_path / "result.json"

    assert run(write_config(store, **spec), report) == 2

    result = result_of(report)
    assert result["succeeded"] is False
    assert result["runId"] == "run-1"
    assert result["reason"] == reason
    assert message in result["message"]
    assert not (store / "1").exists()


def test_failed_trials_are_counted_and_all_failing_is_permanent(
    tmp_path: Path,
    write_config: Callable[..., Path],
    result_of: Callable[[Path], dict[str, Any]],
) -> None:
    # l1 with lbfgs passes parameter validation but fails when fitted.
    store = tmp_path / "store"
    report = tmp_path / "result.json"
    partly = write_config(
        store,
        model={
            "estimator": "sklearn.linear_model.LogisticRegression",
            "params": {"solver": "lbfgs"},
        },
        tuning={"searchSpace": {"l1_ratio": {"values": [0.0, 1.0]}}},
    )
    assert run(partly, report) == 0
    progress = result_of(report)["progress"]
    assert (progress["trialsCompleted"], progress["trialsFailed"]) == (1, 1)

    failing = write_config(
        store,
        run_id="run-2",
        model={
            "estimator": "sklearn.linear_model.LogisticRegression",
            "params": {"solver": "lbfgs"},
        },
        tuning={"searchSpace": {"l1_ratio": {"values": [1.0, 0.5]}}},
    )
    assert run(failing, report) == 2
    result = result_of(report)
    assert result["reason"] == "AllTrialsFailed"
    assert "all 2 trials failed" in result["message"]
    assert sorted(p.name for p in store.iterdir()) == ["1"]


def test_versions_increase_and_a_run_id_writes_once(
    tmp_path: Path,
    write_config: Callable[..., Path],
    result_of: Callable[[Path], dict[str, Any]],
) -> None:
    store = tmp_path / "store"
    report = tmp_path / "result.json"
    assert run(write_config(store, run_id="a"), report) == 0
    first = result_of(report)
    assert run(write_config(store, run_id="b"), report) == 0
    assert result_of(report)["model"]["version"] == 2

    # A restarted run (same run id) reports the version it wrote instead of training again.
    assert run(write_config(store, run_id="a"), report) == 0
    again = result_of(report)
    assert again["model"] == first["model"]
    assert again["metrics"] == first["metrics"]
    assert sorted(p.name for p in store.iterdir()) == ["1", "2"]


def test_crash_while_writing_leaves_no_complete_version(
    tmp_path: Path,
    write_config: Callable[..., Path],
    result_of: Callable[[Path], dict[str, Any]],
    verified_loader: Callable[[Path], Any],
    rejected_error: type[Exception],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "store"
    report = tmp_path / "result.json"

    def crash(self: ModelStore, version: int, metadata: Any) -> None:
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(ModelStore, "mark_complete", crash)
    assert run(write_config(store, run_id="a"), report) == 1
    assert result_of(report)["reason"] == "InternalError"
    assert (store / "1" / MODEL_FILENAME).exists()
    assert not (store / "1" / COMPLETE_MARKER).exists()
    with pytest.raises(rejected_error, match="not a complete version"):
        verified_loader(store / "1")
    assert ModelStore.open(str(store)).versions() == {1: False}

    monkeypatch.undo()
    assert run(write_config(store, run_id="a"), report) == 0
    assert result_of(report)["model"]["version"] == 1
    verified_loader(store / "1")


def test_tampered_model_is_detected_by_digest(
    tmp_path: Path,
    write_config: Callable[..., Path],
    verified_loader: Callable[[Path], Any],
    rejected_error: type[Exception],
) -> None:
    store = tmp_path / "store"
    assert run(write_config(store), tmp_path / "result.json") == 0
    model = store / "1" / MODEL_FILENAME
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(rejected_error, match="digest mismatch"):
        verified_loader(store / "1")


def test_console_script_joins_running_ray_from_env(
    tmp_path: Path, write_config: Callable[..., Path], result_of: Callable[[Path], dict[str, Any]]
) -> None:
    import ray

    store = tmp_path / "store"
    config = write_config(
        store,
        model={"estimator": "sklearn.tree.DecisionTreeRegressor"},
        dataset={"uri": "sklearn://diabetes"},
    )
    report = tmp_path / "result.json"
    env = {
        **os.environ,
        "MF_TRAINING_CONFIG": config.read_text(),
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
    }
    script = Path(sys.executable).with_name("modelfactory-train")
    proc = subprocess.run(
        [str(script), "--report-file", str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert result_of(report)["succeeded"] is True
    lines = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    assert any(line["message"] == "model written" for line in lines)
    assert proc.stdout == ""


def test_refit_through_rays_joblib_backend() -> None:
    from sklearn.ensemble import RandomForestClassifier

    from modelfactory_api.trainingjob import DatasetSpec
    from modelfactory_training.data import load_frame
    from modelfactory_training.prepare import prepare

    dataset = DatasetSpec(uri="sklearn://iris")
    prepared = prepare(
        load_frame(dataset), dataset, is_classifier=True, preprocessing=True, cv_folds=2
    )
    model = train_module.refit(
        prepared,
        RandomForestClassifier,
        {"n_estimators": 8, "random_state": 0},
        preprocessing=True,
        n_jobs=2,
        use_ray_joblib=True,
    )
    assert model.score(prepared.X_test, prepared.y_test) > 0.8
    # The cluster's CPU count is not carried into the stored model.
    assert model.named_steps["model"].n_jobs is None


def test_scores_equal_cross_val_score_on_the_same_split(
    tmp_path: Path,
    write_config: Callable[..., Path],
    verified_loader: Callable[[Path], Any],
) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import cross_val_score

    from modelfactory_api.trainingjob import DatasetSpec
    from modelfactory_training.data import load_frame
    from modelfactory_training.prepare import prepare

    store = tmp_path / "store"
    config = write_config(
        store,
        dataset={"uri": "sklearn://wine", "seed": 3},
        model={
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "params": {"random_state": 0, "n_estimators": 10},
            "preprocessing": False,
        },
        tuning={"cvFolds": 3, "searchSpace": {"max_depth": {"values": [1, 3]}}},
    )
    assert run(config, tmp_path / "result.json") == 0
    _, metadata = verified_loader(store / "1")

    dataset = DatasetSpec(uri="sklearn://wine", seed=3)
    prepared = prepare(
        load_frame(dataset), dataset, is_classifier=True, preprocessing=False, cv_folds=3
    )
    for trial in metadata.trials:
        expected = cross_val_score(
            RandomForestClassifier(random_state=0, n_estimators=10, **trial.params),
            prepared.X_train,
            prepared.y_train,
            cv=3,
        )
        assert trial.score == pytest.approx(expected.mean(), abs=1e-12)


def test_a_run_records_trigger_data_digest_and_the_gate_scores(
    tmp_path: Path,
    write_config: Callable[..., Path],
    result_of: Callable[[Path], dict[str, Any]],
    verified_loader: Callable[[Path], Any],
) -> None:
    import hashlib

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import get_scorer

    from modelfactory_api.runtime import JobIdentity
    from modelfactory_artifacts.metadata import FeatureInfo
    from modelfactory_training.artifact import build_metadata, serialize

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    frame["y"] = (frame["a"] - frame["b"] > 0).astype(int)
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    # The promoted version 1: a weaker model of the same features, written as the trainer does.
    store = tmp_path / "store"
    weak = LogisticRegression().fit(frame[["a"]].assign(b=0.0), frame["y"])
    weak_bytes, _ = serialize(weak)
    weak_meta = build_metadata(
        version=1,
        model_bytes=weak_bytes,
        task="binary",
        features=[FeatureInfo(name=n, dtype="float64", kind="numeric") for n in ("a", "b")],
        target="y",
        classes=[0, 1],
        estimator="sklearn.linear_model.LogisticRegression",
        metric="accuracy",
        metrics={},
        best_params={},
        trials=[],
        profile=None,
        job=JobIdentity(),
        run_id="run-0",
    )
    ModelStore.open(f"file://{store}").write(1, weak_bytes, weak_meta)
    config = write_config(
        store,
        dataset={"uri": f"file://{csv}", "target": "y"},
        tuning={"searchSpace": {"C": {"values": [1.0]}}},
    )
    body = json.loads(config.read_text())
    body.update(
        trigger="drift",
        gateMetric="f1_macro",
        baseline={"version": 1, "uri": f"file://{store}/1", "digest": weak_meta.digest},
    )
    config.write_text(json.dumps(body))
    report = tmp_path / "result.json"

    assert run(config, report) == 0

    result = result_of(report)
    digest = f"sha256:{hashlib.sha256(csv.read_bytes()).hexdigest()}"
    assert result["model"]["version"] == 2
    assert (result["trigger"], result["dataDigest"]) == ("drift", digest)
    model, metadata = verified_loader(store / "2")
    assert (metadata.trigger, metadata.dataDigest) == ("drift", digest)
    gate = metadata.gate
    assert gate is not None and gate.metric == "f1_macro"
    assert result["score"] == gate.score and gate.score is not None
    assert result["baseline"] == {"version": 1, "score": gate.baselineScore, "message": None}
    assert gate.baselineScore is not None and gate.score > gate.baselineScore
    # The same held-out rows for both: the split of the run, rebuilt from its seed.
    from modelfactory_api.trainingjob import DatasetSpec
    from modelfactory_training.data import load_frame
    from modelfactory_training.prepare import prepare

    dataset = DatasetSpec(uri=str(csv), target="y")
    held = prepare(load_frame(dataset), dataset, is_classifier=True, preprocessing=True, cv_folds=5)
    scorer = get_scorer("f1_macro")
    assert gate.score == pytest.approx(scorer(model, held.X_test, held.y_test))
    assert gate.baselineScore == pytest.approx(scorer(weak, held.X_test, held.y_test))

    # A retried run finds its version and reports the same scores without training again.
    again = tmp_path / "again.json"
    assert run(config, again) == 0
    assert {k: result_of(again)[k] for k in ("trigger", "dataDigest", "score", "baseline")} == {
        k: result[k] for k in ("trigger", "dataDigest", "score", "baseline")
    }
