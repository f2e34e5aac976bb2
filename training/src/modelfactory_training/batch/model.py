"""The model of a scoring run: the verified artifact and what runs it, on Arrow batches.

Loaded once in the driver (to check the run can work before any row is read) and once per Ray
actor, each time through `load_artifact`: the digest, the skops allow-list and the feature
schema are checked wherever the model is loaded. `runtime` auto runs the version's verified
ONNX model when it has one, else scikit-learn, as the model server does.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelfactory_artifacts.batch_manifest import PREDICTION_COLUMN, probability_column
from modelfactory_artifacts.metadata import FeatureInfo
from modelfactory_artifacts.predict import Prediction, Predictor
from modelfactory_artifacts.read import ArtifactError, LoadedModel, load_artifact
from modelfactory_training.errors import SpecError, StorageAccessError, TransientError

RuntimeChoice = Literal["auto", "onnx", "sklearn"]


def load_model(uri: str, digest: str, runtime: RuntimeChoice) -> LoadedModel:
    """The verified artifact; ArtifactError becomes the run's failure with the same reason."""
    try:
        return load_artifact(uri, digest, with_onnx=runtime != "sklearn")
    except ArtifactError as exc:
        if exc.reason == "StorageAccessDenied":
            raise StorageAccessError(f"model: {exc.message}") from exc
        if exc.reason == "MissingArtifact" and "cannot" in exc.message:
            raise TransientError("ModelUnavailable", f"model: {exc.message}") from exc
        raise SpecError(exc.reason, f"model {uri}: {exc.message}") from exc


def arrow_type(feature: FeatureInfo) -> pa.DataType:
    """The Arrow type a feature's column is read as (CSV) or checked against (Parquet)."""
    dtype = feature.dtype.lower()
    if feature.kind == "numeric":
        return pa.float64()
    if feature.kind == "boolean" or dtype.startswith("bool"):
        return pa.bool_()
    if dtype.startswith(("int", "uint")):
        return pa.int64()
    if dtype.startswith("float"):
        return pa.float64()
    return pa.string()


class BatchModel:
    """A loaded model that predicts Arrow tables of feature columns."""

    def __init__(self, loaded: LoadedModel, runtime: RuntimeChoice, onnx_threads: int = 1):
        self.loaded = loaded
        self.metadata = loaded.metadata
        self.features = list(loaded.metadata.features)
        self.feature_names = [f.name for f in self.features]
        self.estimator = loaded.estimator
        if runtime == "onnx" and loaded.onnx is None:
            raise SpecError(
                "OnnxUnavailable",
                f"runtime onnx: model {loaded.uri} has no verified ONNX model"
                + (
                    f" ({loaded.metadata.onnx.reason})"
                    if loaded.metadata.onnx and loaded.metadata.onnx.reason
                    else ""
                ),
            )
        # The same answers as the model server's, from the same code.
        self.predictor = Predictor(loaded, use_onnx=runtime != "sklearn", onnx_threads=onnx_threads)
        self.runtime: Literal["onnx", "sklearn"] = self.predictor.runtime
        self.classes = self.predictor.classes
        self.is_classifier = self.predictor.is_classifier
        self.has_proba = self.predictor.has_proba
        self.frame_mode = self.predictor.frame_mode

    @property
    def probability_columns(self) -> list[str]:
        return [] if self.classes is None else [probability_column(c) for c in self.classes]

    def columns(self, table: pa.Table) -> list[np.ndarray]:
        """One 1-D array per feature, in feature order: numbers as float64 (missing: NaN),
        categories as their values (missing: None)."""
        out = []
        for feature in self.features:
            column = table.column(feature.name)
            if feature.kind == "numeric":
                values = pc.cast(column, pa.float64()).to_numpy()
                out.append(np.asarray(values, dtype=np.float64))
            else:
                out.append(column.to_pandas().to_numpy())
        return out

    def predict(self, table: pa.Table, want_proba: bool) -> Prediction:
        return self.predictor.predict(self.columns(table), want_proba)

    def output_columns(self, outputs: Prediction) -> dict[str, pa.Array]:
        """`prediction`, then `proba_<class>` per class when probabilities were asked for."""
        labels = outputs.labels
        if labels.dtype.kind == "O":
            labels = labels.astype(str)
        result = {PREDICTION_COLUMN: pa.array(labels)}
        if outputs.proba is not None:
            for i, name in enumerate(self.probability_columns):
                result[name] = pa.array(outputs.proba[:, i], type=pa.float64())
        return result
