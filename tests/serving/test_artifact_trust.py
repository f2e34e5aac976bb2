"""The type allow-list: complete for everything the trainer writes, closed to everything else."""

from __future__ import annotations

import json
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import is_classifier

from modelfactory_api.runtime import JobIdentity
from modelfactory_artifacts.metadata import FeatureInfo, TrialRecord, trusted_types, version_uri
from modelfactory_artifacts.read import ArtifactError, load_artifact
from modelfactory_training.artifact import build_metadata, serialize
from modelfactory_training.errors import SpecError
from modelfactory_training.estimator import resolve_estimator
from modelfactory_training.pipeline import build_pipeline
from modelfactory_training.prepare import feature_kind
from modelfactory_training.store import ModelStore

from .hostile import HOSTILE, write_hostile

pytestmark = pytest.mark.unit

ROWS = 80
# Catalogue estimators the trainer accepts but cannot fit on one target column: their fit
# needs a 2-D y (multi-task) or fails on any data a TrainingJob can give.
NO_SINGLE_TARGET = {
    "sklearn.linear_model.MultiTaskElasticNet",
    "sklearn.linear_model.MultiTaskElasticNetCV",
    "sklearn.linear_model.MultiTaskLasso",
    "sklearn.linear_model.MultiTaskLassoCV",
}


def catalogue() -> list[str]:
    text = resources.files("modelfactory_api").joinpath("sklearn_estimators.json").read_text()
    return sorted(json.loads(text)["estimators"])


def frames() -> list[tuple[pd.DataFrame, bool]]:
    """What the trainer fits on: mixed columns with preprocessing, plain or count columns, or
    a single one, without."""
    rng = np.random.default_rng(0)
    numeric = pd.DataFrame(rng.normal(size=(ROWS, 3)), columns=["a", "b", "c"])
    mixed = numeric.copy()
    mixed.loc[::7, "a"] = np.nan
    mixed["colour"] = rng.choice(["red", "green", "blue"], size=ROWS)
    counts = pd.DataFrame(rng.integers(0, 5, size=(ROWS, 3)), columns=["a", "b", "c"])
    return [(mixed, True), (numeric, False), (counts, False), (numeric[["a"]], False)]


def trained(cls: type, X: pd.DataFrame, preprocessing: bool, params: dict[str, Any]) -> Any:
    rng = np.random.default_rng(1)
    y = (
        pd.Series(rng.choice(["no", "yes"], size=ROWS))
        if is_classifier(cls())
        else pd.Series(rng.gamma(2.0, size=ROWS) + 0.1)
    )
    numeric = [c for c in X if X[c].dtype.kind in "fi"]
    pipe = build_pipeline(
        cls,
        params,
        preprocessing=preprocessing,
        numeric=numeric,
        categorical=[c for c in X if c not in numeric],
    )
    return pipe.fit(X, y)


def write(store: ModelStore, version: int, model: Any, X: pd.DataFrame, path: str) -> str:
    """The trainer's own writer: serialize (which checks the allow-list), metadata, store."""
    data, _ = serialize(model)
    features = [
        FeatureInfo(name=str(c), dtype=str(X[c].dtype), kind=feature_kind(X[c].dtype))  # type: ignore[arg-type]
        for c in X
    ]
    classes = getattr(model, "classes_", None)
    metadata = build_metadata(
        version=version,
        model_bytes=data,
        task="binary" if classes is not None else "regression",
        features=features,
        target="y",
        classes=list(classes) if classes is not None else None,
        estimator=path,
        metric="accuracy" if classes is not None else "r2",
        metrics={},
        best_params={},
        trials=[TrialRecord(params={})],
        profile=None,
        job=JobIdentity(),
        run_id="r",
    )
    store.write(version, data, metadata)
    return version_uri(store.uri, version)


def accepted_estimators() -> list[str]:
    """The catalogue's estimators the trainer accepts (it refuses the others before training)."""
    accepted = []
    for path in catalogue():
        try:
            resolve_estimator(path)
        except SpecError:
            continue
        except AttributeError:
            continue  # SelfTrainingClassifier: scikit-learn fails on the bare class
        accepted.append(path)
    return accepted


def test_the_trainer_accepts_most_of_the_catalogue() -> None:
    assert len(set(accepted_estimators()) - NO_SINGLE_TARGET) > 80


# One test per estimator: the slowest of the unit layer, spread over the test workers.
@pytest.mark.parametrize("path", sorted(set(accepted_estimators()) - NO_SINGLE_TARGET))
def test_every_estimator_the_trainer_writes_loads(path: str, tmp_path: Path) -> None:
    store = ModelStore.open(str(tmp_path))
    cls = resolve_estimator(path)
    defaults = cls().get_params()
    # One component is all a single target allows (cross decomposition).
    base = {"n_components": 1} if "n_components" in defaults else {}
    variants = [base, {**base, "random_state": 0}] if "random_state" in defaults else [base]
    version = 0
    for i, (X, preprocessing) in enumerate(frames()):
        for params in variants if i == 0 else variants[:1]:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = trained(cls, X, preprocessing, params)
            except Exception:
                continue  # the trainer's trial would fail the same way
            version += 1
            got = load_artifact(write(store, version, model, X, path), None)
            # Bound to its metadata by the names it was fitted on; only a one-feature model
            # (isotonic regression) records none, and has no order to permute.
            names = getattr(got.estimator, "feature_names_in_", None)
            assert (names is None and X.shape[1] == 1) or list(names) == list(X), path
    assert version > 0, f"{path}: no frame the trainer gives could fit it"


def test_the_allow_list_holds_classes_only() -> None:
    import importlib

    for name in trusted_types():
        module, _, attr = name.rpartition(".")
        assert module.split(".")[0] in ("sklearn", "numpy", "scipy", "builtins"), name
        assert isinstance(getattr(importlib.import_module(module), attr), type), name
    assert "builtins.type" not in trusted_types() and "builtins.object" not in trusted_types()


@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_hostile_artifact_is_refused_naming_the_type(tmp_path: Path, label: str) -> None:
    art, type_name = write_hostile(tmp_path / label / "1", label)
    with pytest.raises(ArtifactError) as err:
        load_artifact(art.uri, art.digest)
    assert err.value.reason == "UntrustedType"
    assert type_name in err.value.message
    assert type_name not in trusted_types()


@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_the_trainer_refuses_to_write_a_hostile_model(label: str) -> None:
    build, type_name = HOSTILE[label]
    with pytest.raises(SpecError) as err:
        serialize(build())
    assert type_name in str(err.value)
