"""One spelling of a point in time for every component: RFC 3339 in UTC with a `Z`, as
Kubernetes writes `metav1.Time` (whole seconds) and as status, reports and manifests carry it."""

from __future__ import annotations

import datetime as dt


def rfc3339(when: dt.datetime | None = None, timespec: str = "seconds") -> str:
    """`when` (default: now) in UTC, e.g. 2026-01-31T12:00:00Z."""
    moment = (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def from_epoch(seconds: float, timespec: str = "seconds") -> str:
    """A Unix time (time.time(), a log record's `created`) in the same spelling."""
    return rfc3339(dt.datetime.fromtimestamp(seconds, dt.UTC), timespec)


def parse(stamp: str) -> dt.datetime:
    """An RFC 3339 time (with `Z` or an offset) as an aware datetime; a naive one is UTC."""
    parsed = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
