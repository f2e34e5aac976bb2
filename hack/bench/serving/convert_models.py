#!/usr/bin/env python
"""Turn the benchmark harness's joblib models into Model Factory artifacts.

    .venv/bin/python hack/bench/serving/convert_models.py --work /tmp/bench-work

Reads <work>/models/{rf,lr}.joblib (written by the harness's train_models.py, trusted: we made
them on this machine) and writes <work>/modelfactory/{rf,lr}/1/ with model.skops, model.onnx
(compiled and checked by the trainer's own code, on the last 2,000 training rows),
metadata.json and _COMPLETE, exactly as the training runtime would. Prints the digests.

metadata.json carries the reference profile of the harness's training data (regenerated:
train_models.py uses make_classification(20000, 20, random_state=0); checked against
<work>/rows.json), with the model's predictions on those rows (the harness keeps no held-out
split), so the server measures drift unless MF_DRIFT_ENABLED=false. --no-profile leaves it out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform

import joblib
import numpy as np
import pandas as pd
import sklearn
import skops
import skops.io as sio
from sklearn.datasets import make_classification

from modelfactory_artifacts.metadata import (
    COMPLETE_MARKER,
    METADATA_FILENAME,
    MODEL_FILENAME,
    ArtifactMetadata,
    FeatureInfo,
    sha256_hex,
)
from modelfactory_artifacts.profile import ReferenceProfile, build_profile
from modelfactory_training.onnx_export import compile_model


def training_data(work: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """The harness's training set, regenerated; its first rows are the request rows."""
    X, y = make_classification(n_samples=20000, n_features=20, random_state=0)
    rows = work / "rows.json"
    if rows.exists():
        sent = np.asarray(json.loads(rows.read_text()))
        if not np.allclose(sent, X[: len(sent)], atol=1e-5):
            raise SystemExit(f"{rows} is not from make_classification(20000, 20, random_state=0)")
    return X, y


def profile_of(model: object, X: np.ndarray, y: np.ndarray) -> ReferenceProfile:
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    return build_profile(
        frame,
        {name: "numeric" for name in frame.columns},
        target=pd.Series(y),
        target_kind="categorical",
        predictions=model.predict(X),  # type: ignore[attr-defined]
    )


def convert(
    src: pathlib.Path,
    dest: pathlib.Path,
    data_xy: tuple[np.ndarray, np.ndarray] | None,
    X_check: np.ndarray,
) -> str:
    model = joblib.load(src)
    n_features = int(model.n_features_in_)
    dest.mkdir(parents=True, exist_ok=True)
    data = sio.dumps(model)
    (dest / MODEL_FILENAME).write_bytes(data)
    features = [
        FeatureInfo(name=f"f{i}", dtype="float64", kind="numeric") for i in range(n_features)
    ]
    # The trainer's compiler and check: model.onnx beside model.skops, served by default.
    compiled = compile_model(
        model, pd.DataFrame(X_check, columns=[f.name for f in features]), features, True
    )
    if compiled.data is not None and compiled.info.file:
        (dest / compiled.info.file).write_bytes(compiled.data)
    classes = np.asarray(model.classes_).tolist()
    meta = ArtifactMetadata(
        version=1,
        createdAt=datetime.datetime.now(datetime.UTC).isoformat(),
        task="binary" if len(classes) == 2 else "multiclass",
        modelSha256=sha256_hex(data),
        libraries={
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "skops": skops.__version__,
        },
        features=features,
        target={"name": "y", "classes": classes},
        estimator=type(model).__name__,
        metric="accuracy",
        metrics={},
        bestParams={},
        trials=[],
        profile=None if data_xy is None else profile_of(model, *data_xy),
        onnx=compiled.info,
    )
    (dest / METADATA_FILENAME).write_bytes(meta.to_json())
    (dest / COMPLETE_MARKER).write_text("")
    return meta.digest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/bench-work")
    ap.add_argument("--models", default="rf,lr")
    ap.add_argument("--no-profile", action="store_true", help="no reference profile: no drift")
    args = ap.parse_args()
    work = pathlib.Path(args.work)
    X, y = training_data(work)
    data_xy = None if args.no_profile else (X, y)
    out = {}
    for name in args.models.split(","):
        dest = work / "modelfactory" / name / "1"
        out[name] = {
            "uri": str(dest),
            "digest": convert(work / "models" / f"{name}.joblib", dest, data_xy, X[-2000:]),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
