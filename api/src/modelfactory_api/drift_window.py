"""The drift window's wire form, written by a model server and read by the operator (which
sums the replicas' windows and hands the sum back to a server to evaluate). One definition for
both sides; the numbers are checked against the model's reference profile where they are
evaluated (modelfactory_artifacts.window.parse_window)."""

from __future__ import annotations

from typing import Any, TypedDict

# Values per numeric feature a window may carry: what a server samples at most, and what the
# operator thins the replicas' summed samples to before handing them back.
SAMPLE_LIMIT = 10_000


class DriftWindow(TypedDict):
    """Rows seen, bin counts per feature and for predictions (against the served version's
    reference profile, so they add up across replicas), and a sample of numeric values."""

    samples: int
    counts: dict[str, list[int]]
    prediction_counts: list[int] | None
    sample: dict[str, list[float]]


class DriftAnswer(TypedDict, total=False):
    """A server's answer to `GET /v2/models/{name}/drift`."""

    model_name: str
    model_version: str | None
    enabled: bool
    reason: str
    report: dict[str, Any] | None
    window: DriftWindow | None
