"""Reference statistics of the training data, per feature, for drift detection later."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelfactory_api.artifact import FeatureInfo

QUANTILE_BINS = 10
MAX_CATEGORIES = 50
OTHER = "__other__"


def numeric_stats(values: pd.Series, bins: int = QUANTILE_BINS) -> dict[str, Any]:
    data = pd.to_numeric(values, errors="coerce").astype("float64")
    present = data[np.isfinite(data.to_numpy())].to_numpy()
    stats: dict[str, Any] = {
        "count": len(values),
        "missing": int(len(values) - len(present)),
    }
    if len(present) == 0:
        stats.update(mean=None, std=None, min=None, max=None, binEdges=[], binCounts=[])
        return stats
    edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, bins + 1)))
    counts = [len(present)] if len(edges) == 1 else np.histogram(present, bins=edges)[0].tolist()
    stats.update(
        mean=float(present.mean()),
        std=float(present.std()),
        min=float(present.min()),
        max=float(present.max()),
        binEdges=[float(e) for e in edges],
        binCounts=[int(c) for c in counts],
    )
    return stats


def _label(value: Any) -> str:
    item = getattr(value, "item", None)
    return str(item() if callable(item) else value)


def categorical_stats(values: pd.Series, limit: int = MAX_CATEGORIES) -> dict[str, Any]:
    counts = values.value_counts(dropna=True)
    frequencies = {_label(k): int(v) for k, v in counts.iloc[:limit].items()}
    rest = int(counts.iloc[limit:].sum())
    if rest:
        frequencies[OTHER] = rest
    return {
        "count": len(values),
        "missing": int(values.isna().sum()),
        "distinct": len(counts),
        "frequencies": frequencies,
    }


def reference_stats(frame: pd.DataFrame, features: list[FeatureInfo]) -> dict[str, dict[str, Any]]:
    return {
        f.name: (
            numeric_stats(frame[f.name])
            if f.kind == "numeric"
            else categorical_stats(frame[f.name])
        )
        for f in features
    }
