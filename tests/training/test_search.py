from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from modelfactory_api.trainingjob import TrainingProgress, TuningSpec
from modelfactory_training.search import (
    ProgressTracker,
    collect,
    is_better,
    plan_parallelism,
)
from modelfactory_training.search_space import build_plan

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"total_trials": 24, "cluster_cpus": 2}, (2, 1)),
        # Never more trials at once than there are; the spare CPUs go to the trials.
        ({"total_trials": 1, "cluster_cpus": 2}, (1, 2)),
        ({"total_trials": 3, "cluster_cpus": 16}, (3, 5)),
        # ...but never more than one node holds.
        ({"total_trials": 1, "cluster_cpus": 16, "largest_node_cpus": 4}, (1, 4)),
        ({"total_trials": 10, "cluster_cpus": 8, "requested": 2}, (2, 4)),
        ({"total_trials": 100, "cluster_cpus": 4, "requested": 8}, (8, 1)),
    ],
)
def test_plan_parallelism(kwargs: dict[str, Any], expected: tuple[int, int]) -> None:
    args = {"requested": None, "largest_node_cpus": 64, **kwargs}
    plan = plan_parallelism(**args)
    assert (plan.concurrent_trials, plan.cpus_per_trial) == expected


def test_direction() -> None:
    assert is_better(0.9, 0.8, "maximize") and not is_better(0.9, 0.8, "minimize")
    assert is_better(1.0, None, "minimize")


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
    outcome = collect(results, plan, "maximize")
    assert [t.params["C"] for t in outcome.trials] == [0.1, 1.0, 10.0, 100.0]
    assert [t.status for t in outcome.trials] == ["ok", "failed", "ok", "failed"]
    assert outcome.trials[1].error == "ValueError: bad"
    assert outcome.best_trial is not None and outcome.best_trial.params == {"C": 0.1}
    assert (outcome.failed, outcome.infra_failures) == (2, 1)
    assert collect(results, plan, "minimize").best_trial.params == {"C": 10.0}  # type: ignore[union-attr]


class FakeTrial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def test_progress_is_counted_once_per_trial_and_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[TrainingProgress] = []
    clock = iter([0.0, 0.5, 1.0, 3.0, 3.1])
    monkeypatch.setattr("modelfactory_training.search.time.monotonic", lambda: next(clock))
    tracker = ProgressTracker(total=4, direction="maximize", sink=sent.append, interval=2.0)
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
