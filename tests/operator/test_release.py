"""Backoff and status of releases that fail to apply (pure logic)."""

import pytest

from modelfactory_operator.logic import conditions as cond
from modelfactory_operator.logic import release
from modelfactory_operator.logic.plans import Decision

pytestmark = pytest.mark.unit

FULL = 'Service "a" is invalid: spec.clusterIPs: failed to allocate a serviceIP: range is full'


def test_delays_grow_exponentially_and_are_capped() -> None:
    delays = [release.retry_delay(n, 5, 300) for n in range(1, 10)]
    assert delays[:4] == [5, 10, 20, 40]
    assert max(delays) == 300 and delays == sorted(delays)
    assert release.retry_delay(10_000, 5, 300) == 300


def test_the_failed_plan_waits_and_a_new_plan_goes_at_once() -> None:
    first = release.record_failure(None, "h1", FULL, now=100.0, base=5, cap=300)
    assert first.attempts == 1 and first.retry_at == 105.0
    assert not release.may_apply(first, "h1", 104.9)
    assert release.may_apply(first, "h1", 105.0)
    assert release.may_apply(first, "h2", 100.0)
    second = release.record_failure(first, "h1", FULL, now=105.0, base=5, cap=300)
    assert second.attempts == 2 and second.retry_at == 115.0
    other_plan = release.record_failure(second, "h2", FULL, now=106.0, base=5, cap=300)
    assert other_plan.attempts == 1
    assert release.may_apply(None, "h1", 0.0)


def test_one_event_per_distinct_error() -> None:
    decision = Decision(status={"conditions": []}, launch=True)
    first = release.record_failure(None, "h", FULL + " (10.0.0.254)", 0.0, 5, 300)
    d1 = release.with_failure(decision, first, None, 0.0, 3, "t")
    assert not d1.launch
    assert [e[:2] for e in d1.events] == [("Warning", "ApplyFailed")]
    c = cond.get(d1.status["conditions"], release.CONDITION)
    assert c and c["status"] == "False" and "range is full" in c["message"]
    assert "attempt 1" in c["message"] and c["observedGeneration"] == 3
    # The same error again (its numbers differ): the condition moves on, no new Event.
    again = release.record_failure(first, "h", FULL + " (10.0.0.17)", 5.0, 5, 300)
    d2 = release.with_failure(Decision(status=d1.status), again, first, 5.0, 3, "t")
    assert d2.events == [] and "attempt 2" in str(d2.status["conditions"])
    # Another error: a new Event.
    other = release.record_failure(again, "h", "exceeded quota: services=0", 15.0, 5, 300)
    d3 = release.with_failure(Decision(status=d2.status), other, again, 15.0, 3, "t")
    assert len(d3.events) == 1 and "exceeded quota" in d3.events[0][2]


def test_success_after_failure_says_so_once() -> None:
    failed = release.with_failure(
        Decision(status={}), release.record_failure(None, "h", FULL, 0.0, 5, 300), None, 0.0, 1, "t"
    )
    ok = release.with_success(Decision(status=failed.status), 4, 1, "t2")
    c = cond.get(ok.status["conditions"], release.CONDITION)
    assert c and c["status"] == "True" and c["message"] == "revision 4"
    assert [e[1] for e in ok.events] == ["Applied"]
    assert release.with_success(Decision(status=ok.status), 5, 1, "t3").events == []


def test_removal_gives_up_after_the_limit() -> None:
    assert [release.removal_gives_up(r, 3) for r in range(4)] == [False, False, True, True]
    assert release.removal_delay(0) == 1 and release.removal_delay(20) == 30


def test_helm_words_for_the_same_failure_are_one_error() -> None:
    quota = (
        'horizontalpodautoscalers.autoscaling "a" is forbidden: exceeded quota: q, '
        "requested: count/horizontalpodautoscalers.autoscaling=1"
    )
    install = f"helm upgrade failed: Error: 1 error occurred:\n\t* {quota}"
    upgrade = f"helm upgrade failed: Error: UPGRADE FAILED: failed to create resource: {quota}"
    assert release.error_signature(install) == release.error_signature(upgrade)
    assert release.error_signature(install) != release.error_signature(FULL)


def test_a_chart_digest_follows_what_the_chart_renders() -> None:
    chart = {
        "Chart.yaml": b"name: model-service\nversion: 0.1.0\n",
        "values.yaml": b"replicas: 1\n",
        "values.schema.json": b"{}",
        "templates/deployment.yaml": b"kind: Deployment\n",
        "README.md": b"docs",
        "ci/test-values.yaml": b"x: 1\n",
    }
    digest = release.chart_digest(chart)
    assert release.chart_digest({**chart, "README.md": b"other docs"}) == digest
    assert release.chart_digest({**chart, "ci/test-values.yaml": b"x: 2\n"}) == digest
    assert release.chart_digest({**chart, "templates/deployment.yaml": b"kind: X\n"}) != digest
    assert release.chart_digest({**chart, "templates/pdb.yaml": b"kind: PDB\n"}) != digest
    assert release.chart_digest({**chart, "values.yaml": b"replicas: 2\n"}) != digest
    # Content is bound to its path: moving content between files is a change.
    swapped = {**chart, "values.yaml": b"{}", "values.schema.json": b"replicas: 1\n"}
    assert release.chart_digest(swapped) != digest


def test_a_serving_plan_hash_covers_its_chart() -> None:
    from modelfactory_api.runtime import ServingRuntimeConfig
    from modelfactory_operator.logic.plans import ServingPlan, config_hash

    runtime = ServingRuntimeConfig(model_name="m", model_uri="s3://b/m/1", model_digest="sha256:x")
    plan = ServingPlan("ns", "m", "uid", "msvc-m", 1, runtime, {"replicas": 1})
    assert plan.hash == config_hash({"replicas": 1})  # no chart (the local launcher)
    a = ServingPlan("ns", "m", "uid", "msvc-m", 1, runtime, {"replicas": 1}, chart_digest="a")
    b = ServingPlan("ns", "m", "uid", "msvc-m", 1, runtime, {"replicas": 1}, chart_digest="b")
    assert len({plan.hash, a.hash, b.hash}) == 3
