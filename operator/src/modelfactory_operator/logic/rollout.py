"""Rollouts: which versions serve and how traffic is shared, decided from spec.rollout, the
rollout's state (status.rollout) and the servers' figures since the current interval began.

All state lives in status.rollout, so an operator restarted mid-rollout carries on at the same
step: an interval's baseline (the cumulative counts when it began) and its start are recorded,
and a step advances only once, when its interval is judged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from modelfactory_api.modelservice import RolloutSpec
from modelfactory_operator.logic import traffic_metrics as tm

Ref = dict[str, Any]  # {"uri", "digest", "version"}
Event = tuple[str, str, str]
ACTIVE = ("Progressing", "Paused", "Promoting", "RollingBack", "Experiment")
# How soon to look again while waiting for a roll or for requests.
WAIT_SECONDS = 2.0
# How long a replaced stable server still answers: kept-alive connections reach it through its
# preStop pause (5 s, charts/model-service) and its drain, and it forwards what it answers.
# A rollback waits this long once the stable servers that send the candidate nothing are out.
ROLLBACK_DRAIN_SECONDS = 10.0
# Stable requests an interval needs to be its own reference; fewer (at a high canary weight)
# and the last interval that had them is the reference.
MIN_REFERENCE_REQUESTS = 20


@dataclass(frozen=True)
class Traffic:
    """What the release runs: the stable version's servers, and the other version's, with how
    the stable servers share requests with it."""

    stable: Ref
    candidate: Ref | None = None
    mode: Literal["none", "split", "mirror"] = "none"
    weight: int = 0
    pin_local: str = "stable"
    pin_peer: str = "canary"


@dataclass
class Step:
    status: dict[str, Any]
    traffic: Traffic
    events: list[Event] = field(default_factory=list)
    recheck: float | None = None

    @property
    def active(self) -> bool:
        return self.status.get("phase") in ACTIVE


def ref(uri: str, digest: str, version: int | None) -> Ref:
    return {"uri": uri, "digest": digest, "version": version}


def label(r: Ref | None) -> str:
    if not r:
        return "none"
    return f"version {r['version']}" if r.get("version") is not None else str(r["digest"])[:19]


def traffic_of(spec: RolloutSpec, state: dict[str, Any]) -> Traffic:
    """The traffic a rollout state asks for."""
    stable = state["stable"]
    candidate = state.get("candidate")
    phase = state.get("phase")
    if candidate is None or phase not in ACTIVE:
        return Traffic(stable=stable)
    if phase == "Promoting":
        # The stable servers roll to the new version; until the last old one is gone, the old
        # ones keep sending their share to the candidate's servers, which stay meanwhile.
        return Traffic(stable=candidate, candidate=candidate)
    if phase == "RollingBack":
        # The stable servers roll to sending the candidate nothing; its servers stay until the
        # last stable server that still forwards is gone, so no forwarded request meets a
        # server on its way out.
        return Traffic(stable=stable, candidate=candidate)
    if phase == "Experiment":
        return Traffic(stable, candidate, "split", int(state.get("weight", 0)), "a", "b")
    if state.get("strategy") == "Shadow":
        return Traffic(stable, candidate, "mirror", spec.shadow.percent, "stable", "shadow")
    return Traffic(stable, candidate, "split", int(state.get("weight", 0)), "stable", "canary")


def traffic_status(state: dict[str, Any]) -> list[dict[str, Any]]:
    """status.traffic: who answers, how much."""
    stable, candidate, phase = state["stable"], state.get("candidate"), state.get("phase")
    weight = int(state.get("weight", 0))

    def target(r: Ref, w: int, role: str) -> dict[str, Any]:
        return {"version": r.get("version"), "digest": r.get("digest"), "weight": w, "role": role}

    if candidate is None or phase not in ACTIVE or phase in ("Promoting", "RollingBack"):
        return [target(candidate if phase == "Promoting" and candidate else stable, 100, "stable")]
    if phase == "Experiment":
        return [target(stable, 100 - weight, "a"), target(candidate, weight, "b")]
    if state.get("strategy") == "Shadow":
        return [target(stable, 100, "stable"), target(candidate, 0, "shadow")]
    return [target(stable, 100 - weight, "stable"), target(candidate, weight, "canary")]


def _seconds_since(stamp: str | None, now: dt.datetime) -> float:
    if not stamp:
        return 0.0
    return (now - dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()


def advance(
    spec: RolloutSpec,
    previous: dict[str, Any] | None,
    target: Ref,
    experiment: Ref | None,
    snapshot: tm.Snapshot | None,
    in_effect: bool,
    now: dt.datetime,
) -> Step:
    """One look at a rollout. `target` is the version the ModelService should serve (its
    model, resolved); `experiment` variant b; `snapshot` the stable servers' cumulative figures
    (None when unread); `in_effect` whether the release of the current state is rolled out."""
    stamp = now.isoformat().replace("+00:00", "Z")
    state: dict[str, Any] = dict(previous or {})
    strategy = spec.strategy
    events: list[Event] = []
    stable = state.get("stable")
    if stable is None or strategy == "Immediate":
        state = {
            "strategy": strategy,
            "phase": "Stable",
            "stable": target,
            "weight": 0,
            "rolledBack": state.get("rolledBack"),
        }
        if strategy == "Experiment" and experiment is not None:
            return _experiment(spec, state, experiment, snapshot, in_effect, stamp, events, now)
        return _step(spec, state, events)
    state["strategy"] = strategy
    if strategy == "Experiment":
        state["stable"] = target
        if experiment is None:
            state.update(phase="Stable", candidate=None, weight=0)
            return _step(spec, state, events)
        return _experiment(spec, state, experiment, snapshot, in_effect, stamp, events, now)
    candidate = state.get("candidate")
    phase = state.get("phase")
    if phase == "Experiment":
        state.update(phase="Stable", candidate=None, weight=0)
        candidate = None
    if phase == "RollingBack" and candidate is not None:
        if not in_effect:
            return _step(spec, state, events, WAIT_SECONDS)
        state["stepStartedAt"] = state.get("stepStartedAt") or stamp
        left = ROLLBACK_DRAIN_SECONDS - _seconds_since(state["stepStartedAt"], now)
        if left > 0:
            return _step(spec, state, events, left)
        state.update(
            phase="RolledBack",
            candidate=None,
            weight=0,
            message=f"{label(candidate)} rolled back {state.get('rollbackReason') or ''}",
            rollbackReason=None,
            stepStartedAt=None,
        )
        events.append(("Warning", "RolledBack", state["message"]))
        return _step(spec, state, events)
    if phase == "Promoting" and candidate is not None:
        if in_effect:
            state.update(
                phase="Promoted",
                stable=candidate,
                candidate=None,
                weight=0,
                message=f"{label(candidate)} is the stable version",
            )
            events.append(("Normal", "Promoted", state["message"]))
            return _step(spec, state, events)
        return _step(spec, state, events, WAIT_SECONDS)
    if target["digest"] == stable["digest"]:
        if candidate is not None:
            state.update(
                phase="Stable",
                candidate=None,
                weight=0,
                message=f"the model is {label(stable)} again; the rollout of "
                f"{label(candidate)} stopped",
            )
            events.append(("Normal", "RolloutStopped", state["message"]))
        return _step(spec, state, events)
    rolled_back = state.get("rolledBack") or {}
    if candidate is None and rolled_back.get("digest") == target["digest"]:
        return _step(spec, state, events)
    if candidate is None or candidate["digest"] != target["digest"]:
        weight = spec.shadow.percent if strategy == "Shadow" else spec.steps[0]
        state.update(
            phase="Progressing",
            candidate=target,
            step=0,
            weight=weight,
            stepStartedAt=None,
            baseline=None,
            failures=0,
            analysis=None,
            message=f"{strategy.lower()} of {label(target)} against {label(stable)} started",
        )
        events.append(("Normal", "RolloutStarted", f"{state['message']} at {weight}%"))
        if strategy == "Canary" and weight == 100:
            return _promote(spec, state, events)
        return _step(spec, state, events, WAIT_SECONDS)
    if phase == "Paused":
        if spec.autoPromote or spec.promote == candidate.get("version"):
            return _promote(spec, state, events)
        return _step(spec, state, events)
    return _interval(spec, state, snapshot, in_effect, stamp, events, now)


def _interval(
    spec: RolloutSpec,
    state: dict[str, Any],
    snapshot: tm.Snapshot | None,
    in_effect: bool,
    stamp: str,
    events: list[Event],
    now: dt.datetime,
) -> Step:
    interval = float(spec.stepIntervalSeconds)
    if _late(spec, state, in_effect, stamp, now):
        return _roll_back(
            spec,
            state,
            events,
            f"because its servers were not ready within {spec.progressDeadlineSeconds}s "
            "(spec.rollout.progressDeadlineSeconds)",
        )
    wait = _not_due(interval, state, snapshot, in_effect, stamp, now)
    if wait is not None:
        return _step(spec, state, events, wait)
    assert snapshot is not None
    shadow = state["strategy"] == "Shadow"
    d = tm.delta(snapshot, state["baseline"])
    verdict = judge(spec, d, state.get("reference"), shadow)
    state["analysis"] = {**verdict, "at": stamp}
    if verdict["passed"] is None:
        state["message"] = verdict["message"]
        return _step(spec, state, events, WAIT_SECONDS)
    if verdict.get("reference") is not None:
        state["reference"] = verdict["reference"]
    if not verdict["passed"]:
        failures = int(state.get("failures", 0)) + 1
        state["failures"] = failures
        if failures >= spec.analysis.failureThreshold:
            return _roll_back(
                spec, state, events, f"after {failures} failed interval(s): {verdict['message']}"
            )
        state.update(
            baseline=snapshot,
            stepStartedAt=stamp,
            message=f"interval failed ({failures}/{spec.analysis.failureThreshold}): "
            f"{verdict['message']}",
        )
        events.append(("Warning", "AnalysisFailed", state["message"]))
        return _step(spec, state, events, interval)
    state["failures"] = 0
    step = int(state.get("step", 0)) + 1
    if not shadow and step < len(spec.steps) and spec.steps[step] < 100:
        state.update(
            step=step,
            weight=spec.steps[step],
            baseline=None,
            stepStartedAt=None,
            message=f"step {step} passed ({verdict['message']}); "
            f"{label(state['candidate'])} now answers {spec.steps[step]}%",
        )
        events.append(("Normal", "RolloutStep", state["message"]))
        return _step(spec, state, events, WAIT_SECONDS)
    state["step"] = min(step, len(spec.steps) - 1)
    if spec.autoPromote or spec.promote == state["candidate"].get("version"):
        events.append(("Normal", "AnalysisPassed", verdict["message"]))
        return _promote(spec, state, events)
    state.update(
        phase="Paused",
        baseline=None,
        stepStartedAt=None,
        message=f"every step passed; waiting for spec.rollout.promote to be "
        f"{state['candidate'].get('version')} (autoPromote is false)",
    )
    events.append(("Normal", "RolloutPaused", state["message"]))
    return _step(spec, state, events)


def _roll_back(spec: RolloutSpec, state: dict[str, Any], events: list[Event], why: str) -> Step:
    """Stop sending the candidate requests; it is rolled back (RolledBack, its servers gone)
    once the stable servers that send it none are rolled out."""
    candidate = state["candidate"]
    state.update(
        phase="RollingBack",
        weight=0,
        rolledBack=candidate,
        rollbackReason=why,
        baseline=None,
        stepStartedAt=None,
        waitingSince=None,
        message=f"rolling back {label(candidate)} {why}",
    )
    events.append(("Warning", "RollingBack", state["message"]))
    return _step(spec, state, events, WAIT_SECONDS)


def _late(
    spec: RolloutSpec, state: dict[str, Any], in_effect: bool, stamp: str, now: dt.datetime
) -> bool:
    """Whether the current step's release has been waited for longer than the deadline (a
    version whose servers never become ready)."""
    if in_effect:
        state["waitingSince"] = None
        return False
    if not state.get("waitingSince"):
        state["waitingSince"] = stamp
    return _seconds_since(state["waitingSince"], now) > spec.progressDeadlineSeconds


def _not_due(
    interval: float,
    state: dict[str, Any],
    snapshot: tm.Snapshot | None,
    in_effect: bool,
    stamp: str,
    now: dt.datetime,
) -> float | None:
    """How long until the current interval can be judged, or None when it can be now. An
    interval begins (its baseline taken) at the first look once its release is in effect."""
    if not in_effect or snapshot is None:
        return WAIT_SECONDS
    if state.get("baseline") is None or not state.get("stepStartedAt"):
        state.update(baseline=snapshot, stepStartedAt=stamp)
        return interval
    elapsed = _seconds_since(state["stepStartedAt"], now)
    return interval - elapsed if elapsed < interval else None


def _step(
    spec: RolloutSpec, state: dict[str, Any], events: list[Event], recheck: float | None = None
) -> Step:
    return Step(_clean(state), traffic_of(spec, state), events, recheck)


def _promote(spec: RolloutSpec, state: dict[str, Any], events: list[Event]) -> Step:
    state.update(
        phase="Promoting",
        weight=100,
        baseline=None,
        stepStartedAt=None,
        message=f"promoting {label(state['candidate'])}: the stable servers roll to it",
    )
    events.append(("Normal", "Promoting", state["message"]))
    return _step(spec, state, events, WAIT_SECONDS)


def _experiment(
    spec: RolloutSpec,
    state: dict[str, Any],
    experiment: Ref,
    snapshot: tm.Snapshot | None,
    in_effect: bool,
    stamp: str,
    events: list[Event],
    now: dt.datetime,
) -> Step:
    assert spec.experiment is not None
    weight = spec.experiment.weight
    candidate = state.get("candidate")
    if (
        state.get("phase") != "Experiment"
        or candidate is None
        or candidate["digest"] != experiment["digest"]
        or state.get("weight") != weight
    ):
        state.update(
            phase="Experiment",
            candidate=experiment,
            weight=weight,
            baseline=None,
            stepStartedAt=None,
            analysis=None,
            message=f"experiment: a = {label(state['stable'])} ({100 - weight}%), "
            f"b = {label(experiment)} ({weight}%)",
        )
        events.append(("Normal", "ExperimentStarted", state["message"]))
        return _step(spec, state, events, WAIT_SECONDS)
    interval = float(spec.stepIntervalSeconds)
    if _late(spec, state, in_effect, stamp, now):
        return _roll_back(
            spec,
            state,
            events,
            f"because its servers were not ready within {spec.progressDeadlineSeconds}s "
            "(spec.rollout.progressDeadlineSeconds)",
        )
    wait = _not_due(interval, state, snapshot, in_effect, stamp, now)
    if wait is not None:
        return _step(spec, state, events, wait)
    assert snapshot is not None
    # Per-variant figures of the interval just ended (cumulative since the experiment began
    # are the servers' own counters).
    d = tm.delta(snapshot, state["baseline"])
    pct = spec.analysis.latencyPercentile
    state["analysis"] = {
        "a": tm.figures(d["stable"], pct),
        "b": tm.figures(d["candidate"], pct),
        "at": stamp,
    }
    state.update(baseline=snapshot, stepStartedAt=stamp)
    return _step(spec, state, events, interval)


def judge(
    spec: RolloutSpec, d: tm.Snapshot, reference: dict[str, Any] | None, shadow: bool
) -> dict[str, Any]:
    """An interval's verdict: passed True/False, or None (too few requests yet), with the
    figures of both sides and a message naming what decided it."""
    a = spec.analysis
    pct = a.latencyPercentile
    new = tm.figures(d["candidate"], pct)
    if shadow:
        new.update(tm.comparison(d["shadow"]))
    stable = tm.figures(d["stable"], pct)
    out: dict[str, Any] = {"stable": stable, "shadow" if shadow else "canary": new}
    if stable["requests"] >= MIN_REFERENCE_REQUESTS:
        out["reference"] = stable
    ref_figures = out.get("reference") or reference or stable
    if new["requests"] < spec.minRequests:
        return {
            **out,
            "passed": None,
            "message": f"waiting for requests: the new version answered {new['requests']} "
            f"of the {spec.minRequests} an interval needs",
        }
    problems = []
    base_errors = ref_figures.get("errorRate") or 0.0
    if (new["errorRate"] or 0.0) > base_errors + a.maxErrorRateIncrease:
        problems.append(
            f"error rate {new['errorRate']:.4f} > {base_errors:.4f} + {a.maxErrorRateIncrease}"
        )
    key = f"p{pct}Ms"
    if new.get(key) is not None and ref_figures.get(key) is not None:
        bound = ref_figures[key] * a.maxLatencyRatio + a.latencySlackMs
        if new[key] > bound:
            problems.append(f"p{pct} {new[key]:.2f} ms > {bound:.2f} ms")
    if shadow:
        sh = spec.shadow
        if new.get("comparedRows", 0) == 0:
            problems.append("no answer of the shadow could be compared")
        elif "agreement" in new and new["agreement"] < sh.minAgreement:
            problems.append(f"agreement {new['agreement']:.4f} < {sh.minAgreement}")
        elif (
            sh.maxMeanAbsoluteError is not None
            and "meanAbsoluteError" in new
            and new["meanAbsoluteError"] > sh.maxMeanAbsoluteError
        ):
            problems.append(
                f"mean absolute error {new['meanAbsoluteError']:.4g} > {sh.maxMeanAbsoluteError}"
            )
    if problems:
        return {**out, "passed": False, "message": "; ".join(problems)}
    summary = (
        f"{new['requests']} requests, error rate {new['errorRate'] or 0:.4f}, "
        f"p{pct} {new.get(key)} ms"
    )
    if shadow and "agreement" in new:
        summary += f", agreement {new['agreement']:.4f}"
    elif shadow and "meanAbsoluteError" in new:
        summary += f", mean absolute error {new['meanAbsoluteError']:.4g}"
    return {**out, "passed": True, "message": summary}


def _clean(state: dict[str, Any]) -> dict[str, Any]:
    """The state as status.rollout keeps it; a weight only while a rollout shares traffic (the
    Canary column of `kubectl get msvc` is blank otherwise)."""
    out = {k: v for k, v in state.items() if v is not None}
    if out.get("phase") not in ACTIVE:
        out.pop("weight", None)
    return out


def conditions(state: dict[str, Any]) -> list[tuple[str, bool, str, str]]:
    """RolloutProgressing, RolloutDegraded and RolledBack from a rollout state."""
    phase = state.get("phase") or "Stable"
    message = state.get("message") or ""
    progressing = phase in ("Progressing", "Paused", "Promoting", "RollingBack")
    failures = int(state.get("failures", 0))
    return [
        (
            "RolloutProgressing",
            progressing,
            phase if progressing else "NoRollout",
            message if progressing else "",
        ),
        (
            "RolloutDegraded",
            progressing and failures > 0,
            "AnalysisFailed" if progressing and failures > 0 else "AnalysisHealthy",
            message if progressing and failures > 0 else "",
        ),
        (
            "RolledBack",
            phase == "RolledBack",
            "RolledBack" if phase == "RolledBack" else "NotRolledBack",
            message if phase == "RolledBack" else "",
        ),
    ]
