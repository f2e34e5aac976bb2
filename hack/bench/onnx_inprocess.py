#!/usr/bin/env python
"""Rows per second of scikit-learn and of the compiled model (ONNX Runtime, one thread), in
process, for every estimator the examples train and for the serving benchmark's models.

    .venv/bin/python hack/bench/onnx_inprocess.py            # ~2 min on 2 cores
    .venv/bin/python hack/bench/onnx_inprocess.py --quick    # shorter timings, a smoke test

Each model is the trainer's pipeline (build_pipeline: preprocessing on, as the examples) fitted
on the example's data with the example's fixed parameters (the first value of a searched one),
compiled and checked by the trainer's own code (compile_model). For each runtime: predict on a
batch of 1 and of 64 rows, taken from the data, as often as fits in the time given; rows/s is
the median of 5 timings. scikit-learn gets a DataFrame (as the server gives a pipeline), ONNX
Runtime the per-feature inputs the server builds (`feeds`), so both sides include their input
conversion. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge

from modelfactory_artifacts.metadata import FeatureInfo
from modelfactory_artifacts.onnx_model import feeds, open_session
from modelfactory_training.data import load_toy
from modelfactory_training.onnx_export import compile_model
from modelfactory_training.pipeline import build_pipeline
from modelfactory_training.prepare import feature_kind


def churn() -> tuple[pd.DataFrame, Any]:
    frame = pd.read_csv("examples/data/churn.csv")
    return frame.drop(columns=["churned"]), frame["churned"]


def toy(name: str) -> Callable[[], tuple[pd.DataFrame, Any]]:
    def load() -> tuple[pd.DataFrame, Any]:
        frame = load_toy(name)
        return frame.drop(columns=["target"]), frame["target"]

    return load


def bench_data() -> tuple[pd.DataFrame, Any]:
    X, y = make_classification(n_samples=20000, n_features=20, random_state=0)
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(20)]), y


CASES: list[tuple[str, Callable[[], tuple[pd.DataFrame, Any]], Any, dict[str, Any], bool]] = [
    (
        "iris-classifier: RandomForest(20 trees)",
        toy("iris"),
        RandomForestClassifier,
        {"n_estimators": 20, "max_depth": 4},
        True,
    ),
    (
        "closed-loop: LogisticRegression (iris)",
        toy("iris"),
        LogisticRegression,
        {"max_iter": 500},
        True,
    ),
    (
        "csv-churn: LogisticRegression (mixed, categorical)",
        churn,
        LogisticRegression,
        {"max_iter": 500},
        True,
    ),
    ("diabetes-regressor: Ridge", toy("diabetes"), Ridge, {}, False),
    (
        "ray-cluster: HistGradientBoosting (digits)",
        toy("digits"),
        HistGradientBoostingClassifier,
        {"max_iter": 50},
        True,
    ),
    (
        "serving benchmark: RandomForest(100 trees, depth 10), 20 features",
        bench_data,
        RandomForestClassifier,
        {"n_estimators": 100, "max_depth": 10},
        True,
    ),
    (
        "serving benchmark: LogisticRegression, 20 features",
        bench_data,
        LogisticRegression,
        {"max_iter": 1000},
        True,
    ),
]


def rate(fn: Callable[[], Any], rows: int, seconds: float) -> float:
    fn()
    timings = []
    for _ in range(5):
        calls, started = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= seconds / 5:
                break
        timings.append(calls * rows / elapsed)
    return statistics.median(timings)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    seconds = 0.5 if args.quick else 2.5
    warnings.filterwarnings("ignore")
    print("| model | ONNX | sklearn rows/s, batch 1 | ONNX | x | sklearn, batch 64 | ONNX | x |")
    print("|---|---|---|---|---|---|---|---|")
    for label, load, estimator, params, classifier in CASES:
        X, y = load()
        feats = [
            FeatureInfo(name=str(c), dtype=str(X[c].dtype), kind=feature_kind(X[c].dtype))
            for c in X.columns
        ]
        model = build_pipeline(
            estimator,
            params,
            preprocessing=True,
            seed=0,
            numeric=[f.name for f in feats if f.kind == "numeric"],
            categorical=[f.name for f in feats if f.kind != "numeric"],
        ).fit(X, y)
        compiled = compile_model(model, X.iloc[-2000:], feats, classifier)
        info = compiled.info
        cells = [label, info.status if info.verified else f"no: {(info.reason or '')[:60]}"]
        session = open_session(compiled.data, 1) if compiled.data is not None else None
        for n in (1, 64):
            batch = X.iloc[:n]
            sk = rate(lambda b=batch, m=model: m.predict(b), n, seconds)
            cells.append(f"{sk:,.0f}")
            if session is None:
                cells += ["-", "-"]
                continue
            columns = [batch[c].to_numpy() for c in X.columns]
            ox = rate(
                lambda c=columns, k=n, s=session, i=info: s.run(None, feeds(i, c, k)), n, seconds
            )
            cells += [f"{ox:,.0f}", f"{ox / sk:,.0f}x"]
        print("| " + " | ".join(cells) + " |", flush=True)
    print(
        f"\nnumpy {np.__version__}; one ONNX Runtime thread; medians of 5 timings of "
        f"{seconds / 5:.1f} s"
    )


if __name__ == "__main__":
    main()
