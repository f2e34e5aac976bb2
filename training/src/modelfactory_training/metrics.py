"""Scorer choice and the held-out scores of the final model."""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    get_scorer,
    get_scorer_names,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from modelfactory_training.errors import SpecError

log = logging.getLogger(__name__)


def resolve_metric(metric: str | None, is_classifier: bool) -> str:
    if metric is None:
        return "accuracy" if is_classifier else "r2"
    names = get_scorer_names()
    if metric not in names:
        common = "accuracy, f1_macro, roc_auc, r2, neg_mean_squared_error, neg_mean_absolute_error"
        raise SpecError(
            "InvalidMetric",
            f"tuning.metric: {metric!r} is not a scikit-learn scorer name; e.g. {common}",
        )
    return metric


def held_out_metrics(model: Any, X: Any, y: Any, task: str, metric: str) -> dict[str, float]:
    """Scores on the held-out split: the search metric plus the usual ones for the task."""
    scores: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = model.predict(X)
        if task == "regression":
            scores["test_r2"] = float(r2_score(y, predicted))
            scores["test_rmse"] = float(np.sqrt(mean_squared_error(y, predicted)))
            scores["test_mae"] = float(mean_absolute_error(y, predicted))
        else:
            scores["test_accuracy"] = float(accuracy_score(y, predicted))
            scores["test_f1_macro"] = float(f1_score(y, predicted, average="macro"))
        key = f"test_{metric}"
        if key not in scores:
            try:
                scores[key] = float(get_scorer(metric)(model, X, y))
            except Exception as exc:
                # e.g. roc_auc when the held-out split lacks a class: report what can be scored.
                log.warning("held-out metric failed", extra={"metric": metric, "error": str(exc)})
    return {k: v for k, v in scores.items() if math.isfinite(v)}
