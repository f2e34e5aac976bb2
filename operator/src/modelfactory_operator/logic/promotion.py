"""The promotion gate: which version of a TrainingJob its ModelServices serve.

A run scores its new version and the promoted one on the same fresh held-out split (the trainer
does this; see TrainingResult.score and .baseline). The gate promotes the new version when it
beats the promoted one by spec.promotion.minImprovement, and rejects it otherwise. A person can
promote any good version (a rollback included) with an annotation; the status says who decided.
"""

from __future__ import annotations

from typing import Any

from modelfactory_api.trainingjob import PromotionSpec, TrainingResult

PROMOTE_ANNOTATION = "modelfactory.dev/promote"
BY_GATE = "gate"
BY_ANNOTATION = f"annotation {PROMOTE_ANNOTATION}"


def judge(result: TrainingResult, spec: PromotionSpec) -> tuple[str, str]:
    """(phase, message) for a new version: Promoted, Rejected or Candidate."""
    metric = spec.metric or result.metric or "score"
    baseline = result.baseline
    if baseline is None:
        if not spec.auto:
            return "Candidate", "no version is promoted yet; waiting for a person to promote"
        return "Promoted", "the first version: nothing promoted to compare with"
    if baseline.score is None or result.score is None:
        why = baseline.message or "the new version could not be scored"
        return (
            "Rejected",
            f"version {baseline.version} (promoted) could not be scored on the new data: {why}",
        )
    # Scores are sklearn scorers' values: higher is better (losses come negated).
    gain = result.score - baseline.score
    scores = (
        f"{metric} {result.score:.6g} against {baseline.score:.6g} of version "
        f"{baseline.version} on the same held-out data"
    )
    if gain >= spec.minImprovement:
        if not spec.auto:
            return "Candidate", f"passes the gate ({scores}); waiting for a person to promote"
        return "Promoted", f"better by {gain:.6g} (at least {spec.minImprovement}): {scores}"
    return (
        "Rejected",
        f"not better by at least {spec.minImprovement} (gain {gain:.6g}): {scores}",
    )


def promoted(history: list[dict[str, Any]], model: dict[str, Any] | None) -> int | None:
    """The promoted version: the one marked so, else (a status from before the gate existed)
    the one status.model names."""
    for entry in history:
        if entry.get("phase") == "Promoted":
            return int(entry["version"])
    return int(model["version"]) if model and model.get("version") else None


def promote(status: dict[str, Any], version: int, decided_by: str, message: str, now: str) -> None:
    """Make `version` the promoted one in `status` (history phases, model, promotedVersion)."""
    history = [dict(e) for e in status.get("history") or []]
    for entry in history:
        if entry.get("version") == version:
            entry.update(phase="Promoted", decidedBy=decided_by, message=message)
            status["model"] = {k: entry[k] for k in ("version", "uri", "digest")}
        elif entry.get("phase") == "Promoted" or (
            entry.get("phase") is None and entry.get("version") == status.get("promotedVersion")
        ):
            entry["phase"] = "Retired"
    status["history"] = history
    status["promotedVersion"] = version
    status["promotion"] = {
        **(status.get("promotion") or {}),
        "version": version,
        "decidedBy": decided_by,
        "time": now,
    }


def manual(status: dict[str, Any], annotation: str | None, now: str) -> list[tuple[str, str, str]]:
    """Act on the promote annotation once per value; the events it makes."""
    if annotation is None or (status.get("promotion") or {}).get("annotation") == annotation:
        return []
    status["promotion"] = {**(status.get("promotion") or {}), "annotation": annotation}
    try:
        version = int(annotation.strip().lstrip("v"))
    except ValueError:
        return [
            (
                "Warning",
                "PromoteFailed",
                f"{PROMOTE_ANNOTATION}: {annotation!r} is not a version number",
            )
        ]
    known = [e.get("version") for e in status.get("history") or []]
    if version not in known:
        return [
            (
                "Warning",
                "PromoteFailed",
                f"{PROMOTE_ANNOTATION}: version {version} is not in the history (known: {known})",
            )
        ]
    if status.get("promotedVersion") == version:
        return []
    message = f"promoted by a person ({PROMOTE_ANNOTATION}={annotation})"
    promote(status, version, BY_ANNOTATION, message, now)
    return [("Normal", "Promoted", f"version {version} {message}")]
