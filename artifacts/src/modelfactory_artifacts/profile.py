"""The reference profile of a model's data: what live data is compared with.

Numeric features get quantile bins whose outer bins are open (a live value below the training
minimum or above the maximum still lands in a bin, and so do -inf and +inf); only NaN and None
count as missing. Categorical features get their top-K frequencies plus "other". The target and
the model's predictions on the held-out split are profiled the same way, and a bounded uniform
sample of rows is kept for two-sample tests.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

NUMERIC_BINS = 20
TOP_CATEGORIES = 20
SAMPLE_ROWS = 1000
PROFILE_SCHEMA = 1


class NumericProfile(BaseModel):
    """Quantile bins: `edges` are the inner cut points; bin i holds edges[i-1] < x <= edges[i],
    bin 0 everything up to edges[0] and the last bin everything above edges[-1]."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["numeric"] = "numeric"
    count: int = Field(ge=0, description="Rows profiled.")
    missingRate: float = Field(ge=0, le=1, description="Share of NaN / None.")
    edges: list[float] = Field(default_factory=list, description="Inner bin edges, ascending.")
    proportions: list[float] = Field(
        default_factory=list, description="Share of the present values in each bin."
    )
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None


class CategoricalProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["categorical"] = "categorical"
    count: int = Field(ge=0, description="Rows profiled.")
    missingRate: float = Field(ge=0, le=1, description="Share of NaN / None.")
    categories: list[str] = Field(default_factory=list, description="The most frequent values.")
    proportions: list[float] = Field(
        default_factory=list,
        description="Share of the present values per category, then of all other values.",
    )
    distinct: int = Field(0, ge=0, description="Distinct present values.")


ColumnProfile = Annotated[NumericProfile | CategoricalProfile, Field(discriminator="kind")]


class ReferenceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schemaVersion: int = PROFILE_SCHEMA
    rows: int = Field(ge=0, description="Training rows profiled.")
    features: dict[str, ColumnProfile] = Field(default_factory=dict)
    target: ColumnProfile | None = None
    predictions: ColumnProfile | None = Field(
        None, description="The model's predictions on the held-out split."
    )
    sample: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="A uniform sample of at most 1,000 training rows, per feature (None: missing).",
    )


def _finite_stats(present: np.ndarray) -> dict[str, float | None]:
    finite = present[np.isfinite(present)]
    if not len(finite):
        return {"mean": None, "std": None, "min": None, "max": None}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }


def numeric_values(values: pd.Series | np.ndarray) -> np.ndarray:
    """float64, with anything that is not a number as NaN (infinities stay infinities)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype("float64", copy=False)  # already numbers: no pandas round trip
    return np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype="float64")


def profile_numeric(values: pd.Series | np.ndarray, bins: int = NUMERIC_BINS) -> NumericProfile:
    data = numeric_values(values)
    missing = np.isnan(data)
    present = data[~missing]
    count = len(data)
    rate = float(missing.mean()) if count else 0.0
    if not len(present):
        return NumericProfile(count=count, missingRate=rate)
    finite = present[np.isfinite(present)]
    cuts = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1]) if len(finite) else []
    edges = np.unique(np.asarray(cuts, dtype="float64"))
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    return NumericProfile(
        count=count,
        missingRate=rate,
        edges=edges.tolist(),
        proportions=(counts / len(present)).tolist(),
        **_finite_stats(present),
    )


def category_labels(values: pd.Series | np.ndarray) -> pd.Series:
    """Values as the strings the profile names them by; missing stays missing."""
    series = pd.Series(values)
    labels = series.astype(str)
    return labels.where(~series.isna(), None)


def profile_categorical(
    values: pd.Series | np.ndarray, top: int = TOP_CATEGORIES
) -> CategoricalProfile:
    labels = category_labels(values)
    count = len(labels)
    present = labels.dropna()
    rate = float(1 - len(present) / count) if count else 0.0
    if not len(present):
        return CategoricalProfile(count=count, missingRate=rate)
    frequencies = present.value_counts()
    kept = frequencies.iloc[:top]
    other = int(frequencies.iloc[top:].sum())
    proportions = np.append(kept.to_numpy(), other) / len(present)
    return CategoricalProfile(
        count=count,
        missingRate=rate,
        categories=[str(c) for c in kept.index],
        proportions=proportions.tolist(),
        distinct=len(frequencies),
    )


def profile_column(values: Any, kind: str) -> NumericProfile | CategoricalProfile:
    return profile_numeric(values) if kind == "numeric" else profile_categorical(values)


def sample_rows(
    frame: pd.DataFrame, rows: int = SAMPLE_ROWS, seed: int = 0
) -> dict[str, list[Any]]:
    """A uniform sample of rows, JSON-ready: numbers as floats, others as strings, missing None."""
    picked = frame.sample(n=min(rows, len(frame)), random_state=seed) if len(frame) else frame
    out: dict[str, list[Any]] = {}
    for name in picked.columns:
        column = picked[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            data = numeric_values(column)
            out[str(name)] = [None if np.isnan(v) else float(v) for v in data]
        else:
            out[str(name)] = category_labels(column).tolist()
    return out


def build_profile(
    features: pd.DataFrame,
    kinds: dict[str, str],
    *,
    target: pd.Series | None = None,
    target_kind: str | None = None,
    predictions: Any = None,
    seed: int = 0,
) -> ReferenceProfile:
    """Profile of the training features (`kinds`: name -> "numeric" | "categorical"), the target
    and the held-out predictions (profiled like the target)."""
    kind_of_target = target_kind or "numeric"
    return ReferenceProfile(
        rows=len(features),
        features={name: profile_column(features[name], kind) for name, kind in kinds.items()},
        target=None if target is None else profile_column(target, kind_of_target),
        predictions=None if predictions is None else profile_column(predictions, kind_of_target),
        sample=sample_rows(features[list(kinds)], seed=seed),
    )
