"""One Ray Tune trial: cross-validate one configuration. Runs inside a Ray worker."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import tune
from sklearn.model_selection import cross_val_score

from modelfactory_training.estimator import resolve_estimator
from modelfactory_training.pipeline import build_pipeline
from modelfactory_training.search_space import decode_config

SCORE = "score"
SCORE_STD = "score_std"
FAILED = "failed"
ERROR = "error"
_MAX_ERROR = 1000


@dataclass(frozen=True)
class ModelRecipe:
    """How to build the pipeline of a configuration."""

    estimator: str
    preprocessing: bool
    numeric: list[str]
    categorical: list[str]
    scoring: str


@dataclass(frozen=True)
class TrialSetup:
    """Everything a trial needs besides its sampled config; put in the object store once."""

    X: Any
    y: Any
    folds: int
    recipe: ModelRecipe
    fixed_params: dict[str, Any]
    choices: dict[str, list[Any]]
    estimator_n_jobs: int | None = None
    cv_n_jobs: int | None = None

    def params_for(self, config: dict[str, Any]) -> dict[str, Any]:
        params = dict(self.fixed_params)
        if self.estimator_n_jobs is not None:
            params["n_jobs"] = self.estimator_n_jobs
        params.update(decode_config(self.choices, config))
        return params


def evaluate(setup: TrialSetup, config: dict[str, Any]) -> dict[str, Any]:
    """Cross-validated score of one configuration; failures are returned, not raised."""
    recipe = setup.recipe
    try:
        pipeline = build_pipeline(
            resolve_estimator(recipe.estimator),
            setup.params_for(config),
            preprocessing=recipe.preprocessing,
            numeric=recipe.numeric,
            categorical=recipe.categorical,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = cross_val_score(
                pipeline,
                setup.X,
                setup.y,
                cv=setup.folds,
                scoring=recipe.scoring,
                error_score="raise",
                n_jobs=setup.cv_n_jobs,
            )
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"the {recipe.scoring} score is not finite: {scores.tolist()}")
    except Exception as exc:
        # A failed trial is counted, not fatal; raising here would also cost an actor restart.
        return {FAILED: 1, ERROR: f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]}
    return {SCORE: float(scores.mean()), SCORE_STD: float(scores.std()), FAILED: 0}


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    tune.report(evaluate(setup, config))
