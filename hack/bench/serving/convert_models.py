#!/usr/bin/env python
"""Turn the benchmark harness's joblib models into Model Factory artifacts.

    .venv/bin/python hack/bench/serving/convert_models.py --work /tmp/bench-work

Reads <work>/models/{rf,lr}.joblib (written by the harness's train_models.py, trusted: we made
them on this machine) and writes <work>/modelfactory/{rf,lr}/1/ with model.skops, metadata.json
and _COMPLETE, exactly as the training runtime would. Prints the digests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform

import joblib
import numpy as np
import sklearn
import skops
import skops.io as sio

from modelfactory_artifacts.metadata import (
    COMPLETE_MARKER,
    METADATA_FILENAME,
    MODEL_FILENAME,
    ArtifactMetadata,
    sha256_hex,
)


def convert(src: pathlib.Path, dest: pathlib.Path) -> str:
    model = joblib.load(src)
    n_features = int(model.n_features_in_)
    dest.mkdir(parents=True, exist_ok=True)
    data = sio.dumps(model)
    (dest / MODEL_FILENAME).write_bytes(data)
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
        features=[
            {"name": f"f{i}", "dtype": "float64", "kind": "numeric"} for i in range(n_features)
        ],
        target={"name": "y", "classes": classes},
        estimator=type(model).__name__,
        metric="accuracy",
        metrics={},
        bestParams={},
        trials=[],
    )
    (dest / METADATA_FILENAME).write_text(meta.model_dump_json(indent=2))
    (dest / COMPLETE_MARKER).write_text("")
    return meta.digest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/bench-work")
    ap.add_argument("--models", default="rf,lr")
    args = ap.parse_args()
    work = pathlib.Path(args.work)
    out = {}
    for name in args.models.split(","):
        dest = work / "modelfactory" / name / "1"
        out[name] = {"uri": str(dest), "digest": convert(work / "models" / f"{name}.joblib", dest)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
