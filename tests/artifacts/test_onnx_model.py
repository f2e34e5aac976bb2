"""What the trainer and every runtime agree on about model.onnx: how a batch becomes the graph's
inputs, how outputs read back, and when two answers are the same."""

import numpy as np
import pandas as pd
import pytest

from modelfactory_artifacts.metadata import ArtifactMetadata
from modelfactory_artifacts.onnx_model import (
    MISSING_CATEGORY,
    TOLERANCE,
    OnnxInfo,
    OnnxInput,
    category_text,
    clear_labels,
    feeds,
    float_column,
    read_outputs,
    relative_difference,
)

pytestmark = pytest.mark.unit

COLUMNS = OnnxInfo(
    status="verified",
    file="model.onnx",
    sha256="a" * 64,
    layout="columns",
    inputs=[OnnxInput(name="age", kind="float"), OnnxInput(name="city", kind="string")],
)


def test_missing_categories_of_every_kind_become_the_sentinel() -> None:
    values = np.array(["paris", None, float("nan"), pd.NA, "", True, 3], dtype=object)
    text = category_text(values)
    assert text.shape == (7, 1) and text.dtype == object
    assert text[:, 0].tolist() == [
        "paris",
        MISSING_CATEGORY,
        MISSING_CATEGORY,
        MISSING_CATEGORY,
        "",
        "True",
        "3",
    ]


def test_pandas_string_columns_keep_their_values() -> None:
    column = pd.Series(["a", None, "b"], dtype="str").to_numpy()
    assert category_text(column)[:, 0].tolist() == ["a", MISSING_CATEGORY, "b"]


def test_floats_past_float32_stay_finite() -> None:
    col = float_column([1.5, np.nan, 1e300, -1e300])
    assert col.dtype == np.float32 and col.shape == (4, 1)
    assert col[0, 0] == 1.5 and np.isnan(col[1, 0])
    assert np.isfinite(col[2:, 0]).all() and col[2, 0] > 3e38 and col[3, 0] < -3e38


def test_feeds_per_feature_from_columns_or_matrix() -> None:
    got = feeds(COLUMNS, [np.array([30.0, np.nan]), np.array(["nice", None], dtype=object)], 2)
    assert list(got) == ["age", "city"]
    assert got["age"].dtype == np.float32 and got["age"].shape == (2, 1)
    assert got["city"][:, 0].tolist() == ["nice", MISSING_CATEGORY]
    with pytest.raises(ValueError, match="takes 2 inputs, got 1"):
        feeds(COLUMNS, [np.array([1.0])], 1)


def test_feeds_one_matrix() -> None:
    info = COLUMNS.model_copy(
        update={"layout": "matrix", "inputs": [OnnxInput(name="X", kind="float")]}
    )
    matrix = np.arange(6, dtype=np.float64).reshape(3, 2)
    for given in (matrix, [matrix[:, 0], matrix[:, 1]]):
        got = feeds(info, given, 3)
        assert list(got) == ["X"] and got["X"].dtype == np.float32
        assert got["X"].tolist() == matrix.tolist()


def test_outputs_take_the_classes_type() -> None:
    labels, proba = read_outputs(
        [np.array(["yes", "no"], dtype=object), np.array([[0.2, 0.8], [0.9, 0.1]], np.float32)],
        np.array(["no", "yes"]),
    )
    assert labels.tolist() == ["yes", "no"] and labels.dtype.kind == "U"
    assert proba is not None and proba.dtype == np.float64
    values, none = read_outputs([np.array([[1.5], [2.5]], np.float32)], None)
    assert values.tolist() == [1.5, 2.5] and values.dtype == np.float64 and none is None


def test_relative_difference() -> None:
    assert relative_difference(np.array([1.0, 200.0]), np.array([1.0, 200.02])) == pytest.approx(
        1e-4, rel=1e-3
    )
    assert relative_difference(np.array([0.5]), np.array([0.50001])) == pytest.approx(1e-5)
    assert relative_difference(np.array([np.nan]), np.array([np.nan])) == 0.0
    assert relative_difference(np.array([np.nan]), np.array([1.0])) == float("inf")
    assert relative_difference(np.zeros(2), np.zeros(3)) == float("inf")
    assert relative_difference(np.zeros(0), np.zeros(0)) == 0.0


def test_close_calls_are_not_held_against_the_labels() -> None:
    proba = np.array([[0.5, 0.5], [0.50001, 0.49999], [0.9, 0.1], [0.1, 0.2, 0.7][:2]])
    assert clear_labels(proba).tolist() == [False, False, True, True]
    assert clear_labels(np.array([[0.5, 0.5 + 3 * TOLERANCE]])).tolist() == [True]


def test_unavailable_is_never_verified_and_metadata_round_trips() -> None:
    info = OnnxInfo(status="unavailable", reason="cannot convert: x")
    assert not info.verified and COLUMNS.verified
    with pytest.raises(ValueError):
        OnnxInfo(status="verified", sha256="not-hex")
    meta = {
        "version": 1,
        "createdAt": "t",
        "task": "binary",
        "modelSha256": "b" * 64,
        "libraries": {},
        "features": [{"name": "age", "dtype": "float64", "kind": "numeric"}],
        "target": {"name": "y"},
        "estimator": "e",
        "metric": "accuracy",
        "metrics": {},
        "bestParams": {},
        "trials": [],
        "onnx": COLUMNS.model_dump(),
    }
    parsed = ArtifactMetadata.model_validate(meta)
    assert parsed.onnx == COLUMNS
    assert ArtifactMetadata.model_validate({**meta, "onnx": None}).onnx is None


def test_one_long_category_does_not_widen_every_row() -> None:
    values = np.array(["x" * 8_192] + ["a"] * 100_000, dtype=object)
    text = category_text(values)
    assert text.dtype == object and text[0, 0] == "x" * 8_192 and text[1, 0] == "a"
    assert text.nbytes < 1_000_000  # object pointers, not 100,001 times 8,192 characters
