#!/usr/bin/env python3
"""The drift thread's own CPU under a steady stream of predicted rows, read per thread from
/proc: the server's DriftMonitor with today's defaults (1,000 binned rows a second, evaluations
within 0.5 % of the thread's time) on 20 numeric features and a binary prediction, fed the way
the batcher feeds it (one `offer` per predicted batch) at --rows-per-second for --seconds, in this
process, without HTTP. Prints the drift thread's CPU seconds and its share of a core.

    .venv/bin/python hack/bench/drift_thread_cpu.py                       # 9,000 rows/s, 15 s
    .venv/bin/python hack/bench/drift_thread_cpu.py --batch-rows 1 --seconds 5

Not a test: it prints a figure and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from modelfactory_artifacts.profile import build_profile
from modelfactory_serving.drift_monitor import DriftConfig, DriftMonitor
from modelfactory_serving.model import Feature

FEATURES = 20
TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(native_id: int) -> float:
    """User + system CPU of one thread of this process, from /proc."""
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows-per-second", type=int, default=9_000)
    parser.add_argument("--batch-rows", type=int, default=16, help="rows per predicted batch")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(FEATURES)]
    features = tuple(
        Feature(n, i, "numeric", "float64", "float", "FP64") for i, n in enumerate(names)
    )
    train = pd.DataFrame(rng.normal(size=(20_000, FEATURES)), columns=names)
    profile = build_profile(
        train,
        {n: "numeric" for n in names},
        target=pd.Series(rng.integers(0, 2, 20_000)),
        target_kind="categorical",
        predictions=rng.integers(0, 2, 20_000),
    )
    monitor = DriftMonitor(
        profile, features, DriftConfig(), "bench", "1", None, concat=np.concatenate
    )
    monitor.start()
    assert monitor._thread is not None and monitor._thread.native_id is not None
    drift_id = monitor._thread.native_id
    stream = rng.normal(size=(100_000, FEATURES))
    labels = rng.integers(0, 2, 100_000)

    interval = args.batch_rows / args.rows_per_second
    before = thread_cpu_seconds(drift_id)
    started = time.monotonic()
    offered = i = 0
    while (now := time.monotonic()) - started < args.seconds:
        due = int((now - started) / interval)
        while offered < due:
            rows = slice(i, i + args.batch_rows)
            monitor.offer(stream[rows], labels[rows], args.batch_rows)
            i = (i + args.batch_rows) % (len(stream) - args.batch_rows)
            offered += 1
        time.sleep(interval / 2)
    elapsed = time.monotonic() - started
    drift_cpu = thread_cpu_seconds(drift_id) - before
    monitor.stop()
    print(
        json.dumps(
            {
                "rows_per_second": round(offered * args.batch_rows / elapsed),
                "batch_rows": args.batch_rows,
                "seconds": round(elapsed, 1),
                "drift_thread_cpu_s": round(drift_cpu, 3),
                "drift_thread_share_of_core": round(drift_cpu / elapsed, 4),
                "rows_skipped_by_the_rate_cap": monitor.skipped,
                "rows_dropped": monitor.dropped,
                "loadavg": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
