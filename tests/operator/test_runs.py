"""A run whose workload did not report: how it ended, and when it is applied again."""

from __future__ import annotations

import pytest

from modelfactory_operator.logic import runs
from modelfactory_operator.logic.plans import RunObservation

pytestmark = pytest.mark.unit


def test_a_run_that_ended_without_its_result_says_how() -> None:
    done = runs.ended_without_result(RunObservation("succeeded"), [], False, "r1", "scoring")
    assert done is not None and done[0] == "NoResult" and "r1" in done[1]
    failed = runs.ended_without_result(
        RunObservation("failed", reason="BackoffLimitExceeded", message="pod failed"),
        [],
        False,
        "r1",
        "training",
    )
    assert failed == ("BackoffLimitExceeded", "pod failed")
    assert (
        runs.ended_without_result(RunObservation("failed"), [], False, "r1", "scoring")[0]
        == "ScoringFailed"
    )  # type: ignore[index]
    before = [{"type": "Failed", "status": "True", "reason": "SchemaMismatch", "message": "m"}]
    # Its Job gone (a TTL), the failure on record stays.
    assert runs.ended_without_result(RunObservation("absent"), before, True, "r1", "scoring") == (
        "SchemaMismatch",
        "m",
    )
    assert runs.ended_without_result(RunObservation("running"), [], False, "r1", "x") is None


def test_only_an_unfinished_existing_run_is_applied_again() -> None:
    running = RunObservation("running")
    assert runs.apply_again(False, running, "old", "new")
    assert not runs.apply_again(False, running, "new", "new")
    assert not runs.apply_again(True, running, "old", "new")
    assert not runs.apply_again(False, RunObservation("succeeded"), "old", "new")
    assert not runs.apply_again(False, RunObservation("absent"), "old", "new")
