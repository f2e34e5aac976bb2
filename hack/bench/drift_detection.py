#!/usr/bin/env python
"""How fast the server's drift check notices a shift, how often it cries wolf, and what it costs.

    .venv/bin/python hack/bench/drift_detection.py            # ~3.5 min on 2 cores
    .venv/bin/python hack/bench/drift_detection.py --quick    # fewer seeds, a smoke test

In process, no server: a reference profile (`build_profile`) of 20,000 training rows with 8
numeric features N(0, 1), 2 categorical ones (5 and 12 categories), a binary target and the
predictions of a fixed rule; then live rows from the same distribution are streamed in batches of
32 into a `LiveWindow` (default window, 10,000 rows in 10 segments) and the window is evaluated
with the default `Thresholds()` every time 1,000 or more new rows have come in, exactly as
`DriftMonitor` does (so every 32 batches = 1,024 rows).

(a) Detection delay: 12,000-12,992 unshifted rows fill the window (the phase against the
    evaluation clock varies with the seed), then the mean of x0 moves by 0.5 or 1 sd ("one
    feature"), or the means of x0-x4 move ("half": 5 of the 10 features, the share at which the
    default drift_share 0.5 calls the dataset drifted). Rows of shifted data until x0 is flagged,
    until every shifted feature is, and until the dataset verdict; median and p90 over the seeds.
    With one feature shifted the dataset verdict never comes with the default drift_share (one
    feature is 1/10 = 0.1 of the features); with drift_share <= 0.1 it comes exactly when the
    feature is flagged.
(b) False alarms: unshifted streams of 100,000 rows from an empty window (server start
    included); evaluations with any feature flagged and with the dataset drifted, and alarm
    episodes (a flagged evaluation after an unflagged one), per 100,000 rows.
(c) CPU: `LiveWindow.add` per 32-row batch (and per row), one evaluation; and, for the shape of
    the serving benchmark's artifacts (20 numeric features, float64 matrix, predictions), `add`
    per batch of 1-64 rows, since a server under load bins many small batches.

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from modelfactory_artifacts.drift import Thresholds
from modelfactory_artifacts.profile import ReferenceProfile, build_profile
from modelfactory_artifacts.window import LiveWindow

BATCH = 32
EVALUATE_EVERY = 1_000  # DriftConfig.evaluate_every
NUMERIC = [f"x{i}" for i in range(8)]
CATEGORIES = {
    "c0": (list("abcde"), [0.4, 0.25, 0.15, 0.12, 0.08]),
    "c1": (
        [f"k{i}" for i in range(12)],
        list(np.array([1 / (i + 1) for i in range(12)]) / sum(1 / (i + 1) for i in range(12))),
    ),
}
FEATURES = [*NUMERIC, *CATEGORIES]
CAP = 40_000  # shifted rows after which a run counts as "not detected"


def draw(
    rng: np.random.Generator, n: int, shift: dict[str, float] | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """n rows (columns by name) and the predictions of the fixed rule."""
    x = rng.standard_normal((n, len(NUMERIC)))
    columns: dict[str, np.ndarray] = {name: x[:, i] for i, name in enumerate(NUMERIC)}
    for name, shift_by in (shift or {}).items():
        columns[name] = columns[name] + shift_by
    for name, (labels, p) in CATEGORIES.items():
        columns[name] = np.asarray(labels)[rng.choice(len(labels), size=n, p=p)]
    score = columns["x0"] + columns["x1"] - 0.5 * columns["x2"] + (columns["c0"] == "a")
    return columns, (score > 0.5).astype("int64")


def reference(seed: int = 12345) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    columns, predictions = draw(rng, 20_000)
    flip = rng.random(20_000) < 0.1
    target = np.where(flip, 1 - predictions, predictions)
    frame = pd.DataFrame(columns)
    kinds = {n: "numeric" for n in NUMERIC} | {n: "categorical" for n in CATEGORIES}
    return build_profile(
        frame, kinds, target=pd.Series(target), target_kind="categorical", predictions=predictions
    )


class Stream:
    """A window fed as DriftMonitor feeds it: add every batch, evaluate every >= 1,000 rows."""

    def __init__(self, profile: ReferenceProfile, thresholds: Thresholds) -> None:
        self.window = LiveWindow(profile)
        self.thresholds = thresholds
        self.new_rows = 0
        self.add_seconds: list[float] = []
        self.evaluate_seconds: list[float] = []

    def feed(self, columns: dict[str, np.ndarray], predictions: np.ndarray, timed: bool = False):
        """One batch; the report when an evaluation was due, else None."""
        rows = len(predictions)
        if timed:
            t0 = time.perf_counter()
            self.window.add(columns, predictions, rows)
            self.add_seconds.append(time.perf_counter() - t0)
        else:
            self.window.add(columns, predictions, rows)
        self.new_rows += rows
        if self.new_rows < EVALUATE_EVERY:
            return None
        self.new_rows = 0
        t0 = time.perf_counter()
        report = self.window.evaluate(self.thresholds)
        if timed:
            self.evaluate_seconds.append(time.perf_counter() - t0)
        return report


@dataclass
class Delays:
    first: float = float("inf")  # x0 flagged
    all_shifted: float = float("inf")  # every shifted feature flagged
    dataset: float = float("inf")  # dataset verdict


def run_shift(
    stream: Stream, rng: np.random.Generator, shifted: list[str], by: float, need_dataset: bool
) -> Delays:
    d = Delays()
    rows = 0
    shift = {name: by for name in shifted}
    while rows < CAP:
        columns, predictions = draw(rng, BATCH, shift)
        rows += BATCH
        report = stream.feed(columns, predictions)
        if report is None or not report.sufficient:
            continue
        flagged = set(report.drifted_features)
        if "x0" in flagged and d.first == float("inf"):
            d.first = rows
        if set(shifted) <= flagged and d.all_shifted == float("inf"):
            d.all_shifted = rows
        if report.drifted and d.dataset == float("inf"):
            d.dataset = rows
        if d.all_shifted < float("inf") and (d.dataset < float("inf") or not need_dataset):
            break
    return d


def pct(values: list[float], q: float) -> float:
    finite = sorted(values)
    k = (len(finite) - 1) * q
    lo, hi = int(np.floor(k)), int(np.ceil(k))
    return finite[lo] + (finite[hi] - finite[lo]) * (k - lo)


def fmt_rows(values: list[float]) -> str:
    missed = sum(v == float("inf") for v in values)
    if missed > len(values) / 2:
        return f"not within {CAP:,} ({missed}/{len(values)} missed)"
    med, p90 = pct(values, 0.5), pct(values, 0.9)
    p90s = f"{p90:,.0f}" if p90 != float("inf") else f"> {CAP:,}"
    out = f"{med:,.0f} / {p90s}"
    return out + (f" ({missed} missed)" if missed else "")


def detection(profile: ReferenceProfile, seeds: int) -> list[str]:
    scenarios = [("one", ["x0"]), ("half", NUMERIC[:5])]
    shifts = [0.5, 1.0]
    found: dict[tuple[str, float], list[Delays]] = {
        (s, b): [] for s, _ in scenarios for b in shifts
    }
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        base = Stream(profile, Thresholds())
        prefill = 12_000 + int(rng.integers(0, 32)) * BATCH
        for _ in range(prefill // BATCH):
            base.feed(*draw(rng, BATCH))
        for name, shifted in scenarios:
            for by in shifts:
                stream = copy.deepcopy(base, memo={id(profile): profile})
                run_rng = np.random.default_rng([seed, len(shifted), int(by * 10)])
                found[(name, by)].append(run_shift(stream, run_rng, shifted, by, name == "half"))
    lines = [
        f"Detection delay: rows of shifted data until flagged, median / p90 over {seeds} seeds "
        f"(batches of {BATCH}, evaluated every {EVALUATE_EVERY:,}+ rows = 1,024; default Thresholds)",
        "",
        "| shift | features shifted | x0 flagged | all shifted features flagged | dataset drifted (drift_share 0.5) |",
        "|---|---|---:|---:|---:|",
    ]
    for name, _shifted in scenarios:
        for by in shifts:
            ds = found[(name, by)]
            dataset = (
                "never: 1 of 10 features = share 0.1"
                if name == "one"
                else fmt_rows([d.dataset for d in ds])
            )
            label = "x0 only (1 of 10)" if name == "one" else "x0-x4 (5 of 10)"
            lines.append(
                f"| +{by} sd | {label} | {fmt_rows([d.first for d in ds])} | "
                f"{fmt_rows([d.all_shifted for d in ds])} | {dataset} |"
            )
    return lines


def false_alarms(profile: ReferenceProfile, streams: int, rows: int) -> tuple[list[str], Stream]:
    evaluations = any_flag = dataset = episodes = dataset_episodes = 0
    by_feature: dict[str, int] = {}
    timing = Stream(profile, Thresholds())
    for seed in range(streams):
        rng = np.random.default_rng(5000 + seed)
        stream = Stream(profile, Thresholds())
        was = was_dataset = False
        for _ in range(rows // BATCH):
            report = stream.feed(*draw(rng, BATCH), timed=True)
            if report is None or not report.sufficient:
                continue
            evaluations += 1
            flagged = bool(report.drifted_features)
            any_flag += flagged
            dataset += report.drifted
            episodes += flagged and not was
            dataset_episodes += report.drifted and not was_dataset
            was, was_dataset = flagged, report.drifted
            for f in report.drifted_features:
                by_feature[f] = by_feature.get(f, 0) + 1
        timing.add_seconds += stream.add_seconds
        timing.evaluate_seconds += stream.evaluate_seconds
    per = 100_000 / (streams * rows)
    flagged_by = ", ".join(f"{k} {v}" for k, v in sorted(by_feature.items())) or "none"
    lines = [
        f"False alarms: {streams} unshifted streams x {rows:,} rows from an empty window "
        f"({evaluations:,} evaluations with >= 500 rows), per 100,000 rows",
        "",
        "| | evaluations flagged per 100k rows | alarm episodes per 100k rows | share of evaluations |",
        "|---|---:|---:|---:|",
        f"| any feature flagged | {any_flag * per:.2f} | {episodes * per:.2f} | {any_flag / max(evaluations, 1):.2%} |",
        f"| dataset drifted (drift_share 0.5) | {dataset * per:.2f} | {dataset_episodes * per:.2f} | {dataset / max(evaluations, 1):.2%} |",
        "",
        f"Flagged evaluations by feature: {flagged_by}.",
    ]
    return lines, timing


def us(seconds: list[float], q: float) -> float:
    return pct(seconds, q) * 1e6


def cost(timing: Stream, quick: bool) -> list[str]:
    lines = [
        "CPU cost (one thread, perf_counter around the call; median / p90)",
        "",
        "| what | median | p90 |",
        "|---|---:|---:|",
        f"| LiveWindow.add, 32-row batch, 8 numeric + 2 categorical + predictions ({len(timing.add_seconds):,} batches) | "
        f"{us(timing.add_seconds, 0.5):,.0f} µs ({us(timing.add_seconds, 0.5) / BATCH:.1f} µs/row) | "
        f"{us(timing.add_seconds, 0.9):,.0f} µs |",
        f"| one evaluation of a full window (PSI/JS on 10 features, KS on 8 samples of ~1,100; {len(timing.evaluate_seconds):,} evaluations) | "
        f"{us(timing.evaluate_seconds, 0.5) / 1e3:,.2f} ms | {us(timing.evaluate_seconds, 0.9) / 1e3:,.2f} ms |",
    ]
    # The serving benchmark's artifacts: 20 numeric features, a float matrix, class predictions.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((20_000, 20))
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)])
    predictions = (x[:, 0] > 0).astype("int64")
    profile = build_profile(
        frame,
        {c: "numeric" for c in frame.columns},
        target=pd.Series(predictions),
        target_kind="categorical",
        predictions=predictions,
    )
    window = LiveWindow(profile)
    names = list(enumerate(frame.columns))
    for rows in (1, 8, 32, 64):
        batch = rng.standard_normal((rows, 20))
        preds = (batch[:, 0] > 0).astype("int64")
        times = []
        for _ in range(300 if quick else 1500):
            columns = {name: batch[:, i] for i, name in names}  # as DriftMonitor.add slices it
            t0 = time.perf_counter()
            window.add(columns, preds, rows)
            times.append(time.perf_counter() - t0)
        lines.append(
            f"| LiveWindow.add, {rows}-row batch, 20 numeric features + predictions (bench artifact shape) | "
            f"{us(times, 0.5):,.0f} µs ({us(times, 0.5) / rows:.1f} µs/row) | {us(times, 0.9):,.0f} µs |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="3 seeds, 2 streams of 20,000 rows")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.streams, args.rows = 3, 2, 20_000
    started = time.time()
    load = os.getloadavg()
    profile = reference()
    out = detection(profile, args.seeds)
    fa, timing = false_alarms(profile, args.streams, args.rows)
    out += ["", *fa, "", *cost(timing, args.quick)]
    end_load = os.getloadavg()
    out += [
        "",
        f"Wall time {time.time() - started:.0f} s; load average at start "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, at end "
        f"{end_load[0]:.2f} {end_load[1]:.2f} {end_load[2]:.2f} ({os.cpu_count()} CPUs).",
    ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
