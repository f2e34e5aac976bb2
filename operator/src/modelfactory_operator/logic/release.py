"""Applying a resource's Helm release: when to try again after a failure, and how the outcome
shows in the status.

A release that cannot be applied (a full service IP range, a quota, a webhook saying no) must not
be re-applied on every watch event of its children: it waits out an exponential backoff, and its
failure is a condition plus one Event per distinct error, not one per try.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from modelfactory_operator.logic import conditions as cond
from modelfactory_operator.logic.plans import Decision

CONDITION = "ReleaseApplied"
# Parts of an error that change from try to try without changing what went wrong.
VOLATILE = re.compile(r"\d+(\.\d+)*|[0-9a-f]{8,}")
# Helm words the same failure differently on install and on upgrade.
HELM_WRAPPERS = re.compile(
    r"(helm \w+ failed|Error|UPGRADE FAILED|INSTALLATION FAILED|failed to (create|update) "
    r"resource|\d+ errors? occurred)\s*:|\*|\s+"
)


@dataclass(frozen=True)
class ApplyFailure:
    """The last failed apply of one resource's release."""

    plan_hash: str
    attempts: int
    error: str
    retry_at: float  # monotonic seconds

    @property
    def signature(self) -> str:
        return error_signature(self.error)


def error_signature(error: str) -> str:
    """What makes two errors the same error, for deciding whether it deserves a new Event."""
    return VOLATILE.sub("#", HELM_WRAPPERS.sub(" ", error)).strip()


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Exponential, capped: base, 2·base, 4·base, ... up to cap."""
    return float(min(cap, base * 2 ** min(max(attempts - 1, 0), 30)))


def may_apply(failure: ApplyFailure | None, plan_hash: str, now: float) -> bool:
    """A new plan is tried at once; the plan that failed waits for its backoff to pass."""
    return failure is None or failure.plan_hash != plan_hash or now >= failure.retry_at


def record_failure(
    previous: ApplyFailure | None,
    plan_hash: str,
    error: str,
    now: float,
    base: float,
    cap: float,
) -> ApplyFailure:
    attempts = previous.attempts + 1 if previous and previous.plan_hash == plan_hash else 1
    return ApplyFailure(plan_hash, attempts, error, now + retry_delay(attempts, base, cap))


def with_failure(
    decision: Decision,
    failure: ApplyFailure,
    previous: ApplyFailure | None,
    now: float,
    generation: int | None,
    timestamp: str,
) -> Decision:
    """The decision's status with the failure in the ReleaseApplied condition; a Warning Event
    only when the error is not the one already reported."""
    wait = max(failure.retry_at - now, 0.0)
    message = (
        f"applying the Helm release failed (attempt {failure.attempts}, next try in "
        f"{wait:.0f}s): {failure.error}"
    )
    status = _set(decision.status, False, "ApplyFailed", message, generation, timestamp)
    events = list(decision.events)
    if previous is None or previous.signature != failure.signature:
        events.append(("Warning", "ApplyFailed", message))
    return Decision(status=status, launch=False, events=events)


def with_success(
    decision: Decision, revision: int | None, generation: int | None, timestamp: str
) -> Decision:
    before = cond.get(decision.status.get("conditions") or [], CONDITION)
    detail = f"revision {revision}" if revision is not None else "applied"
    status = _set(decision.status, True, "Applied", detail, generation, timestamp)
    events = list(decision.events)
    if before is not None and before.get("status") == "False":
        events.append(("Normal", "Applied", f"the Helm release is applied ({detail})"))
    return Decision(status=status, launch=False, events=events)


def removal_gives_up(retry: int, limit: int) -> bool:
    """Whether a deleted resource lets go after this failed try to remove its release: its
    children carry owner references, so the garbage collector removes them without Helm."""
    return retry + 1 >= limit


def removal_delay(retry: int) -> float:
    return float(min(2 ** min(retry, 5), 30))


def _set(
    status: dict[str, Any],
    value: bool,
    reason: str,
    message: str,
    generation: int | None,
    timestamp: str,
) -> dict[str, Any]:
    conditions = cond.set_condition(
        status.get("conditions") or [], CONDITION, value, reason, message, generation, timestamp
    )
    return {**status, "conditions": conditions}


# What of a chart's files goes into the objects Helm renders (README, CI values and the like
# do not).
CHART_INPUT_DIRS = ("templates/", "charts/", "crds/")
CHART_INPUT_FILES = ("Chart.yaml", "Chart.lock", "values.yaml", "values.schema.json")


def chart_input(path: str) -> bool:
    """Whether a file (its path inside the chart) changes what the chart renders."""
    return path in CHART_INPUT_FILES or path.startswith(CHART_INPUT_DIRS)


def chart_digest(files: dict[str, bytes]) -> str:
    """A chart's digest from its files (path inside the chart -> content): it changes when what
    the chart renders may change, and only then."""
    h = hashlib.sha256()
    for path in sorted(p for p in files if chart_input(p)):
        h.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return h.hexdigest()[:16]
