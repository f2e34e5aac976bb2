"""The servers' rollout figures: Prometheus text from each server of both versions, summed
into one snapshot of cumulative counts, and the difference of two snapshots judged as an
interval.

Each version is measured by its own servers (requests by outcome, latency histograms, labelled
by track), so the two latencies are measured the same way; a request the stable servers routed
that got no answer at all (a crashed or hung canary) counts against the canary too. A shadow's
answers are compared with the stable answers by the stable servers.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modelfactory_api import metric_names as names

# Families read.
_OWN = (names.INFERENCE_REQUESTS, names.INFERENCE_DURATION)
_COMPARED = (names.SHADOW_ROWS, names.SHADOW_ABS_ERROR)
# Most bytes of one server's /metrics read (it has a few hundred series).
METRICS_LIMIT_BYTES = 4 * 2**20

Snapshot = dict[str, dict[str, Any]]


def empty() -> Snapshot:
    return {part: _part() for part in ("stable", "candidate", "shadow")}


def _part() -> dict[str, Any]:
    return {
        "requests": 0.0,
        "errors": 0.0,
        "buckets": {},
        "rows": 0.0,
        "agreeing": 0.0,
        "absError": 0.0,
    }


def parse(text: str, into: Snapshot | None = None) -> Snapshot:
    """Add one server's /metrics to a snapshot (a new one by default)."""
    snap = into if into is not None else empty()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if not (sample.name.endswith("_total") or sample.name.endswith("_bucket")):
                continue
            value = float(sample.value)
            if family.name in _OWN:
                track = labels.get("track", "stable")
                target = snap["candidate" if track == "candidate" else "stable"]
                if sample.name.endswith("_bucket"):
                    le = labels.get("le", "+Inf")
                    target["buckets"][le] = target["buckets"].get(le, 0.0) + value
                else:
                    target["requests"] += value
                    if labels.get("outcome") != "ok":
                        target["errors"] += value
            elif family.name == names.ROUTED_REQUESTS:
                if labels.get("outcome") == "no_answer":
                    snap["candidate"]["requests"] += value
                    snap["candidate"]["errors"] += value
            elif family.name in _COMPARED:
                target = snap["shadow"]
                if family.name == names.SHADOW_ABS_ERROR:
                    target["absError"] += value
                    target["compare"] = "values"
                elif labels.get("result") == "agreeing":
                    target["agreeing"] += value
                    target["compare"] = "labels"
                else:
                    target["rows"] += value
    return snap


def delta(now: Snapshot, then: Snapshot | None) -> Snapshot:
    """now - then per figure; a figure that went down (a server restarted) counts from zero."""
    out = empty()
    for part, figures in now.items():
        before = (then or {}).get(part) or _part()
        result = out.setdefault(part, _part())
        for key in ("requests", "errors", "rows", "agreeing", "absError"):
            a, b = float(figures.get(key, 0.0)), float(before.get(key, 0.0))
            result[key] = a - b if a >= b else a
        buckets = {}
        for le, count in (figures.get("buckets") or {}).items():
            b = float((before.get("buckets") or {}).get(le, 0.0))
            buckets[le] = count - b if count >= b else count
        result["buckets"] = buckets
        if "compare" in figures:
            result["compare"] = figures["compare"]
    return out


def quantile(buckets: dict[str, float], q: float) -> float | None:
    """The q-quantile (seconds) of a cumulative histogram, interpolated within its bucket as
    PromQL's histogram_quantile does; None without observations."""
    bounds = sorted(((math.inf if le == "+Inf" else float(le)), c) for le, c in buckets.items())
    if not bounds or bounds[-1][1] <= 0:
        return None
    total = bounds[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in bounds:
        if count >= rank:
            if math.isinf(upper):
                return lower  # past the last finite bucket: its bound is all that is known
            width = count - below
            return lower + (upper - lower) * ((rank - below) / width if width > 0 else 1.0)
        lower, below = upper, count
    return lower


def figures(part: dict[str, Any], percentile: int) -> dict[str, Any]:
    """An interval's figures of one side, for the status."""
    requests = float(part.get("requests", 0.0))
    latency = quantile(part.get("buckets") or {}, percentile / 100)
    out: dict[str, Any] = {
        "requests": int(requests),
        "errorRate": round(part.get("errors", 0.0) / requests, 6) if requests else None,
        f"p{percentile}Ms": round(latency * 1000, 3) if latency is not None else None,
    }
    return out


def comparison(part: dict[str, Any]) -> dict[str, Any]:
    """How a shadow's answers compared with the stable ones over an interval."""
    out: dict[str, Any] = {}
    rows = float(part.get("rows", 0.0))
    if rows:
        out["comparedRows"] = int(rows)
        if part.get("compare") == "labels":
            out["agreement"] = round(part.get("agreeing", 0.0) / rows, 6)
        else:
            out["meanAbsoluteError"] = round(part.get("absError", 0.0) / rows, 6)
    return out
