#!/usr/bin/env python3
"""Training runtime benchmark: the entrypoint against GridSearchCV(n_jobs=-1) on one machine.

Runs the same 24 RandomForest configurations x 5-fold CV on make_classification(20000, 20):
once through `modelfactory-train` (a fresh process: imports, local Ray start, Tune search, refit,
held-out scoring, artifact write) and once as GridSearchCV(n_jobs=-1).fit on the identical
training split. Also measures Ray's start-up on its own, the peak memory of each process tree and
the entrypoint with 1 and with 2 CPUs. Prints figures; asserts nothing but the equal best score.

    .venv/bin/python hack/bench/training_bench.py            # full run
    .venv/bin/python hack/bench/training_bench.py --quick    # 4 configs, 3 folds, 4000 rows
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
ENTRYPOINT = str(Path(PYTHON).with_name("modelfactory-train"))

GRID: dict[str, list[Any]] = {
    "n_estimators": [25, 50],
    "max_depth": [8, 16, None],
    "max_features": ["sqrt", 0.5],
    "min_samples_leaf": [1, 4],
}
QUICK_GRID: dict[str, list[Any]] = {"n_estimators": [10, 20], "max_depth": [4, None]}


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid = int(fields[1])
            with open(f"/proc/{entry}/statm") as fh:
                rss[int(entry)] = int(fh.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total


def run_measured(
    cmd: list[str], env: dict[str, str]
) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """Wall time and peak process-tree RSS of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    completed = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-4000:]}")
    return wall, peak, completed


BASELINE = textwrap.dedent(
    """
    import json, sys, time
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV
    from modelfactory_api.trainingjob import DatasetSpec
    from modelfactory_training.prepare import prepare

    data, grid = sys.argv[1], json.loads(sys.argv[2])
    folds, n_jobs = int(sys.argv[3]), int(sys.argv[4])
    frame = pd.read_parquet(data)
    # The entrypoint's own split, so both searches see exactly the same rows.
    prepared = prepare(frame, DatasetSpec(uri="/" + data, target="y", seed=0),
                       is_classifier=True, preprocessing=False, cv_folds=folds)
    search = GridSearchCV(RandomForestClassifier(random_state=0), grid, cv=folds,
                          scoring="accuracy", n_jobs=n_jobs, refit=True)
    start = time.perf_counter()
    search.fit(prepared.X_train, prepared.y_train)
    fit = time.perf_counter() - start
    test = search.score(prepared.X_test, prepared.y_test)
    print(json.dumps({"fit_seconds": fit, "best_score": search.best_score_,
                      "best_params": search.best_params_, "test_accuracy": test}))
    """
)

RAY_START = textwrap.dedent(
    """
    import json, logging, time
    start = time.perf_counter()
    import ray
    imported = time.perf_counter()
    ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    ready = time.perf_counter()
    ray.get(ray.remote(lambda: 1).remote())
    first = time.perf_counter()
    ray.shutdown()
    done = time.perf_counter()
    print(json.dumps({"import": imported - start, "init": ready - imported,
                      "first_task": first - ready, "shutdown": done - first}))
    """
)


def entrypoint_config(data: Path, store: Path, grid: dict[str, list[Any]], folds: int) -> str:
    return json.dumps(
        {
            "runId": f"bench-{time.time_ns()}",
            "spec": {
                "dataset": {"uri": str(data), "target": "y", "seed": 0},
                "model": {
                    "estimator": "sklearn.ensemble.RandomForestClassifier",
                    "params": {"random_state": 0},
                    "preprocessing": False,
                },
                "tuning": {
                    "algorithm": "grid",
                    "cvFolds": folds,
                    "metric": "accuracy",
                    "searchSpace": {k: {"values": v} for k, v in grid.items()},
                },
                "output": {"storageUri": str(store)},
            },
        }
    )


def run_entrypoint(
    data: Path, work: Path, grid: dict[str, list[Any]], folds: int, cpus: int | None
) -> dict[str, Any]:
    store = Path(tempfile.mkdtemp(dir=work, prefix="store-"))
    report = store / "result.json"
    env = {**os.environ, "MF_TRAINING_CONFIG": entrypoint_config(data, store, grid, folds)}
    env.pop("RAY_ADDRESS", None)
    cmd = [ENTRYPOINT, "--report-file", str(report)]
    if cpus is not None:
        env["RAY_OVERRIDE_RESOURCES"] = json.dumps({"CPU": cpus})
        cmd = ["taskset", "-c", ",".join(str(c) for c in range(cpus)), *cmd]
    wall, peak, proc = run_measured(cmd, env)
    result = json.loads(report.read_text())
    phases = {}
    for line in proc.stderr.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            phases.setdefault(entry["message"], entry["time"])
    return {"wall": wall, "peak_rss": peak, "result": result, "phases": phases}


def run_baseline(
    data: Path, grid: dict[str, list[Any]], folds: int, n_jobs: int, cpus: int | None
) -> dict[str, Any]:
    cmd = [PYTHON, "-c", BASELINE, str(data), json.dumps(grid), str(folds), str(n_jobs)]
    if cpus is not None:
        cmd = ["taskset", "-c", ",".join(str(c) for c in range(cpus)), *cmd]
    wall, peak, proc = run_measured(cmd, dict(os.environ))
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**figures, "process_wall": wall, "peak_rss": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved comparison runs")
    parser.add_argument("--skip-scaling", action="store_true", help="skip the 1-CPU runs")
    parser.add_argument(
        "--scaling-rows", type=int, default=5000, help="rows for the 1 vs 2 CPU runs"
    )
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    rows, grid, folds = (4000, QUICK_GRID, 3) if args.quick else (20000, GRID, 5)
    configs = int(np.prod([len(v) for v in grid.values()]))
    with tempfile.TemporaryDirectory(prefix="mf-bench-") as tmp:
        work = Path(tmp)

        def dataset(n: int) -> Path:
            X, y = make_classification(n_samples=n, n_features=20, random_state=0)
            frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).assign(y=y)
            path = work / f"train-{n}.parquet"
            frame.to_parquet(path)
            return path

        data = dataset(rows)
        print(
            f"data: make_classification({rows}, 20); {configs} configs x {folds}-fold CV; "
            f"cpus={os.cpu_count()}; load={os.getloadavg()[0]:.2f}"
        )

        ray_start = json.loads(
            run_measured([PYTHON, "-c", RAY_START], dict(os.environ))[2].stdout.splitlines()[-1]
        )
        print("ray start-up (s): " + ", ".join(f"{k} {v:.2f}" for k, v in ray_start.items()))

        same = True
        ratios = []
        for attempt in range(1, args.repeat + 1):
            load = os.getloadavg()[0]
            base = run_baseline(data, grid, folds, n_jobs=-1, cpus=None)
            entry = run_entrypoint(data, work, grid, folds, cpus=None)
            best = entry["result"]["metrics"]["cv_mean"]
            ratio = entry["wall"] / base["fit_seconds"]
            ratios.append(ratio)
            same = same and abs(best - base["best_score"]) < 1e-9
            print(f"run {attempt} (load before {load:.2f}):")
            print(
                f"  GridSearchCV(n_jobs=-1).fit: {base['fit_seconds']:.1f} s "
                f"(whole process {base['process_wall']:.1f} s), "
                f"best cv {base['best_score']:.6f} {base['best_params']}, "
                f"peak RSS {base['peak_rss'] / 2**20:.0f} MiB"
            )
            print(
                f"  modelfactory-train (whole process): {entry['wall']:.1f} s, "
                f"best cv {best:.6f} {entry['result']['bestParams']}, "
                f"peak RSS {entry['peak_rss'] / 2**20:.0f} MiB"
            )
            print(f"  phases (first log line): {entry['phases']}")
            print(f"  ratio entrypoint / GridSearchCV.fit: {ratio:.3f}")
        print(f"ratios: {', '.join(f'{r:.3f}' for r in ratios)}; same best score: {same}")

        if not args.skip_scaling:
            small = dataset(args.scaling_rows)
            walls = {}
            for cpus in (1, 2):
                one = run_entrypoint(small, work, grid, folds, cpus=cpus)
                base_one = run_baseline(small, grid, folds, n_jobs=cpus, cpus=cpus)
                walls[cpus] = (one["wall"], base_one["fit_seconds"])
                print(
                    f"{cpus} CPU(s), {args.scaling_rows} rows: modelfactory-train "
                    f"{one['wall']:.1f} s, GridSearchCV(n_jobs={cpus}).fit "
                    f"{base_one['fit_seconds']:.1f} s"
                )
            print(
                f"speed-up 1 -> 2 CPUs: modelfactory-train {walls[1][0] / walls[2][0]:.2f}x, "
                f"GridSearchCV {walls[1][1] / walls[2][1]:.2f}x"
            )
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
