from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelfactory_api.trainingjob import TrainingProgress, TuningSpec
from modelfactory_training.search import (
    FOLD_BASE_BYTES,
    ProgressTracker,
    collect,
    cv_splits,
    fold_memory,
    is_better,
    plan_parallelism,
)
from modelfactory_training.search_space import build_plan

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # 2 CPUs, 5 folds: two trials keep a fold queued for each CPU.
        ({"total_trials": 24, "folds": 5, "cluster_cpus": 2}, (2, 1)),
        # Never more trials at once than there are.
        ({"total_trials": 1, "folds": 5, "cluster_cpus": 2}, (1, 1)),
        ({"total_trials": 100, "folds": 5, "cluster_cpus": 64}, (14, 1)),
        # One trial on a big node: its folds get the spare CPUs as threads...
        ({"total_trials": 1, "folds": 2, "cluster_cpus": 16}, (1, 8)),
        # ...never more than one node has, and only if the estimator has threads.
        ({"total_trials": 1, "folds": 2, "cluster_cpus": 16, "largest_node_cpus": 4}, (1, 4)),
        ({"total_trials": 1, "folds": 2, "cluster_cpus": 16, "multithreaded": False}, (1, 1)),
        ({"total_trials": 10, "folds": 3, "cluster_cpus": 8, "requested": 1}, (1, 2)),
    ],
)
def test_plan_parallelism(kwargs: dict[str, Any], expected: tuple[int, int]) -> None:
    args = {"requested": None, "largest_node_cpus": 64, "multithreaded": True, **kwargs}
    plan = plan_parallelism(**args)
    assert (plan.concurrent_trials, plan.cpus_per_fold) == expected


def test_cv_splits_match_cross_val_score() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = pd.Series((X["a"] + rng.normal(scale=0.5, size=60) > 0).astype(int))
    splits = cv_splits(X, y, 4, classifier=True)
    assert len(splits) == 4
    model = LogisticRegression()
    mine = [model.fit(X.iloc[tr], y.iloc[tr]).score(X.iloc[te], y.iloc[te]) for tr, te in splits]
    np.testing.assert_allclose(mine, cross_val_score(LogisticRegression(), X, y, cv=4))


def test_greater_is_better_for_every_scorer() -> None:
    # Error scorers are negated: -0.5 (an MSE of 0.5) beats -2.0.
    assert is_better(0.9, 0.8) and not is_better(0.8, 0.9)
    assert is_better(-0.5, -2.0) and is_better(-3.0, None)


@dataclass
class FakeResult:
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    error: Exception | None = None


def test_collect_records_every_trial_and_picks_the_best() -> None:
    plan = build_plan(
        TuningSpec.model_validate(
            {"algorithm": "grid", "searchSpace": {"C": {"values": [0.1, 1.0, 10.0, 100.0]}}}
        )
    )
    results = [
        FakeResult({"C": 0}, {"score": 0.8, "score_std": 0.01, "failed": 0}),
        FakeResult({"C": 1}, {"failed": 1, "error": "ValueError: bad"}),
        FakeResult({"C": 2}, {"score": 0.7, "score_std": 0.02, "failed": 0}),
        FakeResult({"C": 3}, error=RuntimeError("worker died")),
    ]
    outcome = collect(results, plan)
    assert [t.params["C"] for t in outcome.trials] == [0.1, 1.0, 10.0, 100.0]
    assert [t.status for t in outcome.trials] == ["ok", "failed", "ok", "failed"]
    assert outcome.trials[1].error == "ValueError: bad"
    assert outcome.best_trial is not None and outcome.best_trial.params == {"C": 0.1}
    assert (outcome.failed, outcome.infra_failures) == (2, 1)
    assert (outcome.planned, outcome.skipped) == (4, 0)


def test_trials_the_budget_stopped_are_skipped_not_failed() -> None:
    plan = build_plan(
        TuningSpec.model_validate(
            {"algorithm": "grid", "searchSpace": {"C": {"values": [0.1, 1.0, 10.0, 100.0]}}}
        )
    )
    results = [
        FakeResult({"C": 0}, {"score": 0.8, "score_std": 0.01, "failed": 0}),
        FakeResult({"C": 1}, {}),  # stopped while running
    ]
    outcome = collect(results, plan, budget_spent=True)
    assert [t.params["C"] for t in outcome.trials] == [0.1]
    assert (outcome.failed, outcome.skipped, outcome.budget_spent) == (0, 3, True)
    # Without the budget, a trial that reported nothing is an infrastructure failure.
    assert collect(results, plan).infra_failures == 1


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # No memory resource reported: nothing declared.
        ({"node_memory": 0}, None),
        # 1,000 rows x 10 columns, 5 folds: base + 4/5 of the frame + 3 encoded matrices.
        ({"node_memory": 1 << 40}, FOLD_BASE_BYTES + 800_000 + 3 * 800 * 10 * 8),
        # Never more than a node has, so the task can always be placed.
        ({"node_memory": 1 << 20}, 1 << 20),
    ],
)
def test_fold_memory(kwargs: dict[str, int], expected: int | None) -> None:
    args = {"data_bytes": 1_000_000, "rows": 1000, "width": 10, "folds": 5, **kwargs}
    assert fold_memory(**args) == expected


class FakeTrial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def test_progress_is_counted_once_per_trial_and_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[TrainingProgress] = []
    clock = iter([0.0, 0.5, 1.0, 3.0, 3.1])
    monkeypatch.setattr("modelfactory_training.search.time.monotonic", lambda: next(clock))
    tracker = ProgressTracker(total=4, sink=sent.append, interval=2.0)
    tracker.flush(force=True)  # t=0
    tracker.on_trial_result(1, [], FakeTrial("a"), {"score": 0.5, "failed": 0})  # t=0.5
    tracker.on_trial_result(1, [], FakeTrial("a"), {"score": 0.5, "failed": 0})  # seen
    tracker.on_trial_result(1, [], FakeTrial("b"), {"failed": 1})  # t=1.0
    tracker.on_trial_error(1, [], FakeTrial("c"))  # t=3.0, sent
    tracker.on_trial_result(1, [], FakeTrial("d"), {"score": 0.9, "failed": 0})  # t=3.1
    assert [(p.trialsCompleted, p.trialsFailed) for p in sent] == [(0, 0), (1, 2)]
    final = tracker.progress
    assert (final.trialsCompleted, final.trialsFailed, final.bestScore) == (2, 2, 0.9)
    assert final.trialsTotal == 4
