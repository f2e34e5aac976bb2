"""The promotion gate and a person's promotion, on statuses as dicts."""

from typing import Any

import pytest

from modelfactory_api.trainingjob import PromotionSpec, TrainingResult
from modelfactory_operator.logic import promotion
from modelfactory_operator.logic import trainingjob as tj
from modelfactory_operator.logic.plans import RunObservation
from tests.operator.conftest import TJ_BODY as BODY
from tests.operator.conftest import tj_decide as decide
from tests.operator.conftest import tj_plan as plan

pytestmark = pytest.mark.unit


def result(
    score: float,
    baseline: float | None = None,
    version: int = 2,
    message: str | None = None,
    run_id: str = "r",
) -> TrainingResult:
    raw: dict[str, Any] = {
        "runId": run_id,
        "succeeded": True,
        "metric": "accuracy",
        "score": score,
        "trigger": "drift",
        "dataDigest": "sha256:" + "d" * 64,
        "metrics": {"test_accuracy": score},
        "model": {
            "version": version,
            "uri": f"s3://models/iris/{version}",
            "digest": "sha256:" + "a" * 64,
        },
    }
    if baseline is not None or message:
        raw["baseline"] = {"version": version - 1, "score": baseline, "message": message}
    return TrainingResult.model_validate(raw)


def test_the_gate_promotes_better_and_rejects_worse() -> None:
    gate = PromotionSpec(minImprovement=0.01)
    assert promotion.judge(result(0.95, 0.90), gate)[0] == "Promoted"
    phase, message = promotion.judge(result(0.905, 0.90), gate)
    assert phase == "Rejected" and "0.905" in message and "0.9 " in message
    assert promotion.judge(result(0.90, None), gate)[0] == "Promoted"  # first
    assert promotion.judge(result(0.9, 0.9), PromotionSpec())[0] == "Promoted"
    unscorable = promotion.judge(result(0.9, None, message="columns differ"), gate)
    assert unscorable[0] == "Rejected" and "columns differ" in unscorable[1]
    # Scores are scorers' values (losses negated): higher is better whatever the metric.
    assert promotion.judge(result(-0.3, -0.2), PromotionSpec())[0] == "Rejected"
    assert promotion.judge(result(0.95, 0.9), PromotionSpec(auto=False))[0] == ("Candidate")


def status_with(*phases: str) -> dict[str, Any]:
    history = [
        {"version": i + 1, "uri": f"s3://m/{i + 1}", "digest": "sha256:" + "a" * 64, "phase": p}
        for i, p in enumerate(phases)
    ]
    promoted = next(h for h in history if h["phase"] == "Promoted")
    return {
        "history": history,
        "model": {k: promoted[k] for k in ("version", "uri", "digest")},
        "promotedVersion": promoted["version"],
    }


def test_a_person_promotes_or_rolls_back_once_per_annotation_value() -> None:
    status = status_with("Retired", "Promoted", "Rejected")
    events = promotion.manual(status, "3", "2026-01-01T00:00:00Z")
    assert events[0][1] == "Promoted"
    assert status["model"]["version"] == 3 and status["promotedVersion"] == 3
    assert [h["phase"] for h in status["history"]] == ["Retired", "Retired", "Promoted"]
    assert status["history"][2]["decidedBy"] == promotion.BY_ANNOTATION
    assert status["promotion"]["annotation"] == "3"
    # The same value is not acted on again (the gate may have promoted another since).
    promotion.promote(status, 2, promotion.BY_GATE, "", "t")
    assert promotion.manual(status, "3", "t") == [] and status["promotedVersion"] == 2
    bad = promotion.manual(status, "9", "t")
    assert bad[0][0] == "Warning" and "not in the history" in bad[0][2]
    assert promotion.manual(status, "latest", "t")[0][1] == "PromoteFailed"


def succeeded(p: tj.RunPlan, score: float, baseline: float | None, version: int) -> Any:
    return result(score, baseline, version, run_id=p.run_id).model_dump(exclude_none=True)


def test_a_rejected_version_is_recorded_but_not_served() -> None:
    p1 = plan()
    first = decide(
        {"runId": p1.run_id, "result": succeeded(p1, 0.9, None, 1)}, RunObservation("succeeded")
    ).status
    assert first["model"]["version"] == 1 and first["promotedVersion"] == 1
    assert first["history"][0]["phase"] == "Promoted"
    # A drift trigger: a new run compared with version 1.
    body = {
        **BODY,
        "status": {**first, "lastTrigger": {"kind": "drift", "id": "drift-x", "time": "t"}},
    }
    p2 = plan(body)
    assert p2.run_id != p1.run_id and p2.runtime.trigger == "drift"
    assert p2.runtime.baseline is not None and p2.runtime.baseline.version == 1
    worse = {**body["status"], "runId": p2.run_id, "result": succeeded(p2, 0.8, 0.9, 2)}
    d = decide(worse, RunObservation("succeeded"), p2)
    assert d.status["model"]["version"] == 1 and d.status["latestVersion"] == 2
    v2 = d.status["history"][-1]
    assert v2["phase"] == "Rejected" and v2["baselineScore"] == 0.9 and v2["score"] == 0.8
    assert v2["trigger"] == "drift" and v2["dataDigest"].startswith("sha256:")
    assert ("Warning", "Rejected") in [(k, r) for k, r, _ in d.events]
    # Deciding again (the next reconcile) does not decide again.
    again = decide({**d.status, "result": worse["result"]}, RunObservation("succeeded"), p2)
    assert again.events == [] or all(r != "Rejected" for _, r, _ in again.events)


def test_the_run_keeps_its_trigger_and_baseline_once_launched() -> None:
    p1 = plan()
    launched = decide({}, RunObservation("absent"), p1).status
    assert launched["runTrigger"] == "spec" and "runBaseline" not in launched
    body = {
        **BODY,
        "status": {
            **launched,
            "model": {"version": 5, "uri": "s3://m/5", "digest": "sha256:" + "b" * 64},
        },
    }
    # A promotion meanwhile does not change the running run's pod template.
    assert plan(body).runtime.baseline is None
    manual = {
        **BODY,
        "metadata": {**BODY["metadata"], "annotations": {"modelfactory.dev/retrain": "1"}},
        "status": launched,
    }
    assert plan(manual).runtime.trigger == "manual"
