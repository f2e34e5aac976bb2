"""The periodic resync: a safety net for a change no watch event announced.

Every resource the operator holds is reconciled once per period, at offsets spread evenly over
it, so that hundreds of resources cost a steady trickle of reads instead of a storm every period.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

K = TypeVar("K")


def spread(keys: Iterable[K], period: float) -> list[tuple[float, K]]:
    """(offset in seconds from the period's start, key) for each key, evenly apart, in a stable
    order (sorted), the first at 0."""
    ordered = sorted(set(keys))  # type: ignore[type-var]
    if not ordered:
        return []
    step = period / len(ordered)
    return [(i * step, key) for i, key in enumerate(ordered)]


def should_drop(coalesce: bool, waiting: int) -> bool:
    """Whether a reconcile asked for may be dropped: one already waiting to start for the same
    resource reads it after the event that asked for this one, so it sees the same change.
    Reconciles whose failure kopf must retry (create, update, resume) are never dropped."""
    return coalesce and waiting > 0


def child_event_matters(event_type: str | None, parent_known: bool) -> bool:
    """Whether a child's watch event must reconcile its parent. A child seen in a watch's
    initial listing (kopf gives it no type) tells nothing to a parent this process has not
    reconciled yet: the parent's own first reconcile (its resume) reads the child then. After a
    watch restarts from a new listing, the parent is known and the event counts."""
    return event_type is not None or parent_known
