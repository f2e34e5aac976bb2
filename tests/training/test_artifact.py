from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelfactory_api.runtime import JobIdentity
from modelfactory_artifacts.metadata import FeatureInfo, TrialRecord, sha256_hex, untrusted_types
from modelfactory_training.artifact import build_metadata, json_safe, serialize
from modelfactory_training.errors import SpecError

pytestmark = pytest.mark.unit


def test_a_model_outside_the_allow_list_is_not_written() -> None:
    from sklearn.preprocessing import FunctionTransformer

    with pytest.raises(SpecError, match=r"numpy\.fromregex") as err:
        serialize(FunctionTransformer(np.fromregex))
    assert err.value.reason == "UnsafeModel"


def test_serialize_returns_bytes_and_the_types_to_trust() -> None:
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    data, types = serialize(model)
    assert data[:2] == b"PK"  # skops files are zip archives
    assert "sklearn.linear_model._logistic.LogisticRegression" in types
    assert untrusted_types(types) == []


def test_json_safe() -> None:
    assert json_safe({"a": np.int64(2), "b": (1, np.float32(0.5)), "c": None}) == {
        "a": 2,
        "b": [1, 0.5],
        "c": None,
    }
    assert json_safe(object).startswith("<class")


def test_metadata_records_source_digest_and_libraries() -> None:
    metadata = build_metadata(
        version=4,
        model_bytes=b"abc",
        task="binary",
        features=[FeatureInfo(name="x", dtype="float64", kind="numeric")],
        target="y",
        classes=[np.int64(0), np.int64(1)],
        estimator="sklearn.linear_model.LogisticRegression",
        metric="accuracy",
        metrics={"cv_mean": 0.5},
        best_params={"C": np.float64(1.0)},
        trials=[TrialRecord(params={"C": (1, 2)}, score=0.5)],
        profile=None,
        job=JobIdentity(namespace="ml", name="tj", uid="u", generation=5),
        run_id="run-9",
        now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert metadata.modelSha256 == sha256_hex(b"abc")
    assert metadata.createdAt == "2026-01-02T03:04:05Z"
    assert metadata.target.classes == [0, 1]
    assert metadata.trials[0].params == {"C": [1, 2]}
    assert metadata.source.model_dump() == {
        "namespace": "ml",
        "name": "tj",
        "uid": "u",
        "generation": 5,
        "runId": "run-9",
    }
    assert {"python", "scikit-learn", "numpy", "ray", "skops"} <= set(metadata.libraries)
