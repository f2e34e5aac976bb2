"""Compiling the trainer's pipelines to ONNX with the real skl2onnx and ONNX Runtime: every
estimator the examples and tests train converts and answers as scikit-learn does, on the
held-out rows and on hostile ones; what cannot convert keeps skops only, with the reason."""

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from modelfactory_artifacts.metadata import FeatureInfo
from modelfactory_artifacts.onnx_model import (
    TOLERANCE,
    clear_labels,
    feeds,
    open_session,
    read_outputs,
    relative_difference,
)
from modelfactory_training.onnx_export import (
    NotConvertible,
    compile_model,
    convert,
    frame_columns,
)
from modelfactory_training.pipeline import build_pipeline
from modelfactory_training.prepare import feature_kind

pytestmark = pytest.mark.unit

CITIES = [f"city{i}" for i in range(45)]  # past MAX_CATEGORIES: an infrequent column


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 12, n),
            "income": rng.lognormal(10, 1, n),
            "city": pd.Series(
                rng.choice(CITIES, n, p=np.r_[np.full(5, 0.12), np.full(40, 0.01)]), dtype="str"
            ),
            "plan": pd.Series(rng.choice(["basic", "pro"], n), dtype="str"),
            "member": rng.random(n) < 0.3,
        }
    )
    df.loc[rng.random(n) < 0.05, "age"] = np.nan
    df.loc[rng.random(n) < 0.05, "city"] = None
    return df


def labels(df: pd.DataFrame) -> np.ndarray:
    score = df["age"].fillna(40) / 12 + (df["city"] == "city1") + df["member"] - 3.5
    return np.where(score > 0, "churn", "stay")


def values(df: pd.DataFrame) -> np.ndarray:
    return (df["age"].fillna(40) * 2 + np.log(df["income"]) + (df["plan"] == "pro") * 5).to_numpy()


def features(df: pd.DataFrame) -> list[FeatureInfo]:
    return [
        FeatureInfo(name=c, dtype=str(df[c].dtype), kind=feature_kind(df[c].dtype))
        for c in df.columns
    ]


def fitted(estimator: Any, params: dict[str, Any], df: pd.DataFrame, y: Any) -> Any:
    feats = features(df)
    return build_pipeline(
        estimator,
        params,
        preprocessing=True,
        seed=0,
        numeric=[f.name for f in feats if f.kind == "numeric"],
        categorical=[f.name for f in feats if f.kind != "numeric"],
    ).fit(df, y)


TRAIN, HELD_OUT = frame(1_500, 1), frame(500, 2)

CLASSIFIERS = [
    (LogisticRegression, {}),
    (RandomForestClassifier, {"n_estimators": 30, "max_depth": 8}),
    (GradientBoostingClassifier, {"n_estimators": 30}),
    (DecisionTreeClassifier, {"max_depth": 6}),
    (SVC, {"probability": True}),
    (SVC, {}),
    (MLPClassifier, {"max_iter": 300}),
]
REGRESSORS = [
    (Ridge, {}),
    (RandomForestRegressor, {"n_estimators": 20, "max_depth": 8}),
    (DecisionTreeRegressor, {"max_depth": 6}),
]


def hostile(n: int, seed: int) -> pd.DataFrame:
    """Rows a client may send: missing values, unseen and empty categories, huge magnitudes."""
    rng = np.random.default_rng(seed)
    df = frame(n, seed)
    pick = rng.random((4, n))
    df.loc[pick[0] < 0.1, "age"] = rng.choice([np.nan, 0.0, -1e30, 1e30, 1e-300], n)[pick[0] < 0.1]
    df.loc[pick[1] < 0.1, "income"] = rng.choice([1e12, -5.0, 0.0], n)[pick[1] < 0.1]
    odd = np.array(["never-seen", "", "CITY1", "city1 ", "é"], dtype=object)
    df.loc[pick[2] < 0.2, "city"] = rng.choice(odd, n)[pick[2] < 0.2]
    df.loc[pick[3] < 0.1, "plan"] = None
    return df


def run_graph(compiled: Any, df: pd.DataFrame, classes: Any) -> tuple[np.ndarray, Any]:
    info = compiled.info
    session = open_session(compiled.data, threads=1)
    outputs = session.run(None, feeds(info, frame_columns(df, features(df)), len(df)))
    return read_outputs(outputs, None if classes is None else np.asarray(classes))


@pytest.mark.parametrize(
    ("estimator", "params"),
    CLASSIFIERS,
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_classifiers_compile_and_agree(estimator: Any, params: dict[str, Any]) -> None:
    model = fitted(estimator, params, TRAIN, labels(TRAIN))
    compiled = compile_model(model, HELD_OUT, features(TRAIN), classifier=True)
    info = compiled.info
    assert info.status == "verified", info.reason
    assert compiled.data is not None and info.layout == "columns"
    assert info.rowsChecked == len(HELD_OUT) and info.labelsDiffering == 0
    assert info.maxDifference is not None and info.maxDifference <= TOLERANCE
    assert [i.name for i in info.inputs] == list(TRAIN.columns)
    assert [i.kind for i in info.inputs] == ["double", "double", "string", "string", "string"]
    assert {"skl2onnx", "onnxruntime"} <= set(info.libraries)
    # The stored model is untouched by the conversion: it still takes NaN for a missing city.
    assert model.predict(HELD_OUT.assign(city=None)).shape == (len(HELD_OUT),)

    rows = hostile(3_000, 7)
    got, proba = run_graph(compiled, rows, model.classes_)
    expected = model.predict(rows)
    if proba is not None and hasattr(model, "predict_proba"):
        expected_proba = model.predict_proba(rows)
        assert relative_difference(proba, expected_proba) <= TOLERANCE
        clear = clear_labels(expected_proba)
        assert clear.mean() > 0.9
        assert (got[clear] == expected[clear]).all()
    else:
        assert (got == expected).mean() > 0.999


@pytest.mark.parametrize(
    ("estimator", "params"), REGRESSORS, ids=lambda v: v.__name__ if isinstance(v, type) else str(v)
)
def test_regressors_compile_and_agree(estimator: Any, params: dict[str, Any]) -> None:
    model = fitted(estimator, params, TRAIN, values(TRAIN))
    compiled = compile_model(model, HELD_OUT, features(TRAIN), classifier=False)
    assert compiled.info.status == "verified", compiled.info.reason
    assert compiled.info.labelsDiffering is None
    rows = hostile(3_000, 8).assign(age=lambda d: d["age"].clip(-1e6, 1e6))
    got, _ = run_graph(compiled, rows, None)
    assert relative_difference(got, model.predict(rows)) <= TOLERANCE


def test_numeric_pipeline_without_preprocessing_takes_one_matrix() -> None:
    X = TRAIN[["age", "income"]].fillna(0)
    model = build_pipeline(
        LogisticRegression, {}, preprocessing=False, numeric=list(X), categorical=[], seed=0
    ).fit(X, labels(TRAIN))
    compiled = compile_model(model, X.iloc[:200], features(X), classifier=True)
    assert compiled.info.status == "verified", compiled.info.reason
    assert compiled.info.layout == "matrix" and [i.name for i in compiled.info.inputs] == ["X"]


def test_an_estimator_that_cannot_convert_keeps_skops_with_the_reason() -> None:
    model = fitted(HistGradientBoostingClassifier, {"max_iter": 10}, TRAIN, labels(TRAIN))
    compiled = compile_model(model, HELD_OUT, features(TRAIN), classifier=True)
    if compiled.info.status == "verified":  # a converter that learned it is welcome too
        return
    assert compiled.data is None and compiled.info.file is None
    assert compiled.info.reason and compiled.info.reason.startswith("cannot convert: ")
    assert len(compiled.info.reason) < 400


def test_a_graph_that_disagrees_is_not_kept() -> None:
    model = fitted(LogisticRegression, {}, TRAIN, labels(TRAIN))
    other = fitted(DecisionTreeClassifier, {"max_depth": 1}, TRAIN, labels(TRAIN))

    def wrong_graph(_: Any, feats: list[FeatureInfo]) -> Any:
        return convert(other, feats)

    compiled = compile_model(
        model, HELD_OUT, features(TRAIN), classifier=True, convert_fn=wrong_graph
    )
    assert compiled.data is None and compiled.info.status == "unavailable"
    assert compiled.info.reason is not None and "labels differ on" in compiled.info.reason
    assert compiled.info.labelsDiffering


def test_non_numeric_features_without_preprocessing_are_not_convertible() -> None:
    model = build_pipeline(
        LogisticRegression, {}, preprocessing=False, numeric=["age"], categorical=[], seed=0
    )
    with pytest.raises(NotConvertible, match="non-numeric"):
        convert(model, features(TRAIN[["age", "city"]]))
