#!/usr/bin/env python3
"""Batch scoring: `modelfactory-batch` against in-process `model.predict` on the same rows and
cores, and the run's peak memory as the input grows.

Trains one model with the training entrypoint (HistGradientBoosting on 50,000 rows of 10 numeric
and 2 categorical columns: served by scikit-learn, so both sides run the same `predict`), writes
CSVs of each --rows size with an id column, then for each size:

* in process: pyarrow reads the whole CSV (all cores), the estimator predicts labels and
  probabilities, pyarrow writes one Parquet file: rows / wall time, and predict alone;
* the batch runtime as a process of its own (its own Ray, sized as a `compute: {cpu: 2,
  memory: 4Gi}` pod), end to end from start to committed manifest, its process tree (driver,
  Ray's processes, the scoring actors) sampled from /proc every 0.1 s for peak PSS and RSS;
* the batch run once scoring: from the first progress it logs with rows written to its end,
  rows / wall time, and that against in process (the fixed start-up cost left out).

    .venv/bin/python hack/bench/batch_scoring.py --work /tmp/batch-bench
    .venv/bin/python hack/bench/batch_scoring.py --rows 100000 --work /tmp/b   # a quick look
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

from training_memory import rss_pss, tree

NUMERIC = 10
LEVELS = {"region": 12, "plan": 4}
CHUNK = 250_000


def frame(rng: np.random.Generator, n: int, start: int) -> pa.Table:
    numeric = rng.normal(size=(n, NUMERIC))
    cols: dict[str, Any] = {"id": pa.array(np.arange(start, start + n))}
    for i in range(NUMERIC):
        cols[f"x{i}"] = pa.array(numeric[:, i].round(4))
    logit = numeric[:, :4].sum(axis=1)
    for name, levels in LEVELS.items():
        codes = rng.integers(0, levels, n)
        logit += (codes % 3) - 1
        cols[name] = pa.array(np.char.add(f"{name}_", codes.astype(str)).astype(object))
    cols["y"] = pa.array((logit + rng.logistic(size=n) > 0).astype(np.int64))
    return pa.table(cols)


def write_csv(path: Path, rows: int, seed: int, target: bool) -> None:
    rng = np.random.default_rng(seed)
    with pacsv.CSVWriter(
        str(path), frame(rng, 1, 0).drop_columns([] if target else ["y"]).schema
    ) as writer:
        for start in range(0, rows, CHUNK):
            table = frame(rng, min(CHUNK, rows - start), start)
            writer.write_table(table if target else table.drop_columns(["y"]))


def train(work: Path) -> tuple[str, str]:
    from modelfactory_training.main import main as train_main

    data = work / "train.csv"
    write_csv(data, 50_000, 1, target=True)
    config = {
        "spec": {
            "dataset": {"uri": str(data), "target": "y"},
            "model": {
                "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                "params": {"max_iter": 50},
            },
            "tuning": {
                "algorithm": "grid",
                "cvFolds": 2,
                "searchSpace": {"learning_rate": {"values": [0.1]}},
            },
            "output": {"storageUri": f"file://{work}/models"},
        },
        "runId": "bench-model",
    }
    (work / "train.json").write_text(json.dumps(config))
    report = work / "train-result.json"
    code = train_main(["--config", str(work / "train.json"), "--report-file", str(report)])
    result = json.loads(report.read_text())
    assert code == 0 and result["succeeded"], result
    return result["model"]["uri"], result["model"]["digest"]


def in_process(csv: Path, uri: str, digest: str, out: Path) -> dict[str, float]:
    from modelfactory_artifacts.read import load_artifact

    model = load_artifact(uri, digest)
    started = time.perf_counter()
    table = pacsv.read_csv(str(csv))
    data = table.to_pandas()
    features = [f.name for f in model.metadata.features]
    predicted = time.perf_counter()
    labels = model.estimator.predict(data[features])
    proba = model.estimator.predict_proba(data[features])
    predict_s = time.perf_counter() - predicted
    cols = {"id": data["id"].to_numpy(), "prediction": labels}
    cols.update({f"proba_{c}": proba[:, i] for i, c in enumerate(model.estimator.classes_)})
    pq.write_table(pa.table(cols), str(out))
    total = time.perf_counter() - started
    return {"rows": len(data), "seconds": total, "predict_seconds": predict_s}


def after_first_block(log: Path, rows: int, ended: float) -> float | None:
    """Rows/s of a batch run from its first logged progress with rows written to `ended` (epoch
    seconds): the pace once scoring, without the run's fixed start-up cost."""
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        written = (entry.get("progress") or {}).get("rowsWritten") or 0
        if entry.get("message") == "progress" and 0 < written < rows:
            at = datetime.datetime.fromisoformat(entry["time"]).timestamp()
            return (rows - written) / max(ended - at, 1e-9)
    return None


def batch(
    csv: Path, uri: str, digest: str, out: Path, work: Path, batch_size: int
) -> dict[str, Any]:
    import os
    import signal
    import subprocess
    import threading

    from modelfactory_api.runtime import BatchRuntimeConfig
    from modelfactory_api.trainingjob import ComputeSpec
    from modelfactory_operator.logic.trainingjob import ray_sizing

    sizing = ray_sizing(ComputeSpec.model_validate({"cpu": "2", "memory": "4Gi"}))
    config = BatchRuntimeConfig.model_validate(
        {
            "modelUri": uri,
            "modelDigest": digest,
            "input": {"uri": f"file://{csv}", "format": "csv", "carry": ["id"]},
            "output": {"uri": f"file://{out}", "probabilities": True},
            "runtime": "sklearn",
            "runId": f"bench-{time.time_ns()}",
            "ray": sizing.model_dump(),
            "batchSize": batch_size,
        }
    )
    cfg, report = work / "batch.json", work / "batch-result.json"
    cfg.write_text(config.model_dump_json())
    report.unlink(missing_ok=True)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    cmd = [
        sys.executable,
        "-m",
        "modelfactory_training.batch.main",
        "--config",
        str(cfg),
        "--report-file",
        str(report),
    ]
    started = time.perf_counter()
    with (work / "batch.log").open("w") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        peak = {"rss": 0, "pss": 0, "driver": 0}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                sizes = [rss_pss(p) for p in tree(proc.pid)]
                peak["rss"] = max(peak["rss"], sum(s[0] for s in sizes))
                peak["pss"] = max(peak["pss"], sum(s[1] for s in sizes))
                peak["driver"] = max(peak["driver"], sizes[0][0])
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        ended = time.time()
        done.set()
        sampler.join()
    seconds = time.perf_counter() - started
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    result = json.loads(report.read_text())
    assert code == 0 and result["succeeded"], (code, result)
    steady = after_first_block(work / "batch.log", result["rowsWritten"], ended)
    return {
        "rows": result["rowsWritten"],
        "seconds": seconds,
        "after_first_block_rows_per_s": None if steady is None else round(steady),
        "runtime_seconds": result["seconds"],
        "peak_pss_mib": peak["pss"] >> 20,
        "peak_rss_mib": peak["rss"] >> 20,
        "peak_driver_rss_mib": peak["driver"] >> 20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=65536, help="spec.batchSize")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    uri, digest = train(args.work)
    rows_out = []
    for rows in args.rows:
        csv = args.work / f"score-{rows}.csv"
        if not csv.exists():
            write_csv(csv, rows, 2, target=False)
        mine = in_process(csv, uri, digest, args.work / f"inprocess-{rows}.parquet")
        run = batch(csv, uri, digest, args.work / f"batch-{rows}", args.work, args.batch_size)
        rows_out.append(
            {
                "rows": rows,
                "csv_mib": csv.stat().st_size >> 20,
                "in_process_rows_per_s": round(rows / mine["seconds"]),
                "in_process_predict_rows_per_s": round(rows / mine["predict_seconds"]),
                "batch_rows_per_s": round(rows / run["seconds"]),
                "batch_vs_in_process": round(mine["seconds"] / run["seconds"], 2),
                "after_first_block_vs_in_process": (
                    None
                    if run["after_first_block_rows_per_s"] is None
                    else round(run["after_first_block_rows_per_s"] * mine["seconds"] / rows, 2)
                ),
                **{k: v for k, v in run.items() if k != "rows"},
            }
        )
        print(json.dumps(rows_out[-1]), flush=True)
    print(
        "\n| rows | CSV | in process (read, predict, write) | predict alone | batch run, "
        "end to end | batch ÷ in process | batch after its first block | peak PSS of the run "
        "| peak RSS | driver RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows_out:
        steady = (
            "-"
            if r["after_first_block_rows_per_s"] is None
            else f"{r['after_first_block_rows_per_s']:,} rows/s "
            f"({r['after_first_block_vs_in_process']}x)"
        )
        print(
            f"| {r['rows']:,} | {r['csv_mib']} MiB | {r['in_process_rows_per_s']:,} rows/s | "
            f"{r['in_process_predict_rows_per_s']:,} rows/s | {r['batch_rows_per_s']:,} rows/s "
            f"({r['seconds']:.1f} s) | {r['batch_vs_in_process']} | {steady} "
            f"| {r['peak_pss_mib']} MiB | {r['peak_rss_mib']} MiB "
            f"| {r['peak_driver_rss_mib']} MiB |"
        )


if __name__ == "__main__":
    main()
