"""Running the hyper-parameter search with Ray Tune."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator
from sklearn.model_selection import check_cv

from modelfactory_api.trainingjob import TrainingProgress
from modelfactory_artifacts.metadata import TrialRecord
from modelfactory_training.search_space import SearchPlan
from modelfactory_training.trial import (
    ERROR,
    FAILED,
    INFRA,
    NODES,
    SCORE,
    SCORE_STD,
    ModelRecipe,
    TrialSetup,
    run_trial,
)

log = logging.getLogger(__name__)

ProgressSink = Callable[[TrainingProgress], None]


@dataclass(frozen=True)
class Parallelism:
    concurrent_trials: int
    cpus_per_fold: int


def plan_parallelism(
    *,
    total_trials: int,
    folds: int,
    requested: int | None,
    cluster_cpus: int,
    largest_node_cpus: int,
    multithreaded: bool,
) -> Parallelism:
    """How many trials run at once and how many CPUs each fold task gets.

    Enough trials run to keep a fold queued for every CPU, plus one so the next trial's folds
    are queued before the current ones drain. When even that leaves CPUs idle, a multithreaded
    estimator gets several CPUs per fold (never more than one node has).
    """
    wanted = requested or -(-cluster_cpus // folds) + 1
    concurrent = max(1, min(wanted, total_trials))
    per_fold = 1
    if multithreaded:
        per_fold = max(1, min(cluster_cpus // (concurrent * folds), largest_node_cpus))
    return Parallelism(concurrent_trials=concurrent, cpus_per_fold=per_fold)


# What a fold task holds besides its data: the interpreter, scikit-learn, the model.
FOLD_BASE_BYTES = 256 << 20


def fold_memory(
    *, data_bytes: int, rows: int, width: int, folds: int, node_memory: int
) -> int | None:
    """Memory to declare for one fold task, in bytes; None when Ray reports no memory.

    A fold copies its training rows out of the shared frame and encodes them into a float64
    matrix `width` columns wide; imputing, scaling and stacking hold about three such matrices
    at once. Capped at the largest node's memory so the task can always be placed (then it
    runs alone there).
    """
    if node_memory <= 0:
        return None
    share = (folds - 1) / folds
    matrix = int(rows * share) * width * 8
    wanted = FOLD_BASE_BYTES + int(data_bytes * share) + 3 * matrix
    return min(wanted, node_memory)


def is_better(score: float, best: float | None) -> bool:
    """Scores are scikit-learn scorer values: greater is better, for errors (negated) too."""
    return best is None or score > best


class ProgressTracker(tune.Callback):
    """Counts finished trials on the driver and passes progress on, at most every `interval` s."""

    def __init__(self, total: int, sink: ProgressSink, interval: float = 2.0) -> None:
        self.progress = TrainingProgress(trialsTotal=total)
        self.sink = sink
        self.interval = interval
        self._seen: set[str] = set()
        self._nodes: set[str] = set()
        self._last = 0.0

    def _record(self, trial_id: str, score: float | None, nodes: Sequence[str] = ()) -> None:
        if trial_id in self._seen:
            return
        self._seen.add(trial_id)
        self._nodes.update(nodes)
        p = self.progress
        p.rayNodes = len(self._nodes)
        if score is None:
            p.trialsFailed += 1
        else:
            p.trialsCompleted += 1
            if is_better(score, p.bestScore):
                p.bestScore = score
        self.flush()

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            self.sink(self.progress.model_copy())

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:  # type: ignore[override]
        score = None if result.get(FAILED) else result.get(SCORE)
        self._record(trial.trial_id, score, result.get(NODES) or [])

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:  # type: ignore[override]
        self._record(trial.trial_id, None)


@dataclass(frozen=True)
class SearchOutcome:
    trials: list[TrialRecord]  # the trials that ran, finished or failed
    best: int | None
    infra_failures: int
    planned: int = 0
    budget_spent: bool = False

    @property
    def failed(self) -> int:
        return sum(1 for t in self.trials if t.status == "failed")

    @property
    def skipped(self) -> int:
        """Trials the time budget left unrun (or stopped before they reported)."""
        return max(self.planned - len(self.trials), 0)

    @property
    def best_trial(self) -> TrialRecord | None:
        return None if self.best is None else self.trials[self.best]


def collect(results: Any, plan: SearchPlan, *, budget_spent: bool = False) -> SearchOutcome:
    """Trial records from Tune's results, in the order the trials were created.

    When the time budget ran out, trials without a result were stopped or never started: they
    are skipped, not failed.
    """
    records: list[TrialRecord] = []
    infra = 0
    best: int | None = None
    best_score: float | None = None
    for result in results:
        params = plan.decode(result.config or {})
        metrics = result.metrics or {}
        reported = SCORE in metrics or bool(metrics.get(FAILED))
        if result.error is None and not reported and budget_spent:
            continue
        if result.error is not None or not reported:
            infra += 1
            error = str(result.error or "trial reported no result")
            records.append(TrialRecord(params=params, status="failed", error=error[:1000]))
            continue
        if metrics.get(FAILED):
            infra += 1 if metrics.get(INFRA) else 0
            records.append(TrialRecord(params=params, status="failed", error=metrics.get(ERROR)))
            continue
        score = float(metrics[SCORE])
        records.append(
            TrialRecord(
                params=params,
                score=score,
                scoreStd=metrics.get(SCORE_STD),
                nodes=list(metrics.get(NODES) or []),
            )
        )
        if is_better(score, best_score):
            best, best_score = len(records) - 1, score
    return SearchOutcome(
        trials=records,
        best=best,
        infra_failures=infra,
        planned=plan.total_trials,
        budget_spent=budget_spent,
    )


def _trial_dirname(trial: Any) -> str:
    return str(trial.trial_id)


def cv_splits(X: Any, y: Any, folds: int, classifier: bool) -> list[tuple[Any, Any]]:
    """The folds cross_val_score(cv=folds) uses: stratified for classifiers, not shuffled."""
    return list(check_cv(folds, y, classifier=classifier).split(X, y))


# A trial only waits for its folds: it takes no CPU, and a token of memory because Tune needs
# some resource to place it.
TRIAL_RESOURCES: dict[str, float] = {"cpu": 0, "memory": float(1 << 20)}


@dataclass(frozen=True)
class SearchLimits:
    """What bounds the search besides its plan: a time budget and the memory of a fold task."""

    time_budget_s: float | None = None
    fold_memory_bytes: int | None = None


def run_search(
    data: Any,
    X: Any,
    y: Any,
    *,
    classifier: bool,
    recipe: ModelRecipe,
    fixed_params: dict[str, Any],
    estimator_n_jobs: int | None,
    plan: SearchPlan,
    parallelism: Parallelism,
    folds: int,
    seed: int,
    sink: ProgressSink,
    limits: SearchLimits | None = None,
) -> SearchOutcome:
    """Search on Ray Tune; `data` is the object-store reference of (X, y), put there once."""
    limits = limits or SearchLimits()
    tracker = ProgressTracker(plan.total_trials, sink)
    tracker.flush(force=True)
    # The folds go to the object store once too; every fold task reads both there.
    setup = TrialSetup(
        data=data,
        splits=ray.put(cv_splits(X, y, folds, classifier)),
        folds=folds,
        recipe=recipe,
        fixed_params=fixed_params,
        choices=plan.choices,
        cpus_per_fold=parallelism.cpus_per_fold,
        estimator_n_jobs=estimator_n_jobs,
        fold_memory_bytes=limits.fold_memory_bytes,
    )
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup), TRIAL_RESOURCES)
    storage = tempfile.mkdtemp(prefix="mf-tune-")
    started = time.monotonic()
    try:
        tuner = tune.Tuner(
            trainable,
            param_space=plan.param_space,
            tune_config=tune.TuneConfig(
                num_samples=plan.num_samples,
                search_alg=BasicVariantGenerator(
                    random_state=seed, max_concurrent=parallelism.concurrent_trials
                ),
                reuse_actors=True,
                trial_dirname_creator=_trial_dirname,
                time_budget_s=limits.time_budget_s,
            ),
            run_config=tune.RunConfig(
                name="search",
                storage_path=storage,
                verbose=0,
                callbacks=[tracker],
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            ),
        )
        results = tuner.fit()
        elapsed = time.monotonic() - started
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    budget_spent = limits.time_budget_s is not None and elapsed >= limits.time_budget_s
    outcome = collect(results, plan, budget_spent=budget_spent)
    tracker.progress.trialsSkipped = outcome.skipped
    tracker.flush(force=True)
    log.info(
        "search finished",
        extra={
            "trials": len(outcome.trials),
            "failed": outcome.failed,
            "skipped": outcome.skipped,
            "budget_spent": budget_spent,
            "seconds": round(elapsed, 2),
            "best_score": None if outcome.best_trial is None else outcome.best_trial.score,
        },
    )
    return outcome
