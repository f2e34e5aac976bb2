"""The model of a scoring run: the verified artifact and what runs it, on Arrow batches.

Loaded once in the driver (to check the run can work before any row is read) and once per Ray
actor, each time through `load_artifact`: the digest, the skops allow-list and the feature
schema are checked wherever the model is loaded. `runtime` auto runs the version's verified
ONNX model when it has one, else scikit-learn, as the model server does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from modelfactory_artifacts.batch_manifest import PREDICTION_COLUMN, probability_column
from modelfactory_artifacts.metadata import FeatureInfo
from modelfactory_artifacts.onnx_model import feeds, open_session, read_outputs
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


@dataclass(frozen=True)
class Outputs:
    labels: np.ndarray
    proba: np.ndarray | None


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
        use_onnx = runtime != "sklearn" and loaded.onnx is not None
        self.runtime: Literal["onnx", "sklearn"] = "onnx" if use_onnx else "sklearn"
        self._session = open_session(loaded.onnx, onnx_threads) if use_onnx else None  # type: ignore[arg-type]
        classes = getattr(self.estimator, "classes_", None)
        if classes is None and loaded.metadata.target.classes is not None:
            classes = np.asarray(loaded.metadata.target.classes)
        self.classes: np.ndarray | None = None if classes is None else np.asarray(classes)
        self.is_classifier = loaded.metadata.task != "regression" and self.classes is not None
        self.has_proba = self.is_classifier and callable(
            getattr(self.estimator, "predict_proba", None)
        )
        fitted = getattr(self.estimator, "feature_names_in_", None)
        numeric_only = all(f.kind == "numeric" for f in self.features)
        # As the server: a pipeline fitted on a DataFrame gets one; a bare model a matrix.
        self.frame_mode = fitted is not None or not numeric_only

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

    def predict(self, table: pa.Table, want_proba: bool) -> Outputs:
        columns = self.columns(table)
        rows = table.num_rows
        if self._session is not None and self.metadata.onnx is not None:
            values = self._session.run(None, feeds(self.metadata.onnx, columns, rows))
            labels, proba = read_outputs(values, self.classes if self.is_classifier else None)
            return Outputs(labels, proba if want_proba else None)
        if self.frame_mode:
            X: Any = pd.DataFrame(dict(zip(self.feature_names, columns, strict=True)), copy=False)
        else:
            X = np.column_stack(columns) if columns else np.empty((rows, 0))
        if want_proba and self.has_proba:
            # A pipeline's preprocessing runs once for both answers: what Pipeline.predict and
            # predict_proba each do, shared (the same numbers, half the work).
            final, X = _preprocessed(self.estimator, X)
            proba = np.asarray(final.predict_proba(X), dtype=np.float64)
            return Outputs(np.asarray(final.predict(X)), proba)
        return Outputs(np.asarray(self.estimator.predict(X)), None)

    def output_columns(self, outputs: Outputs) -> dict[str, pa.Array]:
        """`prediction`, then `proba_<class>` per class when probabilities were asked for."""
        labels = outputs.labels
        if labels.dtype.kind == "O":
            labels = labels.astype(str)
        result = {PREDICTION_COLUMN: pa.array(labels)}
        if outputs.proba is not None:
            for i, name in enumerate(self.probability_columns):
                result[name] = pa.array(outputs.proba[:, i], type=pa.float64())
        return result


def _preprocessed(estimator: Any, X: Any) -> tuple[Any, Any]:
    """(final estimator, X through every step before it) for a Pipeline; (estimator, X) else."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        return estimator.steps[-1][1], estimator[:-1].transform(X)
    return estimator, X
