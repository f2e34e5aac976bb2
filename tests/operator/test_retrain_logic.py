"""Retraining triggers: a schedule with CronJob semantics, drift held long enough, and the
minimum interval between runs."""

import datetime as dt
from typing import Any

import pytest

from modelfactory_api.trainingjob import RetrainSpec
from modelfactory_operator.logic import retrain

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 3, 1, 12, 0, 30, tzinfo=dt.UTC)


def spec(**kw: Any) -> RetrainSpec:
    return RetrainSpec.model_validate({"minIntervalSeconds": 0, **kw})


def every_minute(**kw: Any) -> RetrainSpec:
    return spec(schedule={"cron": "* * * * *", **kw})


def test_a_due_schedule_fires_once_and_remembers_the_time() -> None:
    out = retrain.decide(every_minute(), {}, "2026-03-01T11:59:10Z", None, T0)
    assert out.fire == {
        "kind": "schedule",
        "id": "schedule-2026-03-01T12:00:00Z",
        "time": "2026-03-01T12:00:00Z",
    }
    assert out.last_schedule_time == "2026-03-01T12:00:00Z"
    assert out.recheck == pytest.approx(29.5, abs=1)
    again = retrain.decide(
        every_minute(),
        {"lastScheduleTime": out.last_schedule_time},
        None,
        None,
        T0 + dt.timedelta(seconds=10),
    )
    assert again.fire is None and again.last_schedule_time is None


def test_missed_times_collapse_into_one_run() -> None:
    # The operator was down for two hours: one run for the latest time, not 120.
    status = {"lastScheduleTime": "2026-03-01T10:00:00Z"}
    out = retrain.decide(every_minute(), status, None, None, T0)
    assert out.fire is not None and out.fire["time"] == "2026-03-01T12:00:00Z"


def test_a_time_missed_past_the_starting_deadline_is_skipped() -> None:
    status = {"lastScheduleTime": "2026-03-01T08:00:00Z"}
    hourly = spec(schedule={"cron": "0 * * * *", "startingDeadlineSeconds": 10})
    out = retrain.decide(hourly, status, None, None, T0)
    assert out.fire is None and out.last_schedule_time == "2026-03-01T12:00:00Z"
    assert out.events[0][1] == "ScheduleMissed"


def test_forbid_skips_while_a_run_is_going_and_replace_fires() -> None:
    status = {"phase": "Running", "runId": "r1", "lastScheduleTime": "2026-03-01T11:59:00Z"}
    forbid = retrain.decide(every_minute(), status, None, None, T0)
    assert forbid.fire is None and forbid.events[0][1] == "ScheduleSkipped"
    assert forbid.last_schedule_time == "2026-03-01T12:00:00Z"
    replace = retrain.decide(every_minute(concurrencyPolicy="Replace"), status, None, None, T0)
    assert replace.fire is not None


def test_the_minimum_interval_holds_back_a_schedule() -> None:
    status = {"startTime": "2026-03-01T11:59:50Z", "lastScheduleTime": "2026-03-01T11:59:00Z"}
    s = RetrainSpec.model_validate({"schedule": {"cron": "* * * * *"}, "minIntervalSeconds": 600})
    out = retrain.decide(s, status, None, None, T0)
    assert out.fire is None and "minIntervalSeconds" in out.events[0][2]


def test_time_zones_are_honoured() -> None:
    # 13:00 in Paris is 12:00 UTC in March.
    s = spec(schedule={"cron": "0 13 * * *", "timeZone": "Europe/Paris"})
    out = retrain.decide(s, {"lastScheduleTime": "2026-02-28T12:00:00Z"}, None, None, T0)
    assert out.fire is not None and out.fire["time"] == "2026-03-01T12:00:00Z"


def drifting(since: str, status: str = "True") -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {
                    "type": "DataDrift",
                    "status": status,
                    "reason": "DriftDetected",
                    "message": "x drifted",
                    "lastTransitionTime": since,
                }
            ]
        }
    }


def test_drift_fires_after_it_held_long_enough_and_once_per_episode() -> None:
    s = spec(onDrift={"modelService": "iris", "forSeconds": 60})
    early = retrain.decide(s, {}, None, drifting("2026-03-01T12:00:00Z"), T0)
    assert early.fire is None and early.recheck == pytest.approx(29.5, abs=1)
    later = T0 + dt.timedelta(seconds=40)
    out = retrain.decide(s, {}, None, drifting("2026-03-01T12:00:00Z"), later)
    assert out.fire == {
        "kind": "drift",
        "id": "drift-2026-03-01T12:00:00Z",
        "time": "2026-03-01T12:00:00Z",
    }
    done = retrain.decide(
        s, {"lastTrigger": out.fire}, None, drifting("2026-03-01T12:00:00Z"), later
    )
    assert done.fire is None
    calm = drifting("2026-03-01T12:00:00Z", "False")
    assert retrain.decide(s, {}, None, calm, later).fire is None


def test_drift_waits_for_a_running_run_and_the_minimum_interval() -> None:
    s = RetrainSpec.model_validate(
        {"onDrift": {"modelService": "iris", "forSeconds": 0}, "minIntervalSeconds": 300}
    )
    running = {"phase": "Running", "runId": "r1", "startTime": "2026-03-01T11:00:00Z"}
    assert retrain.decide(s, running, None, drifting("2026-03-01T12:00:00Z"), T0).fire is None
    recent = {"phase": "Succeeded", "startTime": "2026-03-01T11:59:00Z"}
    out = retrain.decide(s, recent, None, drifting("2026-03-01T12:00:00Z"), T0)
    assert out.fire is None and out.recheck == pytest.approx(210.5, abs=1)


def test_invalid_cron_is_a_spec_error() -> None:
    from modelfactory_operator.logic import validate

    base = {
        "dataset": {"uri": "sklearn://iris"},
        "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
        "output": {"storageUri": "file:///tmp/m"},
    }
    with pytest.raises(validate.SpecError, match="not a valid cron"):
        validate.trainingjob_spec(
            {**base, "retrain": {"schedule": {"cron": "61 * * * *"}}}, "local"
        )
    with pytest.raises(validate.SpecError, match="unknown time zone"):
        validate.trainingjob_spec(
            {**base, "retrain": {"schedule": {"cron": "* * * * *", "timeZone": "Mars/Olympus"}}},
            "local",
        )
