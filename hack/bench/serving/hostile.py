#!/usr/bin/env python
"""Hostile request bodies against one real `modelfactory-serve` process on 127.0.0.1.

    PYTHONPATH=api/src:serving/src .venv/bin/python hack/bench/serving/hostile.py
    .venv/bin/python hack/bench/serving/hostile.py --root /tmp/mf-prev   # another checkout

For every decode path (OIP v2 strings sent as FP64/INT64/BYTES, nested data, deep nesting,
KServe v1 instances, inputs as rows, inputs as columns, rows as objects) and every size
(~10 KB, ~100 KB, ~1 MB), sends one body and prints the status code and how much the server's
peak RSS (VmHWM, reset to the current RSS before each body) rose above its RSS before it.
Two models: an array model (LogisticRegression on 4 numeric features) and a DataFrame pipeline
(2 numeric features and a categorical one). Goal: a 4xx every time, growth <= 20 MB each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_server import ROOT, reset_peak, start_server, status_kb, write_artifact

SIZES = {"10KB": 10_000, "100KB": 100_000, "1MB": 1_000_000}


def strings(size: int, count: int) -> list[str]:
    """`count` one-character strings and one long string: ~`size` bytes of JSON."""
    long = max(size - 4 * count, 16)
    return ["a"] * (count - 1) + ["b" * long]


def rows_of(values: list[Any], width: int) -> list[list[Any]]:
    return [values[i : i + width] for i in range(0, len(values), width)]


def v2(data: Any, shape: list[int], datatype: str) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]}


def bodies(size: int, features: list[str]) -> dict[str, tuple[str, bytes]]:
    """name -> (protocol, body) for a model with these features."""
    width = len(features)
    count = max(size // 80 // width * width, width)  # a fifth of the body: short strings
    s = strings(size, count)
    rows = count // width
    out: dict[str, tuple[str, Any]] = {
        "v2 FP64 strings": ("v2", v2(s, [rows, width], "FP64")),
        "v2 INT64 strings": ("v2", v2(s, [rows, width], "INT64")),
        "v2 BYTES strings": ("v2", v2(s, [rows, width], "BYTES")),
        "v2 nested strings": ("v2", v2(rows_of(s, width), [rows, width], "FP64")),
        "v2 nested, shape mismatch": ("v2", v2(rows_of(s, 1), [1, count], "FP64")),
        "v2 per-feature BYTES": (
            "v2",
            {
                "inputs": [
                    {"name": f, "shape": [rows], "datatype": "BYTES", "data": s[i::width]}
                    for i, f in enumerate(features)
                ]
            },
        ),
        "v1 instances": ("v1", {"instances": rows_of(s, width)}),
        "v1 inputs rows": ("v1", {"inputs": rows_of(s, width)}),
        "v1 inputs columns": ("v1", {"inputs": {f: s[i::width] for i, f in enumerate(features)}}),
        "v1 dict rows": (
            "v1",
            {"instances": [dict(zip(features, r, strict=True)) for r in rows_of(s, width)]},
        ),
    }
    encoded = {k: (p, json.dumps(b).encode()) for k, (p, b) in out.items()}
    depth = size // 2
    encoded["v2 deep nesting"] = ("v2", b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}")
    return encoded


def models(work: Path) -> dict[str, tuple[str, str, list[str]]]:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4))
    y = (X[:, 0] > 0).astype(int)
    feats = [{"name": f"x{i}", "dtype": "float64", "kind": "numeric"} for i in range(4)]
    lr = write_artifact(work / "lr" / "1", LogisticRegression(), X, y, feats, "binary")
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 500),
            "income": rng.normal(50, 15, 500),
            "city": rng.choice(["paris", "lyon", "nice"], 500),
        }
    )
    ym = np.where(df["age"] > 40, "yes", "no")
    pipe = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["age", "income"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                    ]
                ),
            ),
            ("est", LogisticRegression()),
        ]
    )
    mixed_feats = [
        {"name": "age", "dtype": "float64", "kind": "numeric"},
        {"name": "income", "dtype": "float64", "kind": "numeric"},
        {"name": "city", "dtype": "object", "kind": "categorical"},
    ]
    mixed = write_artifact(work / "mixed" / "1", pipe, df, ym, mixed_feats, "binary")
    return {"lr": (*lr, ["x0", "x1", "x2", "x3"]), "mixed": (*mixed, ["age", "income", "city"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose server runs")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument(
        "--sizes",
        default=",".join(SIZES),
        help="which of 10KB,100KB,1MB (a build without the fix may need tens of GB "
        "for the 1MB bodies)",
    )
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mf-hostile-"))
    print(f"server code: {args.root}   work: {work}")
    worst_growth, non_4xx = 0.0, 0
    for model, (uri, digest, features) in models(work).items():
        server = start_server(model, uri, digest, work / f"server-{model}.log", args.root)
        try:
            paths = {"v2": f"/v2/models/{model}/infer", "v1": f"/v1/models/{model}:predict"}
            base = status_kb(server.pid, "VmRSS")
            print(f"\nmodel {model}: server RSS after load {base / 1024:.0f} MB")
            print(
                f"{'body':30} {'size':>6} {'bytes':>9} {'status':>6} {'peak growth MB':>15}  error"
            )
            with httpx.Client(base_url=server.url, timeout=120) as client:
                for label in args.sizes.split(","):
                    size = SIZES[label]
                    for name, (protocol, body) in bodies(size, features).items():
                        rss = status_kb(server.pid, "VmRSS")
                        if not reset_peak(server.pid):
                            rss = status_kb(server.pid, "VmHWM")
                        r = client.post(paths[protocol], content=body)
                        growth = max(status_kb(server.pid, "VmHWM") - rss, 0) / 1024
                        worst_growth = max(worst_growth, growth)
                        non_4xx += not 400 <= r.status_code < 500
                        error = (
                            r.json().get("error", "")
                            if r.headers.get("content-type", "").startswith("application/json")
                            else r.text
                        )
                        print(
                            f"{name:30} {label:>6} {len(body):>9,} {r.status_code:>6} "
                            f"{growth:>15.1f}  {error[:70]}"
                        )
        finally:
            server.stop()
    print(
        f"\nworst peak RSS growth: {worst_growth:.1f} MB (goal <= 20); "
        f"answers other than 4xx: {non_4xx} (goal 0)"
    )


if __name__ == "__main__":
    main()
