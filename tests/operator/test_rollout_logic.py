"""Rollout decisions, dict in, dict out: steps, analysis, promotion, rollback, shadow,
experiments, and a restart in the middle (the state is all in status.rollout)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from modelfactory_api.modelservice import RolloutSpec
from modelfactory_operator.logic import kinds, rollout
from modelfactory_operator.logic import traffic_metrics as tm

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def every_state_is_what_the_crd_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rollout state a test reaches is checked against the ModelService's status model:
    a field the CRD does not declare would be pruned by the API server without a word."""
    advance = rollout.advance

    def checked(*args: Any, **kwargs: Any) -> rollout.Step:
        step = advance(*args, **kwargs)
        traffic = rollout.traffic_status(step.status)
        kinds.checked(kinds.MODELSERVICE, {"rollout": step.status, "traffic": traffic})
        return step

    monkeypatch.setattr(rollout, "advance", checked)


V1 = rollout.ref("file:///m/1", "sha256:" + "1" * 64, 1)
V2 = rollout.ref("file:///m/2", "sha256:" + "2" * 64, 2)
V3 = rollout.ref("file:///m/3", "sha256:" + "3" * 64, 3)
T0 = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def part(requests: float, errors: float = 0, fast: float | None = None, **extra: Any) -> dict:
    """Cumulative figures: every request under 2 ms unless `fast` says how many are."""
    fast = requests if fast is None else fast
    return {
        "requests": requests,
        "errors": errors,
        "buckets": {"0.002": fast, "0.1": requests, "+Inf": requests},
        "rows": 0.0,
        "agreeing": 0.0,
        "absError": 0.0,
        **extra,
    }


def snap(stable: dict, candidate: dict | None = None, shadow: dict | None = None) -> tm.Snapshot:
    return {"stable": stable, "candidate": candidate or part(0), "shadow": shadow or part(0)}


def canary(**kw: Any) -> RolloutSpec:
    return RolloutSpec.model_validate(
        {
            "strategy": "Canary",
            "steps": [10, 50, 100],
            "stepIntervalSeconds": 30,
            "minRequests": 20,
            **kw,
        }
    )


def started(spec: RolloutSpec) -> dict[str, Any]:
    first = rollout.advance(spec, None, V1, None, None, False, at(0))
    assert first.status["phase"] == "Stable" and first.traffic.candidate is None
    step = rollout.advance(spec, first.status, V2, None, None, True, at(1))
    assert step.status["phase"] == "Progressing"
    assert [e[1] for e in step.events] == ["RolloutStarted"]
    return step.status


def run_interval(
    spec: RolloutSpec,
    state: dict,
    begin: float,
    before: tm.Snapshot,
    after: tm.Snapshot,
    target: rollout.Ref = V2,
    experiment: rollout.Ref | None = None,
) -> rollout.Step:
    """The step's release is in effect at `begin`; its interval is judged at its end."""
    baseline = rollout.advance(spec, state, target, experiment, before, True, at(begin))
    assert baseline.status["baseline"] == before
    waiting = rollout.advance(
        spec, baseline.status, target, experiment, after, True, at(begin + 10)
    )
    assert waiting.status == baseline.status and waiting.recheck == pytest.approx(20)
    return rollout.advance(
        spec, baseline.status, target, experiment, after, True, at(begin + spec.stepIntervalSeconds)
    )


def test_immediate_follows_the_model_at_once() -> None:
    spec = RolloutSpec()
    first = rollout.advance(spec, None, V1, None, None, False, at(0))
    second = rollout.advance(spec, first.status, V2, None, None, True, at(1))
    assert second.traffic == rollout.Traffic(stable=V2)
    assert rollout.traffic_status(second.status) == [
        {"version": 2, "digest": V2["digest"], "weight": 100, "role": "stable"}
    ]


def test_a_good_canary_walks_every_step_and_is_promoted() -> None:
    spec = canary()
    state = started(spec)
    assert rollout.traffic_of(spec, state) == rollout.Traffic(V1, V2, "split", 10)
    # Not in effect yet (the stable servers still roll): nothing is measured.
    wait = rollout.advance(spec, state, V2, None, snap(part(5)), False, at(2))
    assert wait.status.get("baseline") is None and wait.recheck == rollout.WAIT_SECONDS

    passed = run_interval(spec, state, 5, snap(part(100), part(0)), snap(part(190), part(10)))
    assert passed.status["analysis"]["passed"] is None  # 10 canary requests of the 20 needed
    passed = rollout.advance(spec, passed.status, V2, None, snap(part(280), part(20)), True, at(40))
    assert passed.status["step"] == 1 and passed.status["weight"] == 50
    assert [e[1] for e in passed.events] == ["RolloutStep"]
    assert passed.traffic.weight == 50

    second = run_interval(
        spec, passed.status, 50, snap(part(10), part(0)), snap(part(60), part(50))
    )
    assert second.status["phase"] == "Promoting"
    assert second.traffic == rollout.Traffic(stable=V2, candidate=V2)
    assert [e[1] for e in second.events] == ["AnalysisPassed", "Promoting"]
    assert rollout.traffic_status(second.status)[0]["version"] == 2

    rolling = rollout.advance(spec, second.status, V2, None, None, False, at(90))
    assert rolling.status["phase"] == "Promoting"
    done = rollout.advance(spec, second.status, V2, None, None, True, at(95))
    assert done.status["phase"] == "Promoted" and done.status["stable"] == V2
    assert "candidate" not in done.status and done.traffic == rollout.Traffic(stable=V2)
    conds = {c[0]: c for c in rollout.conditions(done.status)}
    assert conds["RolloutProgressing"][1] is False and conds["RolledBack"][1] is False


def test_a_failing_canary_is_rolled_back_after_the_threshold() -> None:
    spec = canary(analysis={"failureThreshold": 2})
    state = started(spec)
    failed = run_interval(
        spec, state, 5, snap(part(0), part(0)), snap(part(90), part(30, errors=15))
    )
    assert failed.status["failures"] == 1 and failed.status["phase"] == "Progressing"
    assert "error rate 0.5000" in failed.status["message"]
    assert [e[0] for e in failed.events] == ["Warning"]
    assert {c[0]: c[1] for c in rollout.conditions(failed.status)}["RolloutDegraded"] is True
    # The next interval starts from the snapshot the first ended with.
    rolling = rollout.advance(
        spec, failed.status, V2, None, snap(part(180), part(60, errors=30)), True, at(65)
    )
    # First the stable servers stop sending it requests; its servers stay until they have.
    assert rolling.status["phase"] == "RollingBack" and rolling.status["rolledBack"] == V2
    assert rolling.traffic == rollout.Traffic(stable=V1, candidate=V2)
    assert rolling.traffic.mode == "none" and rolling.recheck is not None
    assert [e[1] for e in rolling.events] == ["RollingBack"]
    assert rollout.traffic_status(rolling.status) == [
        {"version": 1, "digest": V1["digest"], "weight": 100, "role": "stable"}
    ]
    assert {c[0]: c[1] for c in rollout.conditions(rolling.status)}["RolledBack"] is False
    waiting = rollout.advance(spec, rolling.status, V2, None, None, False, at(66))
    assert waiting.status["phase"] == "RollingBack" and waiting.traffic == rolling.traffic
    # Rolled out: the replaced stable servers drain (kept-alive connections) before the
    # candidate's servers go.
    draining = rollout.advance(spec, rolling.status, V2, None, None, True, at(67))
    assert draining.status["phase"] == "RollingBack"
    assert draining.recheck == rollout.ROLLBACK_DRAIN_SECONDS
    again = rollout.advance(spec, draining.status, V2, None, None, True, at(78))
    assert again.status["phase"] == "RolledBack" and "error rate" in again.status["message"]
    assert again.status["rolledBack"] == V2 and again.traffic == rollout.Traffic(stable=V1)
    assert [e[1] for e in again.events] == ["RolledBack"]
    assert {c[0]: c[1] for c in rollout.conditions(again.status)}["RolledBack"] is True
    # The same version is not tried again; a new one is.
    same = rollout.advance(spec, again.status, V2, None, None, True, at(70))
    assert same.status["phase"] == "RolledBack" and same.traffic.candidate is None
    fresh = rollout.advance(spec, again.status, V3, None, None, True, at(75))
    assert fresh.status["phase"] == "Progressing" and fresh.status["candidate"] == V3


def test_a_slow_canary_fails_on_latency() -> None:
    spec = canary(analysis={"failureThreshold": 1, "latencySlackMs": 1})
    state = started(spec)
    # The canary's requests all take over 2 ms; the stable's all under.
    out = run_interval(spec, state, 5, snap(part(0), part(0)), snap(part(100), part(30, fast=0)))
    assert out.status["phase"] == "RollingBack"
    assert "p95" in out.status["message"]


def test_the_reference_holds_when_the_stable_side_is_quiet() -> None:
    spec = canary(steps=[50, 100], analysis={"failureThreshold": 1})
    state = started(spec)
    state["reference"] = {"requests": 100, "errorRate": 0.0, "p95Ms": 1.0}
    # Only 5 stable requests (pinned clients): the recorded reference judges the canary.
    out = run_interval(
        spec, state, 5, snap(part(0), part(0)), snap(part(5, errors=0), part(40, errors=8))
    )
    assert out.status["phase"] == "RollingBack"


def test_a_restart_mid_step_neither_skips_nor_repeats() -> None:
    spec = canary()
    state = started(spec)
    first = rollout.advance(spec, state, V2, None, snap(part(0), part(0)), True, at(5))
    # The operator restarts: the state comes back from status, as JSON.
    import json

    restored = json.loads(json.dumps(first.status))
    early = rollout.advance(spec, restored, V2, None, snap(part(50), part(10)), True, at(20))
    assert early.status["step"] == 0 and early.status["baseline"] == first.status["baseline"]
    due = rollout.advance(spec, restored, V2, None, snap(part(90), part(30)), True, at(36))
    assert due.status["step"] == 1
    # Looked at twice after the step advanced: still step 1, waiting for its own interval.
    twice = rollout.advance(spec, due.status, V2, None, snap(part(91), part(31)), True, at(37))
    assert twice.status["step"] == 1 and twice.status["stepStartedAt"]


def test_a_new_model_mid_rollout_restarts_it_and_the_old_model_stops_it() -> None:
    spec = canary()
    state = started(spec)
    third = rollout.advance(spec, state, V3, None, None, True, at(5))
    assert third.status["candidate"] == V3 and third.status["step"] == 0
    back = rollout.advance(spec, third.status, V1, None, None, True, at(6))
    assert back.status["phase"] == "Stable" and back.traffic.candidate is None
    assert [e[1] for e in back.events] == ["RolloutStopped"]


def test_without_auto_promote_it_waits_for_approval() -> None:
    spec = canary(steps=[50, 100], autoPromote=False)
    state = started(spec)
    out = run_interval(spec, state, 5, snap(part(0), part(0)), snap(part(50), part(50)))
    assert out.status["phase"] == "Paused"
    assert out.traffic.weight == 50  # the last weight holds while it waits
    still = rollout.advance(spec, out.status, V2, None, None, True, at(60))
    assert still.status["phase"] == "Paused"
    approved = canary(steps=[50, 100], autoPromote=False, promote=2)
    go = rollout.advance(approved, out.status, V2, None, None, True, at(61))
    assert go.status["phase"] == "Promoting"


def test_shadow_mirrors_and_promotes_on_agreement() -> None:
    spec = RolloutSpec.model_validate(
        {
            "strategy": "Shadow",
            "stepIntervalSeconds": 30,
            "minRequests": 20,
            "shadow": {"percent": 50},
        }
    )
    first = rollout.advance(spec, None, V1, None, None, False, at(0))
    state = rollout.advance(spec, first.status, V2, None, None, True, at(1)).status
    assert rollout.traffic_of(spec, state) == rollout.Traffic(
        V1, V2, "mirror", 50, "stable", "shadow"
    )
    assert [t["role"] for t in rollout.traffic_status(state)] == ["stable", "shadow"]
    shadow = part(0, rows=40.0, agreeing=39.0, compare="labels")
    out = run_interval(spec, state, 5, snap(part(0)), snap(part(80), part(40), shadow))
    assert out.status["phase"] == "Promoting"
    assert out.status["analysis"]["shadow"]["agreement"] == pytest.approx(0.975)


def test_shadow_that_disagrees_is_rolled_back() -> None:
    spec = RolloutSpec.model_validate(
        {
            "strategy": "Shadow",
            "stepIntervalSeconds": 30,
            "minRequests": 20,
            "analysis": {"failureThreshold": 1},
        }
    )
    first = rollout.advance(spec, None, V1, None, None, False, at(0))
    state = rollout.advance(spec, first.status, V2, None, None, True, at(1)).status
    shadow = part(0, rows=40.0, agreeing=20.0, compare="labels")
    out = run_interval(spec, state, 5, snap(part(0)), snap(part(80), part(40), shadow))
    assert out.status["phase"] == "RollingBack" and "agreement 0.5000" in out.status["message"]
    # The servers stop mirroring to the shadow first.
    assert out.traffic.mode == "none" and out.traffic.candidate == V2


def test_experiment_splits_for_good_and_reports_each_variant() -> None:
    spec = RolloutSpec.model_validate(
        {
            "strategy": "Experiment",
            "stepIntervalSeconds": 30,
            "experiment": {"model": {"trainingJob": "t", "version": 2}, "weight": 30},
        }
    )
    first = rollout.advance(spec, None, V1, V2, None, False, at(0))
    assert first.status["phase"] == "Experiment"
    assert first.traffic == rollout.Traffic(V1, V2, "split", 30, "a", "b")
    assert [(t["role"], t["weight"]) for t in rollout.traffic_status(first.status)] == [
        ("a", 70),
        ("b", 30),
    ]
    out = run_interval(
        spec, first.status, 5, snap(part(0), part(0)), snap(part(70), part(30, errors=3)), V1, V2
    )
    assert out.status["phase"] == "Experiment"
    assert out.status["analysis"]["b"]["errorRate"] == pytest.approx(0.1)
    assert out.status["analysis"]["a"]["requests"] == 70


def test_quantiles_and_deltas() -> None:
    buckets = {"0.001": 50.0, "0.002": 90.0, "0.005": 100.0, "+Inf": 100.0}
    assert tm.quantile(buckets, 0.5) == pytest.approx(0.001)
    assert tm.quantile(buckets, 0.95) == pytest.approx(0.0035)
    assert tm.quantile({}, 0.95) is None
    assert tm.quantile({"0.001": 0.0, "+Inf": 10.0}, 0.5) == 0.001
    now = snap(part(10))
    then = snap(part(50))  # a server restarted: counts start again from zero
    assert tm.delta(now, then)["stable"]["requests"] == 10


def test_parse_reads_every_side() -> None:
    text = "\n".join(
        [
            "# TYPE modelfactory_inference_requests_total counter",
            'modelfactory_inference_requests_total{model="m",version="1",track="stable",'
            'outcome="ok"} 90',
            'modelfactory_inference_requests_total{model="m",version="1",track="stable",'
            'outcome="server_error"} 10',
            'modelfactory_inference_requests_total{model="m",version="2",track="candidate",'
            'outcome="ok"} 8',
            "# TYPE modelfactory_inference_duration_seconds histogram",
            'modelfactory_inference_duration_seconds_bucket{model="m",version="2",'
            'track="candidate",le="0.001"} 8',
            'modelfactory_inference_duration_seconds_bucket{model="m",version="2",'
            'track="candidate",le="+Inf"} 8',
            "# TYPE modelfactory_routed_requests_total counter",
            'modelfactory_routed_requests_total{model="m",version="2",outcome="ok"} 8',
            'modelfactory_routed_requests_total{model="m",version="2",outcome="no_answer"} 2',
            'modelfactory_routed_requests_total{model="m",version="2",outcome="unreachable"} 4',
            "# TYPE modelfactory_shadow_rows_total counter",
            'modelfactory_shadow_rows_total{model="m",version="2",result="compared"} 5',
            'modelfactory_shadow_rows_total{model="m",version="2",result="agreeing"} 4',
            "",
        ]
    )
    s = tm.parse(text)
    assert s["stable"]["requests"] == 100 and s["stable"]["errors"] == 10
    # Its own 8 answers, and the 2 requests that got none; the unreachable ones were answered
    # by the stable version.
    assert s["candidate"]["requests"] == 10 and s["candidate"]["errors"] == 2
    assert s["candidate"]["buckets"]["+Inf"] == 8
    assert s["shadow"]["rows"] == 5 and s["shadow"]["agreeing"] == 4
    assert s["shadow"]["compare"] == "labels"


@pytest.mark.parametrize("steps", [[10, 5, 100], [10, 50], [0, 100], [10, 10, 100]])
def test_steps_must_increase_to_100(steps: list[int]) -> None:
    with pytest.raises(ValueError):
        RolloutSpec.model_validate({"strategy": "Canary", "steps": steps})


def test_a_canary_whose_servers_never_become_ready_is_rolled_back_at_the_deadline() -> None:
    spec = canary(progressDeadlineSeconds=60)
    state = started(spec)
    waiting = rollout.advance(spec, state, V2, None, None, False, at(2))
    assert waiting.status["phase"] == "Progressing" and waiting.status["waitingSince"]
    still = rollout.advance(spec, waiting.status, V2, None, None, False, at(61))
    assert still.status["phase"] == "Progressing"
    late = rollout.advance(spec, still.status, V2, None, None, False, at(63))
    assert late.status["phase"] == "RollingBack"
    assert "not ready within 60s" in late.status["message"]
    assert [e[1] for e in late.events] == ["RollingBack"]
    draining = rollout.advance(spec, late.status, V2, None, None, True, at(65))
    gone = rollout.advance(spec, draining.status, V2, None, None, True, at(80))
    assert gone.status["phase"] == "RolledBack" and "not ready within 60s" in gone.status["message"]
    assert gone.traffic == rollout.Traffic(stable=V1)
    # Ready in time: the wait ends and does not count against the next step.
    ok = rollout.advance(spec, waiting.status, V2, None, snap(part(0)), True, at(50))
    assert ok.status["phase"] == "Progressing" and "waitingSince" not in ok.status
