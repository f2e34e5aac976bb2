"""One Ray Tune trial: cross-validate one configuration.

The trial only coordinates: each fold is a Ray task that asks for CPUs of its own, so the folds
of all running trials share every CPU of the cluster until the very last fold (no CPU idles
while one long trial finishes), and every fold reads the training data from the object store.
"""

from __future__ import annotations

import socket
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray import tune
from ray.exceptions import RayError, RayTaskError
from sklearn.metrics import get_scorer

from modelfactory_training.estimator import resolve_estimator
from modelfactory_training.pipeline import build_pipeline
from modelfactory_training.search_space import decode_config

SCORE = "score"
SCORE_STD = "score_std"
FAILED = "failed"
INFRA = "infra"
ERROR = "error"
NODES = "nodes"
_MAX_ERROR = 1000


@dataclass(frozen=True)
class ModelRecipe:
    """How to build and score the pipeline of a configuration."""

    estimator: str
    preprocessing: bool
    numeric: list[str]
    categorical: list[str]
    scoring: str
    seed: int = 0
    max_categories: int = 20


@dataclass(frozen=True)
class TrialSetup:
    """Everything a trial needs besides its sampled config; put in the object store once."""

    data: Any  # ObjectRef of (X, y): the training split
    splits: Any  # ObjectRef of [(train_rows, validation_rows), ...]
    folds: int
    recipe: ModelRecipe
    fixed_params: dict[str, Any]
    choices: dict[str, list[Any]]
    cpus_per_fold: int = 1
    estimator_n_jobs: int | None = None
    fold_memory_bytes: int | None = None

    def params_for(self, config: dict[str, Any]) -> dict[str, Any]:
        params = dict(self.fixed_params)
        if self.estimator_n_jobs is not None:
            params["n_jobs"] = self.estimator_n_jobs
        params.update(decode_config(self.choices, config))
        return params


def score_fold(
    data: tuple[Any, Any],
    splits: list[tuple[np.ndarray, np.ndarray]],
    fold: int,
    recipe: ModelRecipe,
    params: dict[str, Any],
) -> tuple[float, str]:
    """Fit on one fold's training rows and score its validation rows, as cross_val_score does.

    Returns the score and the host it ran on (a pod's name on Kubernetes): where the search ran
    is part of its record.
    """
    X, y = data
    train, test = splits[fold]
    pipeline = build_pipeline(
        resolve_estimator(recipe.estimator),
        params,
        preprocessing=recipe.preprocessing,
        numeric=recipe.numeric,
        categorical=recipe.categorical,
        seed=recipe.seed,
        max_categories=recipe.max_categories,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(X.iloc[train], y.iloc[train])
        score = float(get_scorer(recipe.scoring)(pipeline, X.iloc[test], y.iloc[test]))
    if not np.isfinite(score):
        raise ValueError(f"the {recipe.scoring} score of fold {fold} is {score}")
    return score, socket.gethostname()


_score_fold = ray.remote(score_fold)


def evaluate(setup: TrialSetup, config: dict[str, Any]) -> dict[str, Any]:
    """Cross-validated score of one configuration; failures are returned, not raised."""
    params = setup.params_for(config)
    # Declared memory keeps Ray from running more folds on a node than its memory holds (the
    # OOM killer would take them, and the whole run with them).
    memory = {"memory": setup.fold_memory_bytes} if setup.fold_memory_bytes else {}
    task = _score_fold.options(
        num_cpus=setup.cpus_per_fold,
        # Tune runs the trial in a placement group; its folds must not be confined to it.
        scheduling_strategy="DEFAULT",
        **memory,
    )
    refs = [
        task.remote(setup.data, setup.splits, fold, setup.recipe, params)
        for fold in range(setup.folds)
    ]
    try:
        folds = ray.get(refs)
    except RayError as exc:
        for ref in refs:
            ray.cancel(ref)  # the other folds of a failed configuration are wasted work
        # A failed trial is counted, not fatal.
        if isinstance(exc, RayTaskError):
            cause = exc.cause if exc.cause is not None else exc
            return {FAILED: 1, ERROR: f"{type(cause).__name__}: {cause}"[:_MAX_ERROR]}
        return {FAILED: 1, INFRA: 1, ERROR: f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]}
    scores = np.array([score for score, _ in folds])
    return {
        SCORE: float(scores.mean()),
        SCORE_STD: float(scores.std()),
        FAILED: 0,
        NODES: sorted({host for _, host in folds}),
    }


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    tune.report(evaluate(setup, config))
