from typing import Any

import pytest

from modelfactory_operator.logic import modelservice as ms
from modelfactory_operator.logic import observe, validate
from modelfactory_operator.logic.plans import ServiceObservation

pytestmark = pytest.mark.unit

BODY: dict[str, Any] = {
    "apiVersion": "modelfactory.dev/v1alpha1",
    "kind": "ModelService",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "u-2", "generation": 1},
    "spec": {"model": {"trainingJob": "iris"}},
}
TJ = {
    "status": {
        "model": {"version": 2, "uri": "file:///m/2", "digest": "sha256:" + "b" * 64},
        "history": [
            {"version": 1, "uri": "file:///m/1", "digest": "sha256:" + "a" * 64},
            {"version": 2, "uri": "file:///m/2", "digest": "sha256:" + "b" * 64},
        ],
    }
}


def spec(**changes: Any) -> Any:
    return validate.modelservice_spec({**BODY["spec"], **changes})


def test_resolves_latest_pinned_or_explains() -> None:
    assert ms.resolve_model(spec(), TJ).version == 2  # type: ignore[union-attr]
    pinned = ms.resolve_model(spec(model={"trainingJob": "iris", "version": 1}), TJ)
    assert pinned.uri == "file:///m/1"  # type: ignore[union-attr]
    missing = ms.resolve_model(spec(model={"trainingJob": "iris", "version": 7}), TJ)
    assert isinstance(missing, ms.Unresolved) and missing.reason == "VersionNotFound"
    assert ms.resolve_model(spec(), None).reason == "TrainingJobNotFound"  # type: ignore[union-attr]
    assert ms.resolve_model(spec(), {"status": {}}).reason == "NoModelYet"  # type: ignore[union-attr]


def test_render_carries_the_model_into_env_and_annotation() -> None:
    model = ms.resolve_model(spec(), TJ)
    plan = ms.render(BODY, spec(), model, "ghcr.io/modelfactory/serving:0.1.0")  # type: ignore[arg-type]
    assert plan.chart_values["modelVersion"] == "2"
    assert plan.chart_values["env"]["MF_MODEL_URI"] == "file:///m/2"
    assert plan.chart_values["env"]["MF_MODEL_NAME"] == "iris"
    assert plan.release == "msvc-iris"


def test_render_carries_admission_settings_to_the_server() -> None:
    model = ms.resolve_model(spec(), TJ)
    env = ms.render(BODY, spec(), model, "img:1").chart_values["env"]  # type: ignore[arg-type]
    assert env["MF_MAX_QUEUE_ROWS"] == "1024" and float(env["MF_TIMEOUT_SECONDS"]) == 30
    tuned = spec(batching={"maxBatchSize": 64, "maxQueueRows": 256}, timeoutSeconds=5)
    plan = ms.render(BODY, tuned, model, "img:1")  # type: ignore[arg-type]
    env = plan.chart_values["env"]
    assert env["MF_MAX_BATCH_SIZE"] == "64" and env["MF_MAX_QUEUE_ROWS"] == "256"
    assert float(env["MF_TIMEOUT_SECONDS"]) == 5
    # The local launcher runs the server with the same variables.
    assert plan.runtime.to_env() == env
    # And the server reads them back as the settings it runs with.
    from modelfactory_serving.settings import Settings

    settings = Settings.model_validate(
        {k[3:].lower(): v for k, v in env.items() if k.startswith("MF_")}
    )
    assert settings.max_queue_rows == 256 and settings.timeout_seconds == 5.0


def run(status: dict[str, Any], obs: ServiceObservation, tj: dict[str, Any] | None = TJ) -> Any:
    s = spec()
    resolved = ms.resolve_model(s, tj)
    plan = ms.render(BODY, s, resolved, "img:1") if isinstance(resolved, ms.ResolvedModel) else None
    return ms.decide(1, status, None, resolved, plan, obs, "t"), plan


def test_lifecycle_apply_roll_ready() -> None:
    d, plan = run({}, ServiceObservation(exists=False))
    assert d.launch and d.status["phase"] == "Pending"
    applied = {**d.status, "appliedHash": plan.hash}
    d2, _ = run(applied, ServiceObservation(exists=True, replicas=1, ready_replicas=0))
    assert not d2.launch and d2.status["phase"] == "Pending"
    d3, _ = run(
        d2.status,
        ServiceObservation(
            exists=True,
            replicas=1,
            ready_replicas=1,
            rolled_out=True,
            served_version=2,
            url="http://x",
        ),
    )
    assert d3.status["phase"] == "Ready" and d3.status["modelVersion"] == 2
    d4, _ = run(d3.status, ServiceObservation(exists=True, replicas=1, ready_replicas=0))
    assert d4.status["phase"] == "Degraded"


def test_waits_for_the_trainingjob() -> None:
    d, _ = run({}, ServiceObservation(exists=False), tj=None)
    assert not d.launch and d.status["phase"] == "Pending"
    resolved = next(c for c in d.status["conditions"] if c["type"] == "ModelResolved")
    assert resolved["reason"] == "TrainingJobNotFound"


def test_deployment_observation() -> None:
    dep = {
        "metadata": {"generation": 2},
        "spec": {
            "replicas": 2,
            "template": {"metadata": {"annotations": {"modelfactory.dev/model-version": "3"}}},
        },
        "status": {
            "observedGeneration": 2,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
        },
    }
    obs = observe.deployment(dep, "http://u")
    assert obs.rolled_out and obs.served_version == 3
    dep["status"]["updatedReplicas"] = 1
    assert not observe.deployment(dep, "http://u").rolled_out
    assert not observe.deployment(None, "http://u").exists


def test_job_observation() -> None:
    assert observe.job(None).state == "absent"
    assert observe.job({"status": {"active": 1, "ready": 1}}).state == "running"
    failed = observe.job(
        {
            "status": {
                "failed": 2,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ],
            }
        }
    )
    assert failed.state == "failed" and failed.attempts == 2
    assert (
        observe.job(
            {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
        ).state
        == "succeeded"
    )


def test_memory_is_limited_to_the_request_unless_the_spec_says() -> None:
    model = ms.resolve_model(spec(), TJ)
    plan = ms.render(BODY, spec(resources={"memory": "1Gi"}), model, "img:1")  # type: ignore[arg-type]
    assert plan.chart_values["resources"]["memoryLimit"] == "1Gi"
    plan = ms.render(
        BODY,
        spec(resources={"memory": "1Gi", "memoryLimit": "2Gi"}),
        model,  # type: ignore[arg-type]
        "img:1",
    )
    assert plan.chart_values["resources"]["memoryLimit"] == "2Gi"
    assert plan.chart_values["resources"]["cpuLimit"] is None


def test_pod_settings_reach_the_chart_values() -> None:
    model = ms.resolve_model(spec(), TJ)
    pod = {
        "serviceAccountName": "reader",
        "imagePullSecrets": ["regcred"],
        "env": [{"name": "LOG_FORMAT", "value": "json"}],
        "envFrom": [{"secretRef": {"name": "tokens"}}],
    }
    plan = ms.render(BODY, spec(pod=pod), model, "img:1")  # type: ignore[arg-type]
    values = plan.chart_values["pod"]
    assert values["serviceAccountName"] == "reader"
    assert values["imagePullSecrets"] == ["regcred"]
    assert values["env"] == [{"name": "LOG_FORMAT", "value": "json"}]
    assert values["envFrom"] == [{"secretRef": {"name": "tokens"}}]


def test_a_server_that_refuses_its_model_says_why() -> None:
    why = "the new model server is not ready: UntrustedType: ... numpy.fromregex"
    d, plan = run({}, ServiceObservation(exists=False))
    applied = {**d.status, "appliedHash": plan.hash}
    fresh, _ = run(applied, ServiceObservation(exists=True, replicas=1, message=why))
    ready = next(c for c in fresh.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["message"] == why
    # While an older version keeps serving, the rollout's condition carries the reason too.
    serving = {**applied, "modelVersion": 1}
    rolling, _ = run(
        serving,
        ServiceObservation(
            exists=True, replicas=2, ready_replicas=1, served_version=1, message=why
        ),
    )
    ready = next(c for c in rolling.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "RollingOut" and why in ready["message"]


def test_render_of_a_canary_runs_both_versions_and_routes_from_the_stable_one() -> None:
    from modelfactory_operator.logic import rollout

    v1 = rollout.ref("file:///m/1", "sha256:" + "a" * 64, 1)
    v2 = rollout.ref("file:///m/2", "sha256:" + "b" * 64, 2)
    s = spec(rollout={"strategy": "Canary", "stickyHeader": "x-pin"})
    model = ms.resolve_model(s, TJ)
    plan = ms.render(BODY, s, model, "img:1", traffic=rollout.Traffic(v1, v2, "split", 10))  # type: ignore[arg-type]
    env = plan.chart_values["env"]
    assert env["MF_MODEL_URI"] == "file:///m/1" and plan.chart_values["modelVersion"] == "1"
    assert env["MF_ROUTE_MODE"] == "split" and env["MF_ROUTE_WEIGHT"] == "10"
    assert env["MF_ROUTE_PEER"] == "http://iris-candidate.ml.svc.cluster.local."
    assert env["MF_ROUTE_HEADER"] == "x-pin" and env["MF_ROUTE_TRACK"] == "stable"
    cand = plan.chart_values["candidate"]
    assert cand["name"] == "iris-candidate" and cand["modelVersion"] == "2"
    assert cand["env"]["MF_MODEL_URI"] == "file:///m/2"
    assert cand["env"]["MF_ROUTE_TRACK"] == "candidate" and cand["env"]["MF_ROUTE_MODE"] == "none"
    # Neither Service selects the other's pods.
    assert (
        cand["labels"]["app.kubernetes.io/name"]
        != plan.chart_values["labels"]["app.kubernetes.io/name"]
    )
    assert plan.candidate_version == 2
    # Without a rollout, no candidate and no routing.
    plain = ms.render(BODY, s, model, "img:1", traffic=rollout.Traffic(v2))  # type: ignore[arg-type]
    assert plain.chart_values["candidate"] is None
    assert plain.chart_values["env"]["MF_ROUTE_MODE"] == "none"


GATEWAY = {
    "parentRefs": [{"name": "public", "namespace": "gw", "sectionName": "http"}],
    "hostnames": ["models.example.com"],
}


def test_with_gateway_api_the_route_carries_a_canary_split_and_the_servers_do_not() -> None:
    from modelfactory_operator.logic import rollout

    v1 = rollout.ref("file:///m/1", "sha256:" + "a" * 64, 1)
    v2 = rollout.ref("file:///m/2", "sha256:" + "b" * 64, 2)
    s = spec(rollout={"strategy": "Canary"}, gateway=GATEWAY)
    model = ms.resolve_model(s, TJ)
    split = rollout.Traffic(v1, v2, "split", 10)
    plan = ms.render(BODY, s, model, "img:1", traffic=split, gateway_api=True)  # type: ignore[arg-type]
    route = plan.chart_values["httpRoute"]
    assert route["parentRefs"] == GATEWAY["parentRefs"]
    assert route["hostnames"] == ["models.example.com"]
    assert route["backends"] == [
        {"name": "iris", "weight": 90},
        {"name": "iris-candidate", "weight": 10},
    ]
    assert route["pins"] == [
        {"header": "x-model-variant", "value": "stable", "backend": "iris"},
        {"header": "x-model-variant", "value": "canary", "backend": "iris-candidate"},
    ]
    assert plan.chart_values["env"]["MF_ROUTE_MODE"] == "none"
    assert plan.chart_values["candidate"]["name"] == "iris-candidate"
    # A shadow needs both answers: the servers mirror, the route sends everything to them.
    mirror = rollout.Traffic(v1, v2, "mirror", 20, "stable", "shadow")
    plan = ms.render(BODY, s, model, "img:1", traffic=mirror, gateway_api=True)  # type: ignore[arg-type]
    assert plan.chart_values["httpRoute"]["backends"] == [{"name": "iris", "weight": 100}]
    assert plan.chart_values["httpRoute"]["pins"] == []
    assert plan.chart_values["env"]["MF_ROUTE_MODE"] == "mirror"
    # Without Gateway API (or the local launcher) the servers split and no route is rendered.
    plan = ms.render(BODY, s, model, "img:1", traffic=split)  # type: ignore[arg-type]
    assert plan.chart_values["httpRoute"] is None
    assert plan.chart_values["env"]["MF_ROUTE_MODE"] == "split"
    # No spec.gateway: no route even where Gateway API is served.
    plain = ms.render(BODY, spec(), model, "img:1", gateway_api=True)  # type: ignore[arg-type]
    assert plain.chart_values["httpRoute"] is None


def test_a_gateway_without_gateway_api_says_so_and_keeps_serving() -> None:
    s = spec(gateway=GATEWAY)
    resolved = ms.resolve_model(s, TJ)
    plan = ms.render(BODY, s, resolved, "img:1")  # type: ignore[arg-type]
    obs = ServiceObservation(
        exists=True, replicas=1, ready_replicas=1, rolled_out=True, served_version=2
    )
    d = ms.decide(1, {"appliedHash": plan.hash}, None, resolved, plan, obs, "t", gateway_api=False)
    routed = next(c for c in d.status["conditions"] if c["type"] == "HTTPRoute")
    assert routed["status"] == "False" and routed["reason"] == "GatewayAPINotInstalled"
    assert "spec.gateway" in routed["message"] and "HTTPRoute" in routed["message"]
    assert d.status["phase"] == "Ready"
    assert ("Warning", "GatewayAPINotInstalled") in [(e[0], e[1]) for e in d.events]
    d = ms.decide(1, d.status, None, resolved, plan, obs, "t", gateway_api=True)
    routed = next(c for c in d.status["conditions"] if c["type"] == "HTTPRoute")
    assert routed["status"] == "True"


@pytest.mark.parametrize(
    "gateway, field",
    [
        ({"parentRefs": []}, "parentRefs"),
        ({"parentRefs": [{"name": "Not_A_Name"}]}, "name"),
        ({"parentRefs": [{"name": "gw"}], "hostnames": ["bad host"]}, "hostnames"),
        ({"parentRefs": [{"name": "gw", "port": 0}]}, "port"),
    ],
)
def test_a_bad_gateway_is_refused_naming_the_field(gateway: Any, field: str) -> None:
    with pytest.raises(validate.SpecError, match=field):
        spec(gateway=gateway)
