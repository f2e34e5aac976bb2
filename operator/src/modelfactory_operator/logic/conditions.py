"""Kubernetes-style conditions, and phases derived from them (never stored on their own)."""

from __future__ import annotations

from typing import Any

Conditions = list[dict[str, Any]]


def get(conditions: Conditions, ctype: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == ctype), None)


def is_true(conditions: Conditions, ctype: str) -> bool:
    cond = get(conditions, ctype)
    return cond is not None and cond.get("status") == "True"


def set_condition(
    conditions: Conditions,
    ctype: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> Conditions:
    """Return a new list with `ctype` set; the transition time moves only when status changes."""
    status_str = status if isinstance(status, str) else ("True" if status else "False")
    old = get(conditions, ctype)
    changed = old is None or old.get("status") != status_str
    new = {
        "type": ctype,
        "status": status_str,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now if changed or old is None else old["lastTransitionTime"],
        "observedGeneration": generation,
    }
    out = [c for c in conditions if c.get("type") != ctype]
    out.append(new)
    return sorted(out, key=lambda c: str(c["type"]))


def transitions(before: Conditions, after: Conditions) -> list[dict[str, Any]]:
    """Conditions whose status or reason changed: each one becomes a Kubernetes Event."""
    changed = []
    for cond in after:
        old = get(before, cond["type"])
        if (
            old is None
            or old.get("status") != cond["status"]
            or old.get("reason") != cond["reason"]
        ):
            changed.append(cond)
    return changed


def modelservice_phase(conditions: Conditions) -> str:
    ready = get(conditions, "Ready")
    if ready is not None and ready.get("status") == "True":
        return "Ready"
    if is_true(conditions, "Failed"):
        return "Failed"
    if ready is not None and ready.get("reason") in ("ReplicasUnavailable", "ServerDown"):
        return "Degraded"
    return "Pending"


class Rewrite:
    """The conditions of one decision, starting from the current ones."""

    def __init__(self, current: Conditions, generation: int | None, now: str) -> None:
        self.before = list(current)
        self.conditions = list(current)
        self.generation = generation
        self.now = now

    def set(self, ctype: str, value: bool | str, reason: str, message: str) -> None:
        self.conditions = set_condition(
            self.conditions, ctype, value, reason, message, self.generation, self.now
        )

    def changes(self) -> list[dict[str, Any]]:
        return transitions(self.before, self.conditions)
