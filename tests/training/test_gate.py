"""Scores for the promotion gate: the scorer, the new model, the promoted baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import get_scorer

from modelfactory_api.runtime import JobIdentity
from modelfactory_api.trainingjob import BaselineScore, ModelRef
from modelfactory_artifacts.metadata import (
    ArtifactMetadata,
    FeatureInfo,
    GateScores,
    TaskType,
)
from modelfactory_artifacts.read import ArtifactError
from modelfactory_training.artifact import build_metadata, serialize
from modelfactory_training.errors import SpecError
from modelfactory_training.gate import (
    baseline_outcome,
    compatibility_problem,
    gate_metric,
    gate_scores,
    result_baseline,
    score_baseline,
)
from modelfactory_training.store import ModelStore
from modelfactory_training.train import result_from_metadata

pytestmark = pytest.mark.unit


def test_the_gate_metric_defaults_to_the_search_metric() -> None:
    assert gate_metric(None, "f1_macro") == "f1_macro"
    assert gate_metric("roc_auc", "accuracy") == "roc_auc"


def test_an_unknown_gate_metric_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"promotion\.metric: 'speed'") as err:
        gate_metric("speed", "accuracy")
    assert err.value.reason == "InvalidMetric"


def test_baseline_outcome() -> None:
    assert baseline_outcome(3, 0.75) == BaselineScore(version=3, score=0.75)
    assert baseline_outcome(3, "TaskMismatch: x") == BaselineScore(
        version=3, score=None, message="TaskMismatch: x"
    )
    artifact = ArtifactError("DigestMismatch", "model.skops has sha256:aa, expected sha256:bb")
    assert baseline_outcome(3, artifact).message == (
        "DigestMismatch: model.skops has sha256:aa, expected sha256:bb"
    )
    assert baseline_outcome(3, ValueError("boom")).message == "ValueError: boom"
    assert len(baseline_outcome(3, "x" * 5000).message or "") == 1000


def test_compatibility_problem() -> None:
    assert compatibility_problem(["a", "b"], "binary", ["b", "a", "c"], "multiclass") is None
    missing = compatibility_problem(["a", "b"], "binary", ["a"], "binary")
    assert missing == "FeatureMismatch: it was trained on feature(s) the new held-out data lacks: b"
    task = compatibility_problem(["a"], "regression", ["a"], "binary")
    assert task is not None and task.startswith("TaskMismatch: it is a regression model")


def test_result_baseline_from_recorded_scores() -> None:
    assert result_baseline(None) is None
    assert result_baseline(GateScores(metric="accuracy", score=0.9)) is None
    recorded = GateScores(metric="r2", score=0.5, baselineVersion=2, baselineMessage="gone")
    assert result_baseline(recorded) == BaselineScore(version=2, score=None, message="gone")


# Held-out rows and models with real artifacts written by the trainer's own code.


@pytest.fixture
def held_out() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = pd.Series((X["a"] + 0.3 * rng.normal(size=60) > 0).astype(int), name="y")
    return X, y


def write_version(
    store_dir: Path, version: int, model: Any, features: list[str], task: TaskType = "binary"
) -> ArtifactMetadata:
    data, _ = serialize(model)
    metadata = build_metadata(
        version=version,
        model_bytes=data,
        task=task,
        features=[FeatureInfo(name=f, dtype="float64", kind="numeric") for f in features],
        target="y",
        classes=None,
        estimator=f"sklearn.linear_model.{type(model).__name__}",
        metric="accuracy",
        metrics={},
        best_params={},
        trials=[],
        profile=None,
        job=JobIdentity(),
        run_id=f"run-{version}",
    )
    ModelStore.open(f"file://{store_dir}").write(version, data, metadata)
    return metadata


def ref(store_dir: Path, metadata: ArtifactMetadata) -> ModelRef:
    uri = f"file://{store_dir}/{metadata.version}"
    return ModelRef(version=metadata.version, uri=uri, digest=metadata.digest)


def test_a_good_baseline_is_scored_on_the_same_rows(
    tmp_path: Path, held_out: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = held_out
    # The baseline knows only `a`; the held-out rows carry more columns, in another order.
    baseline = LogisticRegression().fit(X[["a"]], y)
    metadata = write_version(tmp_path, 1, baseline, ["a"])
    wider = X[["b", "a"]]
    scored = score_baseline(ref(tmp_path, metadata), wider, y, "binary", "accuracy")
    assert scored == BaselineScore(version=1, score=get_scorer("accuracy")(baseline, X[["a"]], y))


def test_a_missing_baseline_has_no_score_and_says_why(
    tmp_path: Path, held_out: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = held_out
    gone = ModelRef(version=4, uri=f"file://{tmp_path}/4", digest="sha256:" + "0" * 64)
    scored = score_baseline(gone, X, y, "binary", "accuracy")
    assert scored.version == 4 and scored.score is None
    assert scored.message is not None and scored.message.startswith("MissingArtifact: ")


def test_a_baseline_with_another_digest_is_not_loaded(
    tmp_path: Path, held_out: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = held_out
    metadata = write_version(tmp_path, 1, LogisticRegression().fit(X, y), ["a", "b"])
    wrong = ref(tmp_path, metadata).model_copy(update={"digest": "sha256:" + "1" * 64})
    scored = score_baseline(wrong, X, y, "binary", "accuracy")
    assert scored.score is None
    assert scored.message is not None and scored.message.startswith("DigestMismatch: ")


def test_a_baseline_trained_on_other_features_is_not_scored(
    tmp_path: Path, held_out: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = held_out
    old = X.rename(columns={"b": "c"})
    metadata = write_version(tmp_path, 2, LogisticRegression().fit(old, y), ["a", "c"])
    scored = score_baseline(ref(tmp_path, metadata), X, y, "binary", "accuracy")
    assert scored.score is None
    assert scored.message == (
        "FeatureMismatch: it was trained on feature(s) the new held-out data lacks: c"
    )


def test_a_baseline_whose_predict_raises_is_not_scored(
    tmp_path: Path, held_out: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = held_out
    metadata = write_version(tmp_path, 1, LogisticRegression().fit(X, y), ["a", "b"])
    text = X.assign(b=["many"] * len(X))  # the column now holds text
    scored = score_baseline(ref(tmp_path, metadata), text, y, "binary", "accuracy")
    assert scored.score is None
    assert scored.message is not None and scored.message.startswith("ValueError: ")


def test_the_new_model_is_scored_with_the_gate_metric(
    held_out: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, _ = held_out
    target = X["a"] * 2.0
    model = Ridge().fit(X, target)
    gate = gate_scores(
        model, X, target, task="regression", metric="neg_mean_squared_error", baseline=None
    )
    assert gate.metric == "neg_mean_squared_error"
    assert gate.score == pytest.approx(get_scorer("neg_mean_squared_error")(model, X, target))
    assert gate.score != pytest.approx(get_scorer("r2")(model, X, target))
    assert gate.baselineVersion is None


def test_gate_scores_with_a_baseline(
    tmp_path: Path, held_out: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = held_out
    new = LogisticRegression().fit(X, y)
    metadata = write_version(tmp_path, 1, LogisticRegression(C=1e-4).fit(X[["b"]], y), ["b"])
    gate = gate_scores(new, X, y, task="binary", metric="roc_auc", baseline=ref(tmp_path, metadata))
    assert gate.score == pytest.approx(get_scorer("roc_auc")(new, X, y))
    assert gate.score is not None and gate.baselineScore is not None
    assert gate.baselineVersion == 1 and gate.score > gate.baselineScore
    assert gate.baselineMessage is None


def test_a_new_model_that_cannot_be_scored_has_no_score(
    held_out: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = held_out
    model = LogisticRegression().fit(X, y)
    one_class = y.where(y == 1, 1)  # roc_auc needs both classes in the held-out rows
    gate = gate_scores(model, X, one_class, task="binary", metric="roc_auc", baseline=None)
    assert gate.score is None


def test_the_result_carries_what_the_artifact_recorded() -> None:
    metadata = build_metadata(
        version=2,
        model_bytes=b"abc",
        task="binary",
        features=[FeatureInfo(name="a", dtype="float64", kind="numeric")],
        target="y",
        classes=[0, 1],
        estimator="sklearn.linear_model.LogisticRegression",
        metric="accuracy",
        metrics={"cv_mean": 0.5},
        best_params={},
        trials=[],
        profile=None,
        job=JobIdentity(),
        run_id="run-2",
        trigger="drift",
        data_digest="sha256:" + "a" * 64,
        gate=GateScores(metric="f1", score=0.8, baselineVersion=1, baselineScore=0.7),
    )
    result = result_from_metadata("run-2", metadata, "file:///store/2")
    assert result.trigger == "drift"
    assert result.dataDigest == "sha256:" + "a" * 64
    assert result.score == 0.8
    assert result.baseline == BaselineScore(version=1, score=0.7)
    # A version written before the gate existed reports none of it.
    old = ArtifactMetadata.model_validate(
        metadata.model_dump(exclude={"trigger", "dataDigest", "gate"})
    )
    bare = result_from_metadata("run-2", old, "file:///store/2")
    assert (bare.trigger, bare.dataDigest, bare.score, bare.baseline) == (None, None, None, None)
