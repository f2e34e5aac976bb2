"""Drift over replicas: windows summed, the verdict turned into status.drift and DataDrift."""

from typing import Any

import pytest

from modelfactory_operator.logic import conditions as cond
from modelfactory_operator.logic import drift

pytestmark = pytest.mark.unit

REPORT = {
    "samples": 1200,
    "sufficient": True,
    "drifted": True,
    "share": 0.5,
    "driftedFeatures": ["x0"],
    "features": [{"name": "x0"}, {"name": "x1"}],
    "prediction": {"name": "prediction", "score": 0.3},
}


def window(
    version: str = "1", samples: int = 600, report: Any = None, enabled: bool = True
) -> dict[str, Any]:
    return {
        "model_name": "m",
        "model_version": version,
        "enabled": enabled,
        "report": report,
        "window": {
            "samples": samples,
            "counts": {"x0": [1, 2, 3], "x1": [4, 5]},
            "prediction_counts": [7, 8],
            "sample": {"x0": [0.5] * 8000},
        },
    }


def test_windows_of_the_served_version_add_up() -> None:
    merged = drift.merge_windows([window(), window(), window(version="2")], "1")
    assert merged is not None
    assert merged["samples"] == 1200 and merged["replicas"] == 2
    assert merged["counts"] == {"x0": [2, 4, 6], "x1": [8, 10]}
    assert merged["prediction_counts"] == [14, 16]
    assert len(merged["sample"]["x0"]) == drift.SAMPLE_LIMIT
    assert drift.merge_windows([window(version="2")], "1") is None


def test_one_replica_uses_its_own_report_several_ask_for_an_evaluation() -> None:
    asked: list[dict[str, Any]] = []

    def evaluate(w: dict[str, Any]) -> dict[str, Any]:
        asked.append(w)
        return REPORT

    one = drift.observe(True, 1, 1, [window(report=REPORT)], evaluate)
    assert one.report == REPORT and asked == []
    two = drift.observe(True, 1, 2, [window(), window()], evaluate)
    assert two.report == REPORT and two.samples == 1200 and two.replicas == 2
    assert asked[0]["counts"]["x0"] == [2, 4, 6]
    assert set(asked[0]) == {"samples", "counts", "prediction_counts", "sample"}


def test_no_report_says_why() -> None:
    assert drift.observe(True, 1, 0, [], None).reason == "NotServing"
    assert drift.observe(True, 1, 1, [], None).reason == "NotMeasured"
    off = drift.observe(True, 1, 1, [{"enabled": False, "reason": "no reference profile"}], None)
    assert off.reason == "NoProfile" and "profile" in off.message


def apply(observation: drift.DriftObservation, before: list[Any] | None = None) -> Any:
    conds = cond.Rewrite(before or [], 1, "2026-01-01T00:00:00Z")
    new: dict[str, Any] = {}
    events = drift.apply(new, conds, observation, 500)
    return new, cond.get(conds.conditions, "DataDrift"), events


def test_condition_and_status() -> None:
    detected = drift.DriftObservation(True, 1, report=REPORT, samples=1200, replicas=2)
    new, c, events = apply(detected)
    assert c["status"] == "True" and c["reason"] == "DriftDetected" and "x0" in c["message"]
    assert new["drift"]["driftedFeatures"] == ["x0"] and new["drift"]["samples"] == 1200
    assert new["drift"]["predictionDrift"] == 0.3 and new["drift"]["replicas"] == 2
    assert events[0][:2] == ("Warning", "DriftDetected")
    calm = {**REPORT, "drifted": False, "driftedFeatures": []}
    _, c2, events2 = apply(drift.DriftObservation(True, 1, report=calm, samples=900), [c])
    assert c2["reason"] == "NoDrift" and events2[0][:2] == ("Normal", "NoDrift")
    few = {"samples": 20, "sufficient": False, "drifted": False}
    _, c3, _ = apply(drift.DriftObservation(True, 1, report=few, samples=20))
    assert (c3["status"], c3["reason"]) == ("Unknown", "InsufficientSamples")
    _, c4, _ = apply(drift.DriftObservation(False))
    assert c4["reason"] == "DriftDisabled"


def test_parse_refuses_what_is_not_a_json_object() -> None:
    assert drift.parse(200, b'{"a": 1}') == {"a": 1}
    assert drift.parse(200, b"[1]") is None and drift.parse(200, b"{") is None
    assert drift.parse(404, b"{}") is None


def test_ready_pods() -> None:
    def pod(name: str, ready: str, phase: str = "Running", deleting: bool = False) -> Any:
        meta: dict[str, Any] = {"name": name}
        if deleting:
            meta["deletionTimestamp"] = "t"
        return {
            "metadata": meta,
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]},
        }

    pods = [
        pod("b", "True"),
        pod("a", "True"),
        pod("c", "False"),
        pod("d", "True", deleting=True),
        pod("e", "True", phase="Pending"),
    ]
    assert drift.ready_pods(pods) == ["a", "b"]


def test_reads_back_off_while_no_replica_answers() -> None:
    assert drift.next_look(30, 0) == 30
    assert drift.next_look(30, 2) == 120
    assert drift.next_look(30, 50) == drift.MAX_LOOK_SECONDS
    assert drift.next_look(600, 3) == 600
