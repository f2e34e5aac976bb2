"""Drift over all replicas of a ModelService: sum the windows the servers report, and turn the
verdict (evaluated by a server, where the drift maths live) into status.drift and the DataDrift
condition.

A server reports its own window (`GET /v2/models/{name}/drift`): rows seen, bin counts per
feature and for predictions, a sample of numeric values. Bin counts add up across replicas
because every replica of one version bins against the same reference profile; samples are
concatenated and thinned to what one server accepts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from modelfactory_api.drift_window import SAMPLE_LIMIT, DriftAnswer, DriftWindow
from modelfactory_operator.logic import conditions as cond

CONDITION = "DataDrift"


@dataclass
class DriftObservation:
    """What the operator learnt from the servers this time."""

    enabled: bool
    version: int | None = None
    report: dict[str, Any] | None = None
    samples: int = 0
    replicas: int = 0
    # Why there is no report: the servers are not up, drift is off in them, the artifact has no
    # profile, or they could not be asked.
    reason: str = ""
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def _add(total: list[int] | None, counts: list[int] | None) -> list[int] | None:
    if counts is None:
        return total
    if total is None:
        return list(counts)
    if len(total) != len(counts):
        raise ValueError("replicas bin the same feature differently")
    return [a + b for a, b in zip(total, counts, strict=True)]


def _thin(values: list[float], limit: int) -> list[float]:
    """Every k-th value, so each replica keeps its share of a sample that must shrink."""
    if len(values) <= limit:
        return values
    step = len(values) / limit
    return [values[int(i * step)] for i in range(limit)]


def serving(windows: list[DriftAnswer], version: str | None) -> list[DriftAnswer]:
    return [
        w
        for w in windows
        if w.get("enabled") and (version is None or str(w.get("model_version")) == version)
    ]


def merge_windows(windows: list[DriftAnswer], version: str | None) -> dict[str, Any] | None:
    """The sum of the windows of the replicas that serve `version` (others are mid-roll and
    compare against another profile); None when none does."""
    same = serving(windows, version)
    if not same:
        return None
    counts: dict[str, list[int] | None] = {}
    predictions: list[int] | None = None
    samples = 0
    sample: dict[str, list[float]] = {}
    for w in same:
        window: DriftWindow | dict[str, Any] = w.get("window") or {}
        samples += int(window.get("samples") or 0)
        for feature, c in (window.get("counts") or {}).items():
            counts[feature] = _add(counts.get(feature), c)
        predictions = _add(predictions, window.get("prediction_counts"))
        for feature, values in (window.get("sample") or {}).items():
            sample.setdefault(feature, []).extend(values)
    return {
        "samples": samples,
        "counts": counts,
        "prediction_counts": predictions,
        "sample": {f: _thin(v, SAMPLE_LIMIT) for f, v in sample.items()},
        "replicas": len(same),
    }


def status(observation: DriftObservation, now: str) -> dict[str, Any]:
    report = observation.report or {}
    prediction = report.get("prediction") or {}
    return {
        "modelVersion": observation.version,
        "drifted": report.get("drifted") if report.get("sufficient", True) and report else None,
        "score": report.get("share"),
        "driftedFeatures": list(report.get("driftedFeatures") or []),
        "predictionDrift": prediction.get("score"),
        "samples": observation.samples,
        "replicas": observation.replicas,
        "lastEvaluated": now,
    }


def condition(observation: DriftObservation, min_samples: int) -> tuple[str, str, str]:
    """(status, reason, message) of the DataDrift condition."""
    if not observation.enabled:
        return "Unknown", "DriftDisabled", "spec.monitoring.drift.enabled is false"
    report = observation.report
    if report is None:
        return "Unknown", observation.reason or "NotMeasured", observation.message
    samples = observation.samples
    where = f"over {observation.replicas} replica(s), model version {observation.version}"
    if not report.get("sufficient", True):
        return (
            "Unknown",
            "InsufficientSamples",
            f"{samples} row(s) of live traffic {where}; at least {min_samples} needed",
        )
    features = report.get("features") or []
    if report.get("drifted"):
        drifted = report.get("driftedFeatures") or []
        return (
            "True",
            "DriftDetected",
            f"{len(drifted)} of {len(features)} feature(s) drifted in {samples} row(s) {where}: "
            f"{', '.join(drifted)}",
        )
    drifted = report.get("driftedFeatures") or []
    detail = f" ({', '.join(drifted)} moved, below the dataset threshold)" if drifted else ""
    return "False", "NoDrift", f"no drift in {samples} row(s) {where}{detail}"


def apply(
    new: dict[str, Any], conds: cond.Rewrite, observation: DriftObservation | None, min_samples: int
) -> list[tuple[str, str, str]]:
    """Set status.drift and DataDrift; the events of a change in the verdict."""
    if observation is None:
        return []
    value, reason, message = condition(observation, min_samples)
    before = cond.get(conds.before, CONDITION) or {}
    conds.set(CONDITION, value, reason, message)
    if observation.report is not None:
        new["drift"] = status(observation, conds.now)
    elif not observation.enabled:
        new.pop("drift", None)
    events = []
    if before.get("reason") != reason and reason in ("DriftDetected", "NoDrift"):
        if reason == "DriftDetected":
            events.append(("Warning", reason, message))
        elif before.get("reason") == "DriftDetected":
            events.append(("Normal", reason, message))
    return events


# A window holds bin counts and a bounded sample per feature; this is far more than a sane one.
WINDOW_LIMIT_BYTES = 16 * 2**20


# Longest wait between two drift reads of a ModelService whose replicas do not answer.
MAX_LOOK_SECONDS = 300.0


def next_look(evaluate_seconds: float, misses: int) -> float:
    """Seconds to the next drift read: the servers' cadence, doubling per read in a row that no
    replica answered."""
    return float(
        min(evaluate_seconds * 2 ** min(misses, 16), max(MAX_LOOK_SECONDS, evaluate_seconds))
    )


def drift_path(model: str) -> str:
    return f"/v2/models/{model}/drift"


def evaluate_path(model: str) -> str:
    return f"/v2/models/{model}/drift/evaluate"


def parse(status: int, body: bytes) -> dict[str, Any] | None:
    """A server's JSON answer, or None when it is not one (not up yet, cut short, an old
    server without the endpoint)."""
    if status != 200 or len(body) >= WINDOW_LIMIT_BYTES:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def ready_pods(pods: list[dict[str, Any]]) -> list[str]:
    """Serving pods that are Ready and not going away: the replicas taking traffic."""
    out = []
    for p in pods:
        meta, st = p.get("metadata") or {}, p.get("status") or {}
        if meta.get("deletionTimestamp") or st.get("phase") != "Running":
            continue
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in st.get("conditions") or []
        ):
            out.append(str(meta["name"]))
    return sorted(out)


def observe(
    enabled: bool,
    version: int | None,
    ready_replicas: int,
    windows: list[dict[str, Any]],
    evaluate: Callable[[dict[str, Any]], dict[str, Any] | None] | None,
) -> DriftObservation:
    """The observation from the replicas' windows; `evaluate(window)` asks a server to evaluate
    a summed window (only needed with more than one replica)."""
    if not enabled:
        return DriftObservation(enabled=False, version=version)
    if ready_replicas == 0:
        return DriftObservation(True, version, reason="NotServing", message="no replica is ready")
    if not windows:
        return DriftObservation(
            True, version, reason="NotMeasured", message="no replica answered with its drift window"
        )
    off = [w for w in windows if not w.get("enabled")]
    if len(off) == len(windows):
        return DriftObservation(
            True,
            version,
            reason="NoProfile",
            message=str(off[0].get("reason") or "the servers do not measure drift"),
        )
    label = str(version) if version is not None else None
    # The servers' answers are JSON from the network in the shape of DriftAnswer: every field
    # is read defensively (.get) before use.
    answers = cast(list[DriftAnswer], windows)
    merged = merge_windows(answers, label)
    if merged is None:
        return DriftObservation(
            True,
            version,
            reason="NotMeasured",
            message=f"no replica reports drift for model version {version} yet",
        )
    same = serving(answers, label)
    if len(same) == 1 and same[0].get("report") is not None:
        report = same[0]["report"]
    else:
        window = {k: merged[k] for k in ("samples", "counts", "prediction_counts", "sample")}
        report = evaluate(window) if evaluate is not None else None
    if report is None:
        return DriftObservation(
            True, version, reason="NotMeasured", message="the drift evaluation failed"
        )
    return DriftObservation(
        True, version, report=report, samples=merged["samples"], replicas=merged["replicas"]
    )


def changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether the DataDrift verdict changed between two statuses."""
    old = cond.get(before.get("conditions") or [], CONDITION) or {}
    new = cond.get(after.get("conditions") or [], CONDITION) or {}
    return (old.get("status"), old.get("reason")) != (new.get("status"), new.get("reason"))
