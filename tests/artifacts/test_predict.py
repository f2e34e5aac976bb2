"""How a verified model answers, for the server and batch scoring alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from modelfactory_artifacts.metadata import ArtifactMetadata, FeatureInfo, sha256_hex
from modelfactory_artifacts.predict import (
    Predictor,
    batch_rows,
    final_estimator,
    takes_frame,
)
from modelfactory_artifacts.read import load_artifact
from modelfactory_training.onnx_export import compile_model
from modelfactory_training.pipeline import build_pipeline
from modelfactory_training.store import ModelStore

pytestmark = pytest.mark.unit


def _feature(name: str, kind: str, dtype: str = "float64") -> FeatureInfo:
    return FeatureInfo.model_validate({"name": name, "dtype": dtype, "kind": kind})


def _loaded(artifacts: dict, name: str) -> Predictor:
    art = artifacts[name]
    return Predictor(load_artifact(art.uri, art.digest))


def test_a_model_fitted_on_numbers_and_booleans_gets_a_matrix() -> None:
    features = [_feature("x", "numeric"), _feature("flag", "boolean", "bool")]
    assert not takes_frame(LogisticRegression(), features)


def test_categories_or_fitted_column_names_get_a_frame() -> None:
    assert takes_frame(LogisticRegression(), [_feature("city", "categorical", "object")])
    fitted = LogisticRegression()
    fitted.feature_names_in_ = np.array(["x"], dtype=object)
    assert takes_frame(fitted, [_feature("x", "numeric")])


def test_the_final_estimator_of_nested_pipelines() -> None:
    inner = Pipeline([("sc", StandardScaler()), ("lr", LogisticRegression())])
    outer = Pipeline([("sc", StandardScaler()), ("inner", inner)])
    assert type(final_estimator(outer)) is LogisticRegression


def test_rows_of_a_matrix_or_of_columns() -> None:
    assert batch_rows(np.zeros((3, 2))) == 3
    assert batch_rows([np.zeros(4), np.zeros(4)]) == 4


def test_a_classifier_answers_labels_and_probabilities_as_scikit_learn(artifacts: dict) -> None:
    predictor = _loaded(artifacts, "lr")
    X = artifacts["lr"].X[:20]
    est = artifacts["lr"].estimator
    assert predictor.runtime == "sklearn" and not predictor.frame_mode
    assert predictor.is_classifier and predictor.has_proba and predictor.labels_from_proba
    answer = predictor.predict(X, want_proba=True)
    np.testing.assert_array_equal(answer.labels, est.predict(X))
    assert answer.proba is not None
    np.testing.assert_allclose(answer.proba, est.predict_proba(X))
    assert predictor.predict(X, want_proba=False).proba is None


def test_a_matrix_and_its_columns_answer_the_same(artifacts: dict) -> None:
    predictor = _loaded(artifacts, "rf")
    X = artifacts["rf"].X[:30]
    by_matrix = predictor.predict(X, want_proba=True)
    by_columns = predictor.predict([X[:, i] for i in range(X.shape[1])], want_proba=True)
    np.testing.assert_array_equal(by_matrix.labels, by_columns.labels)
    assert by_matrix.proba is not None and by_columns.proba is not None
    np.testing.assert_allclose(by_matrix.proba, by_columns.proba)


def test_a_pipeline_on_a_frame_preprocesses_once_for_both_answers(artifacts: dict) -> None:
    predictor = _loaded(artifacts, "mixed")
    frame = artifacts["mixed"].X[:25]
    est = artifacts["mixed"].estimator
    assert predictor.frame_mode
    columns = [frame[name].to_numpy() for name in predictor.feature_names]
    answer = predictor.predict(columns, want_proba=True)
    np.testing.assert_array_equal(answer.labels, est.predict(frame))
    assert answer.proba is not None
    np.testing.assert_allclose(answer.proba, est.predict_proba(frame))


def test_a_regressor_has_no_classes_and_no_probabilities(artifacts: dict) -> None:
    predictor = _loaded(artifacts, "ridge")
    X = artifacts["ridge"].X[:10]
    assert predictor.classes is None and not predictor.is_classifier and not predictor.has_proba
    answer = predictor.predict(X, want_proba=True)
    assert answer.proba is None
    np.testing.assert_allclose(answer.labels, artifacts["ridge"].estimator.predict(X))


def _compiled(root: Path) -> tuple[str, Any, pd.DataFrame]:
    """The trainer's pipeline on numbers and a category, written with its verified ONNX model."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"age": rng.normal(40, 12, 400), "city": rng.choice(["a", "b", "c"], 400)})
    y = np.where(X["age"] + 10 * (X["city"] == "a") > 45, "leave", "stay")
    feats = [
        FeatureInfo(name="age", dtype="float64", kind="numeric"),
        FeatureInfo(name="city", dtype="object", kind="categorical"),
    ]
    model = build_pipeline(
        RandomForestClassifier,
        {},
        preprocessing=True,
        numeric=["age"],
        categorical=["city"],
        seed=0,
    ).fit(X, y)
    compiled = compile_model(model, X[:100], feats, classifier=True)
    assert compiled.info.status == "verified", compiled.info.reason
    data = sio.dumps(model)
    meta = ArtifactMetadata(
        version=1,
        createdAt="2026-01-01T00:00:00Z",
        task="binary",
        modelSha256=sha256_hex(data),
        libraries={},
        features=feats,
        target={"name": "y", "classes": ["leave", "stay"]},  # type: ignore[arg-type]
        estimator="RandomForestClassifier",
        metric="accuracy",
        metrics={},
        bestParams={},
        trials=[],
        onnx=compiled.info,
    )
    ModelStore.open(f"file://{root}").write(1, data, meta, compiled.data)
    return str(root / "1"), model, X


def test_the_compiled_model_answers_as_scikit_learn_with_the_threads_given(
    tmp_path: Path,
) -> None:
    uri, model, X = _compiled(tmp_path)
    loaded = load_artifact(uri, None, with_onnx=True)
    onnx = Predictor(loaded, onnx_threads=2)
    assert onnx.runtime == "onnx" and onnx.frame_mode
    assert onnx._session.get_session_options().intra_op_num_threads == 2
    columns = [X[name].to_numpy() for name in onnx.feature_names]
    answer = onnx.predict(columns, want_proba=True)
    np.testing.assert_array_equal(answer.labels, model.predict(X))
    assert answer.proba is not None
    np.testing.assert_allclose(answer.proba, model.predict_proba(X), atol=1e-4)
    assert Predictor(loaded, use_onnx=False).runtime == "sklearn"
