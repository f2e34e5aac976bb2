"""Scores for the promotion gate: the new version and the promoted one on the same held-out rows.

Both are scored by one scikit-learn scorer (the gate metric, else the search metric). Scorers
are greater-is-better (errors are negated), so the operator's gate (logic/promotion.py `judge`)
promotes when `score - baseline.score >= minImprovement`; the search only maximizes, so it never
reads a score reversed. A baseline that cannot be loaded or scored does not fail the run: its
score is None and the message says why, and the gate rejects the new version with it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

from sklearn.metrics import get_scorer, get_scorer_names

from modelfactory_api.trainingjob import BaselineScore, ModelRef
from modelfactory_artifacts.metadata import GateScores
from modelfactory_artifacts.read import ArtifactError, LoadedModel, load_artifact
from modelfactory_training.errors import SpecError

log = logging.getLogger(__name__)

MAX_MESSAGE = 1000
_SHOWN = 10


def gate_metric(gate: str | None, search_metric: str) -> str:
    """The scorer the gate compares with: promotion.metric, else the search metric."""
    if gate is None:
        return search_metric
    if gate not in get_scorer_names():
        raise SpecError(
            "InvalidMetric",
            f"promotion.metric: {gate!r} is not a scikit-learn scorer name; e.g. accuracy, "
            "f1_macro, roc_auc, r2, neg_mean_squared_error",
        )
    return gate


def score(model: Any, X: Any, y: Any, metric: str) -> float:
    """The scorer's value; raises when the model cannot be scored or the score is not finite."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(get_scorer(metric)(model, X, y))
    if not math.isfinite(value):
        raise ValueError(f"{metric} is {value} on the held-out data")
    return value


def _names(names: list[str]) -> str:
    more = len(names) - _SHOWN
    return ", ".join(names[:_SHOWN]) + (f", ... ({more} more)" if more > 0 else "")


def compatibility_problem(
    baseline_features: list[str], baseline_task: str, columns: list[str], task: str
) -> str | None:
    """Why the baseline cannot be scored on these held-out rows, or None."""
    if (baseline_task == "regression") != (task == "regression"):
        return f"TaskMismatch: it is a {baseline_task} model and the new data is a {task} task"
    present = set(columns)
    missing = [f for f in baseline_features if f not in present]
    if missing:
        return (
            f"FeatureMismatch: it was trained on feature(s) the new held-out data lacks: "
            f"{_names(missing)}"
        )
    return None


def describe(exc: BaseException) -> str:
    """An error as a gate message: load_artifact's reason leads its own text."""
    text = str(exc) if isinstance(exc, ArtifactError) else f"{type(exc).__name__}: {exc}"
    return text[:MAX_MESSAGE]


def baseline_outcome(version: int, outcome: float | str | BaseException) -> BaselineScore:
    """The baseline's score, or why it has none (a message, or the error that stopped it)."""
    if isinstance(outcome, float):
        return BaselineScore(version=version, score=outcome)
    message = outcome if isinstance(outcome, str) else describe(outcome)
    return BaselineScore(version=version, score=None, message=message[:MAX_MESSAGE])


def score_baseline(
    ref: ModelRef,
    X: Any,
    y: Any,
    task: str,
    metric: str,
    load: Callable[[str, str | None], LoadedModel] = load_artifact,
) -> BaselineScore:
    """Load the promoted version (verified: digest, allow-listed types) and score it on the
    held-out rows, its own features in its own order."""
    try:
        loaded = load(ref.uri, ref.digest)
        features = [f.name for f in loaded.metadata.features]
        problem = compatibility_problem(
            features, loaded.metadata.task, [str(c) for c in X.columns], task
        )
        if problem is not None:
            return baseline_outcome(ref.version, problem)
        return baseline_outcome(ref.version, score(loaded.estimator, X[features], y, metric))
    except Exception as exc:
        log.warning("baseline not scored", extra={"version": ref.version, "error": describe(exc)})
        return baseline_outcome(ref.version, exc)


def gate_scores(
    model: Any,
    X: Any,
    y: Any,
    *,
    task: str,
    metric: str,
    baseline: ModelRef | None,
    load: Callable[[str, str | None], LoadedModel] = load_artifact,
) -> GateScores:
    """The new model's score and, when a version is promoted, that version's, on X and y."""
    try:
        new: float | None = score(model, X, y, metric)
    except Exception as exc:
        # e.g. roc_auc on a held-out split with one class; the gate then rejects on a baseline.
        log.warning("new version not scored", extra={"metric": metric, "error": describe(exc)})
        new = None
    gate = GateScores(metric=metric, score=new)
    if baseline is None:
        return gate
    scored = score_baseline(baseline, X, y, task, metric, load)
    return gate.model_copy(
        update={
            "baselineVersion": scored.version,
            "baselineScore": scored.score,
            "baselineMessage": scored.message,
        }
    )


def result_baseline(gate: GateScores | None) -> BaselineScore | None:
    """The result's baseline from the scores recorded in the artifact."""
    if gate is None or gate.baselineVersion is None:
        return None
    return BaselineScore(
        version=gate.baselineVersion, score=gate.baselineScore, message=gate.baselineMessage
    )
