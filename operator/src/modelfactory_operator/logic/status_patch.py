"""The status write of one reconcile: a JSON merge patch from the status read to the status
decided, so a reconcile sends only what changed."""

from __future__ import annotations

from typing import Any

# kopf keeps its own bookkeeping under status; the operator leaves it alone.
FOREIGN_STATUS_KEYS = ("kopf",)


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning `old` into `new` (kopf's own keys left alone)."""
    return merge_patch(
        {k: v for k, v in old.items() if k not in FOREIGN_STATUS_KEYS},
        {k: v for k, v in new.items() if k not in FOREIGN_STATUS_KEYS},
    )


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386: objects are merged key by key, so a key gone from a nested object must be
    sent as null (status.rollout drops its candidate when a rollout ends)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            if sub := merge_patch(before, value):
                patch[key] = sub
        elif (key in old and before != value) or (key not in old and value is not None):
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
