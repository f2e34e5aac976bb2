"""When a TrainingJob trains a new version without a spec change: on its schedule (with a
CronJob's semantics) or when a ModelService's traffic drifts. Pure: times in, decision out.

A trigger that fires is recorded in status.lastTrigger; its id is part of the run id, so a new
trigger is a new run, and an operator restarted after recording it resumes the same run instead
of starting another.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from modelfactory_api.trainingjob import RetrainSpec, ScheduleSpec
from modelfactory_operator.logic import conditions as cond

DRIFT_CONDITION = "DataDrift"
ACTIVE_PHASES = ("Pending", "Running")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cron_error(schedule: ScheduleSpec, field: str = "spec.retrain.schedule") -> str | None:
    """Why the schedule cannot be read, or None."""
    if not croniter.is_valid(schedule.cron):
        return f"{field}.cron: {schedule.cron!r} is not a valid cron expression"
    return None


@dataclass
class TriggerDecision:
    """What the triggers decided this time."""

    fire: dict[str, str] | None = None  # the new status.lastTrigger
    last_schedule_time: str | None = None  # the new status.lastScheduleTime
    events: list[tuple[str, str, str]] = field(default_factory=list)
    # Seconds until something may change without a watch event (the next scheduled time, the
    # end of a drift hold or of the minimum interval).
    recheck: float | None = None

    def soonest(self, seconds: float | None) -> None:
        if seconds is not None and (self.recheck is None or seconds < self.recheck):
            self.recheck = max(seconds, 0.0)


def latest_due(
    schedule: ScheduleSpec, since: dt.datetime, now: dt.datetime
) -> tuple[dt.datetime | None, dt.datetime]:
    """The latest scheduled time in (since, now], if any, and the next one after now. Missed
    times collapse into the latest: an operator down for a week fires once, not a stampede."""
    zone = ZoneInfo(schedule.timeZone)
    upcoming = croniter(schedule.cron, now.astimezone(zone)).get_next(dt.datetime)
    latest = croniter(schedule.cron, now.astimezone(zone)).get_prev(dt.datetime)
    # croniter's previous time is strictly before `now`; a time equal to now is due too.
    exact = croniter(schedule.cron, (now - dt.timedelta(seconds=1)).astimezone(zone)).get_next(
        dt.datetime
    )
    if exact <= now:
        latest = max(latest, exact)
    if latest <= since:
        return None, upcoming
    return latest, upcoming


def interval_left(spec: RetrainSpec, status: dict[str, Any], now: dt.datetime) -> float:
    """Seconds before the minimum interval since the last run's start has passed (0: it has)."""
    started = parse_time(status.get("startTime"))
    if started is None or not spec.minIntervalSeconds:
        return 0.0
    return max(0.0, spec.minIntervalSeconds - (now - started).total_seconds())


def decide(
    spec: RetrainSpec | None,
    status: dict[str, Any],
    created: str | None,
    drift_service: dict[str, Any] | None,
    now: dt.datetime,
) -> TriggerDecision:
    out = TriggerDecision()
    if spec is None:
        return out
    active = status.get("phase") in ACTIVE_PHASES and bool(status.get("runId"))
    waiting = interval_left(spec, status, now)
    if spec.schedule is not None and cron_error(spec.schedule) is None:
        _schedule(spec, spec.schedule, status, created, now, active, waiting, out)
    if out.fire is None and spec.onDrift is not None:
        _drift(spec, status, drift_service, now, active, waiting, out)
    return out


def _schedule(
    spec: RetrainSpec,
    schedule: ScheduleSpec,
    status: dict[str, Any],
    created: str | None,
    now: dt.datetime,
    active: bool,
    waiting: float,
    out: TriggerDecision,
) -> None:
    since = parse_time(status.get("lastScheduleTime")) or parse_time(created) or now
    due, upcoming = latest_due(schedule, since, now)
    out.soonest((upcoming - now).total_seconds())
    if due is None:
        return
    when = format_time(due)
    out.last_schedule_time = when
    late = (now - due).total_seconds()
    deadline = schedule.startingDeadlineSeconds
    if deadline is not None and late > deadline:
        out.events.append(
            (
                "Warning",
                "ScheduleMissed",
                f"scheduled run at {when} skipped: {int(late)}s late, past "
                f"startingDeadlineSeconds {deadline}",
            )
        )
    elif active and schedule.concurrencyPolicy == "Forbid":
        out.events.append(
            (
                "Normal",
                "ScheduleSkipped",
                f"scheduled run at {when} skipped: run {status.get('runId')} is still going "
                "(concurrencyPolicy Forbid)",
            )
        )
    elif waiting > 0:
        out.events.append(
            (
                "Normal",
                "ScheduleSkipped",
                f"scheduled run at {when} skipped: the last run started less than "
                f"spec.retrain.minIntervalSeconds ({spec.minIntervalSeconds}s) ago",
            )
        )
    else:
        out.fire = {"kind": "schedule", "id": f"schedule-{when}", "time": when}
        out.events.append(("Normal", "ScheduledRetrain", f"retraining for the schedule at {when}"))


def _drift(
    spec: RetrainSpec,
    status: dict[str, Any],
    service: dict[str, Any] | None,
    now: dt.datetime,
    active: bool,
    waiting: float,
    out: TriggerDecision,
) -> None:
    assert spec.onDrift is not None
    if service is None:
        return
    drift = cond.get((service.get("status") or {}).get("conditions") or [], DRIFT_CONDITION)
    if drift is None or drift.get("status") != "True":
        return
    since = parse_time(drift.get("lastTransitionTime"))
    if since is None:
        return
    episode = format_time(since)
    last = status.get("lastTrigger") or {}
    if last.get("kind") == "drift" and last.get("time") == episode:
        return  # this drift already made its run
    held = (now - since).total_seconds()
    if held < spec.onDrift.forSeconds:
        out.soonest(spec.onDrift.forSeconds - held)
        return
    if active:
        return  # the run going on may fix it; a finished run brings a reconcile
    if waiting > 0:
        out.soonest(waiting)
        return
    out.fire = {"kind": "drift", "id": f"drift-{episode}", "time": episode}
    out.events.append(
        (
            "Normal",
            "DriftRetrain",
            f"retraining: ModelService {spec.onDrift.modelService} has seen drift since "
            f"{episode} ({drift.get('message') or 'DataDrift'})",
        )
    )
