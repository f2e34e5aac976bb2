#!/usr/bin/env python3
"""Peak memory of a training run on a big CSV, as a multiple of the DataFrame it reads.

Generates a CSV of --rows rows x 40 columns (35 numeric, 4 categorical with 10,000 / 100 / 20 / 5
levels, a binary target), then runs the training entrypoint as a process of its own, with Ray
sized as a `compute: {cpu: "2", memory: 4Gi}` pod would size it (the operator's own sizing), and
samples /proc every 0.1 s for every process of its tree (the driver, Ray's GCS, raylet and agents,
the workers). It prints the peak of the summed RSS (pages of Ray's shared object store counted
once per process that maps them, so an over-count) and of the summed PSS (shared pages split
between the processes that map them: what a memory cgroup is charged for the tree, page cache
aside), as multiples of the DataFrame's in-memory size (`memory_usage(deep=True).sum()` of the
frame the trainer's own loader reads). A first run on 1,000 rows of the same columns measures
the fixed cost (Python, Ray, scikit-learn), so the part that grows with the data is shown too.

The search is small on purpose (one estimator, two configurations, 3 folds): the figure is about
memory. A watchdog kills the tree when its PSS passes --kill-at (default 6 GiB).

    .venv/bin/python hack/bench/training_memory.py                  # 1,000,000 rows
    .venv/bin/python hack/bench/training_memory.py --rows 100000    # a quicker look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from modelfactory_api import quantity

ROOT = Path(__file__).resolve().parents[2]
GIB = 1 << 30
NUMERIC = 35
CATEGORICAL_LEVELS = {"cat_10000": 10_000, "cat_100": 100, "cat_20": 20, "cat_5": 5}
TARGET = "y"
CHUNK_ROWS = 200_000


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """The CSV, written in chunks so the generator never holds all of it."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=NUMERIC)
    # Category effects, and Zipf-like level frequencies: a few common levels, a long tail.
    effects = {name: rng.normal(size=levels) for name, levels in CATEGORICAL_LEVELS.items()}
    probs = {}
    for name, levels in CATEGORICAL_LEVELS.items():
        p = 1.0 / np.arange(1, levels + 1)
        probs[name] = p / p.sum()
    writer: pacsv.CSVWriter | None = None
    try:
        for start in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - start)
            numeric = rng.normal(size=(n, NUMERIC))
            logit = numeric @ weights / np.sqrt(NUMERIC)
            columns: dict[str, Any] = {}
            for i in range(NUMERIC):
                values = numeric[:, i].copy()
                if i % 7 == 0:  # a few columns with 1 % missing values
                    values[rng.random(n) < 0.01] = np.nan
                columns[f"num_{i}"] = pa.array(values, from_pandas=True)
            for name, levels in CATEGORICAL_LEVELS.items():
                codes = rng.choice(levels, size=n, p=probs[name])
                logit += effects[name][codes]
                labels = np.char.add(f"{name[4:]}_", codes.astype(str)).astype(object)
                labels[rng.random(n) < 0.005] = None
                columns[name] = pa.array(labels, type=pa.string())
            columns[TARGET] = pa.array((logit + rng.logistic(size=n) > 0).astype(np.int64))
            table = pa.table(columns)
            if writer is None:
                writer = pacsv.CSVWriter(str(path), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def frame_size(csv: Path) -> tuple[int, tuple[int, int]]:
    """Bytes of the DataFrame the trainer's loader makes of the CSV, and its shape."""
    code = (
        "import json, sys\n"
        "from modelfactory_api.trainingjob import DatasetSpec\n"
        "from modelfactory_training.data import load_frame\n"
        "frame = load_frame(DatasetSpec(uri=sys.argv[1], target='y'))\n"
        "size = int(frame.memory_usage(index=True, deep=True).sum())\n"
        "print(json.dumps([size, list(frame.shape)]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(csv)], check=True, capture_output=True, text=True
    ).stdout
    size, shape = json.loads(out.strip().splitlines()[-1])
    return int(size), (int(shape[0]), int(shape[1]))


def config(csv: Path, store: Path, cpus: int, memory: str) -> dict[str, Any]:
    from modelfactory_api.trainingjob import ComputeSpec
    from modelfactory_operator.logic.trainingjob import ray_sizing

    compute = {"cpu": str(cpus), "memory": memory}
    spec = {
        "dataset": {"uri": str(csv), "target": TARGET},
        "model": {
            "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
            "params": {"max_iter": 30},
        },
        "tuning": {
            "algorithm": "grid",
            "cvFolds": 3,
            "searchSpace": {"learning_rate": {"values": [0.1, 0.3]}},
        },
        "compute": compute,
        "output": {"storageUri": f"file://{store}"},
    }
    sizing = ray_sizing(ComputeSpec.model_validate(compute))
    return {"spec": spec, "runId": f"bench-{time.time_ns()}", "ray": sizing.model_dump()}


def tree(pid: int) -> list[int]:
    """A process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def rss_pss(pid: int) -> tuple[int, int]:
    """Resident and proportional set size of one process, in bytes (0, 0 once it is gone)."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return rss, pss


@dataclass
class Measured:
    returncode: int
    seconds: float
    peak_rss: int
    peak_pss: int
    peak_driver_rss: int
    peak_processes: int
    killed: bool
    result: dict[str, Any]
    stderr_tail: str


def run_measured(cfg: dict[str, Any], work: Path, kill_at: int) -> Measured:
    cfg_path, report = work / "config.json", work / "result.json"
    cfg_path.write_text(json.dumps(cfg))
    report.unlink(missing_ok=True)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    cmd = [
        sys.executable,
        "-m",
        "modelfactory_training.main",
        "--config",
        str(cfg_path),
        "--report-file",
        str(report),
    ]
    started = time.monotonic()
    log = (work / "train.log").open("w")
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    peak_rss = peak_pss = peak_driver = peak_procs = 0
    killed = False
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_rss, peak_pss, peak_driver, peak_procs, killed
        while not done.is_set():
            pids = tree(proc.pid)
            sizes = [rss_pss(p) for p in pids]
            rss, pss = sum(s[0] for s in sizes), sum(s[1] for s in sizes)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            peak_driver = max(peak_driver, sizes[0][0])
            peak_procs = max(peak_procs, len(pids))
            if pss > kill_at and not killed:
                killed = True
                for p in pids:
                    with contextlib.suppress(OSError):
                        os.kill(p, signal.SIGKILL)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    returncode = proc.wait()
    done.set()
    sampler.join()
    log.close()
    seconds = time.monotonic() - started
    # Ray's processes leave with the driver; make sure none outlives the measurement.
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    result = json.loads(report.read_text()) if report.exists() else {}
    tail = (work / "train.log").read_text()[-3000:]
    return Measured(
        returncode, seconds, peak_rss, peak_pss, peak_driver, peak_procs, killed, result, tail
    )


def describe(name: str, m: Measured, frame_bytes: int | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run": name,
        "exit": m.returncode,
        "killed_by_watchdog": m.killed,
        "seconds": round(m.seconds, 1),
        "processes": m.peak_processes,
        "peak_rss_mib": round(m.peak_rss / 2**20),
        "peak_pss_mib": round(m.peak_pss / 2**20),
        "peak_driver_rss_mib": round(m.peak_driver_rss / 2**20),
        "succeeded": m.result.get("succeeded"),
        "reason": m.result.get("reason"),
        "progress": m.result.get("progress"),
        "metrics": m.result.get("metrics"),
    }
    if frame_bytes:
        row["rss_x_frame"] = round(m.peak_rss / frame_bytes, 2)
        row["pss_x_frame"] = round(m.peak_pss / frame_bytes, 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory", default="4Gi", help="compute.memory of the run")
    parser.add_argument("--work", type=Path, help="keep the CSV and artifacts here")
    parser.add_argument("--kill-at", type=float, default=6.0, help="GiB of PSS; kill the tree")
    parser.add_argument("--no-baseline", action="store_true", help="skip the 1,000-row run")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="mf-train-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    base: Measured | None = None
    if not args.no_baseline:
        small = work / "small.csv"
        generate(small, 1000, seed=1)
        base = run_measured(
            config(small, work / "models-small", args.cpus, args.memory), work, int(GIB * 64)
        )
        rows.append(describe("1,000 rows (fixed cost)", base, None))
        print(json.dumps(rows[-1]), flush=True)
    csv = work / f"data-{args.rows}.csv"
    if not csv.exists():
        t = time.monotonic()
        generate(csv, args.rows)
        print(
            f"generated {csv} ({csv.stat().st_size / 2**20:.0f} MiB) in "
            f"{time.monotonic() - t:.0f} s",
            flush=True,
        )
    size, shape = frame_size(csv)
    print(json.dumps({"frame_shape": shape, "frame_mib": round(size / 2**20, 1)}), flush=True)
    big = run_measured(
        config(csv, work / "models", args.cpus, args.memory), work, int(GIB * args.kill_at)
    )
    rows.append(describe(f"{args.rows:,} rows", big, size))
    if base is not None:
        # The part that grows with the data: above what the same run costs on 1,000 rows.
        rows[-1]["above_fixed_rss_x_frame"] = round((big.peak_rss - base.peak_rss) / size, 2)
        rows[-1]["above_fixed_pss_x_frame"] = round((big.peak_pss - base.peak_pss) / size, 2)
    print(json.dumps(rows[-1]), flush=True)
    if big.returncode != 0:
        print(big.stderr_tail, file=sys.stderr)
    limit = quantity.memory_bytes(args.memory)
    print(
        f"\nframe {size / 2**20:.0f} MiB ({shape[0]:,} x {shape[1]}); peak PSS of the tree "
        f"{big.peak_pss / 2**20:.0f} MiB = {big.peak_pss / size:.2f}x the frame, RSS "
        f"{big.peak_rss / 2**20:.0f} MiB = {big.peak_rss / size:.2f}x; "
        f"{'inside' if big.peak_pss <= limit else 'OVER'} {args.memory}; "
        f"exit {big.returncode}; {big.seconds:.0f} s"
    )


if __name__ == "__main__":
    main()
