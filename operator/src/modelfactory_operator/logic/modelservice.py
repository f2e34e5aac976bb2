"""ModelService: resolve the model, render the server plan, decide the status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelfactory_api.modelservice import ModelServiceSpec, ModelSource
from modelfactory_api.runtime import ServingRuntimeConfig
from modelfactory_api.uris import DOT_DOT_MESSAGE, has_dot_dot
from modelfactory_operator.logic import conditions as cond
from modelfactory_operator.logic import drift, kinds, names, pod, rollout, storage
from modelfactory_operator.logic.kinds import MODELSERVICE
from modelfactory_operator.logic.plans import Decision, ServiceObservation, ServingPlan
from modelfactory_operator.logic.runs import split_image

SERVING_PORT = 8080
# app.kubernetes.io/name of the other version's servers during a rollout: the stable
# Deployment's selector (name, instance, component) never matches them.
CANDIDATE_APP = "modelfactory-serving-candidate"
GATEWAY_GROUP, GATEWAY_VERSION = "gateway.networking.k8s.io", "v1"
GATEWAY_API = f"{GATEWAY_GROUP}/{GATEWAY_VERSION}"


@dataclass(frozen=True)
class ResolvedModel:
    uri: str
    digest: str
    version: int | None


@dataclass(frozen=True)
class Unresolved:
    reason: str
    message: str


def resolve_model(
    spec: ModelServiceSpec, trainingjob: dict[str, Any] | None
) -> ResolvedModel | Unresolved:
    return resolve_source(spec.model, trainingjob)


def resolve_source(
    src: ModelSource, trainingjob: dict[str, Any] | None
) -> ResolvedModel | Unresolved:
    if src.uri is not None:
        return ResolvedModel(uri=src.uri, digest=str(src.digest), version=None)
    if trainingjob is None:
        return Unresolved(
            "TrainingJobNotFound",
            f"spec.model.trainingJob: TrainingJob {src.trainingJob!r} not found in this namespace",
        )
    status = trainingjob.get("status") or {}
    if src.version is not None:
        for i, ref in enumerate(status.get("history") or []):
            if ref.get("version") == src.version:
                return _from_status(src.trainingJob, f"status.history[{i}].uri", ref, src.version)
        return Unresolved(
            "VersionNotFound",
            f"spec.model.version: TrainingJob {src.trainingJob!r} has no good version "
            f"{src.version} (known: {[r.get('version') for r in status.get('history') or []]})",
        )
    model = status.get("model")
    if not model:
        return Unresolved(
            "NoModelYet", f"TrainingJob {src.trainingJob!r} has not produced a model yet"
        )
    return _from_status(src.trainingJob, "status.model.uri", model, model.get("version"))


def _from_status(
    trainingjob: str | None, field: str, ref: dict[str, Any], version: int | None
) -> ResolvedModel | Unresolved:
    """A version a TrainingJob's status names; its URI is checked like a spec's would be."""
    if has_dot_dot(ref["uri"]):
        return Unresolved(
            "InvalidModelUri",
            f"TrainingJob {trainingjob!r} {field} {DOT_DOT_MESSAGE}: {ref['uri']!r}",
        )
    return ResolvedModel(uri=ref["uri"], digest=ref["digest"], version=version)


def following(modelservices: list[dict[str, Any]], trainingjob_name: str) -> list[dict[str, Any]]:
    """ModelServices that serve a TrainingJob's models."""
    return [
        m
        for m in modelservices
        if ((m.get("spec") or {}).get("model") or {}).get("trainingJob") == trainingjob_name
    ]


def as_ref(model: ResolvedModel) -> rollout.Ref:
    return rollout.ref(model.uri, model.digest, model.version)


def from_ref(ref: rollout.Ref) -> ResolvedModel:
    return ResolvedModel(uri=ref["uri"], digest=ref["digest"], version=ref.get("version"))


def candidate_name(name: str) -> str:
    return names.dns_name(name, "candidate")


def runtime_config(
    name: str, spec: ModelServiceSpec, model: ResolvedModel, mount_root: str, **route: Any
) -> ServingRuntimeConfig:
    return ServingRuntimeConfig(
        model_name=name,
        model_uri=storage.to_workload(model.uri, mount_root, "model uri"),
        model_digest=model.digest,
        model_version=str(model.version) if model.version is not None else None,
        max_batch_size=spec.batching.maxBatchSize,
        max_latency_ms=spec.batching.maxLatencyMs,
        max_queue_rows=spec.batching.maxQueueRows,
        timeout_seconds=spec.timeoutSeconds,
        workers=spec.workers,
        runtime=spec.runtime,
        host="0.0.0.0",
        port=SERVING_PORT,
        **drift_settings(spec),
        **route,
    )


def version_label(model: ResolvedModel) -> str:
    """The pods' model-version annotation: a URI-pinned model has no version number."""
    return str(model.version) if model.version is not None else f"sha256-{model.digest[7:19]}"


def render(
    body: dict[str, Any],
    spec: ModelServiceSpec,
    model: ResolvedModel,
    image: str,
    mount_root: str = storage.CLUSTER_MOUNT_ROOT,
    traffic: rollout.Traffic | None = None,
    cluster_domain: str = "cluster.local",
    gateway_api: bool = False,
) -> ServingPlan:
    """The release: the stable version's servers and, during a rollout, the other version's
    (`traffic`; the model alone otherwise). With spec.gateway and Gateway API in the cluster
    (`gateway_api`), an HTTPRoute exposes them and carries a canary's or an experiment's split."""
    meta = body["metadata"]
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    if traffic is not None:
        model = from_ref(traffic.stable)
    other = from_ref(traffic.candidate) if traffic and traffic.candidate else None
    gateway = http_route(name, spec, traffic, other is not None) if gateway_api else None
    route: dict[str, Any] = {}
    split_by_route = gateway is not None and traffic is not None and traffic.mode == "split"
    if traffic is not None and other is not None and traffic.mode != "none" and not split_by_route:
        route = {
            "route_mode": traffic.mode,
            # Absolute (trailing dot): once the Service is gone (a rollback) its name must not
            # resolve through the search list to some host outside the cluster.
            "route_peer": f"http://{candidate_name(name)}.{namespace}.svc.{cluster_domain}.",
            "route_peer_version": version_label(other),
            "route_weight": traffic.weight,
            "route_header": spec.rollout.stickyHeader,
            "route_pin_local": traffic.pin_local,
            "route_pin_peer": traffic.pin_peer,
            "route_mirrors_in_flight": spec.rollout.shadow.maxMirrorsInFlight,
        }
    runtime = runtime_config(name, spec, model, mount_root, **route)
    candidate = (
        runtime_config(name, spec, other, mount_root, route_track="candidate")
        if other is not None
        else None
    )
    uris = [model.uri] + ([other.uri] if other is not None else [])
    values: dict[str, Any] = {
        "owner": {
            "apiVersion": body.get("apiVersion", "modelfactory.dev/v1alpha1"),
            "kind": "ModelService",
            "name": name,
            "uid": uid,
        },
        "labels": names.labels("serving", name, names.SERVICE_APP),
        "name": names.dns_name(name),
        "image": split_image(spec.image or image),
        "command": ["modelfactory-serve"],
        "port": SERVING_PORT,
        "env": runtime.to_env(),
        # Rolls the pods whenever the model changes.
        "modelVersion": version_label(model),
        "replicas": {"min": spec.replicas.min, "max": spec.replicas.max},
        "autoscaling": {
            "metric": spec.autoscaling.metric,
            "targetUtilization": spec.autoscaling.targetUtilization,
        },
        # Memory is not compressible: a server without a limit can take memory that other pods
        # on its node requested. The limit is the request unless the spec says otherwise.
        "resources": {
            **spec.resources.model_dump(),
            "memoryLimit": spec.resources.memoryLimit or spec.resources.memory,
        },
        "pod": pod.values(spec.pod),
        **storage.mounts(list(dict.fromkeys(uris)), mount_root, read_only=True),
        "candidate": None,
        "httpRoute": gateway,
    }
    if candidate is not None and other is not None:
        values["candidate"] = {
            "name": candidate_name(name),
            "labels": {
                **names.labels("serving", name, CANDIDATE_APP),
                "modelfactory.dev/track": "candidate",
            },
            "env": candidate.to_env(),
            "modelVersion": version_label(other),
            "replicas": spec.replicas.min,
        }
    return ServingPlan(
        namespace=namespace,
        name=name,
        uid=uid,
        release=names.release_name("msvc", name),
        model_version=model.version,
        runtime=runtime,
        chart_values=values,
        candidate=candidate,
        candidate_version=other.version if other is not None else None,
    )


def http_route(
    name: str, spec: ModelServiceSpec, traffic: rollout.Traffic | None, has_candidate: bool
) -> dict[str, Any] | None:
    """The HTTPRoute's values: its Gateways and backends. A split goes to the backends' weights
    and the sticky header becomes one match per variant; a mirror stays with the servers, which
    need both answers to compare them (a RequestMirror filter drops the mirrored answer)."""
    if spec.gateway is None:
        return None
    stable, candidate = names.dns_name(name), candidate_name(name)
    weight = traffic.weight if traffic is not None and traffic.mode == "split" else 0
    backends = [{"name": stable, "weight": 100 - weight}]
    pins: list[dict[str, str]] = []
    if traffic is not None and traffic.mode == "split" and has_candidate:
        backends.append({"name": candidate, "weight": weight})
        header = spec.rollout.stickyHeader
        pins = [
            {"header": header, "value": traffic.pin_local, "backend": stable},
            {"header": header, "value": traffic.pin_peer, "backend": candidate},
        ]
    return {
        "parentRefs": [p.model_dump(exclude_none=True) for p in spec.gateway.parentRefs],
        "hostnames": list(spec.gateway.hostnames),
        "backends": backends,
        "pins": pins,
    }


def drift_settings(spec: ModelServiceSpec) -> dict[str, Any]:
    """spec.monitoring.drift as the server's settings."""
    d = spec.monitoring.drift
    return {
        "drift_enabled": d.enabled,
        "drift_window": d.window,
        "drift_evaluate_every": d.evaluateEverySamples,
        "drift_evaluate_seconds": float(d.evaluateSeconds),
        "drift_min_samples": d.minSamples,
        "drift_max_rows_per_second": d.maxRowsPerSecond,
        "drift_psi": d.thresholds.psi,
        "drift_jensen_shannon": d.thresholds.jensenShannon,
        "drift_ks_pvalue": d.thresholds.ksPValue,
        "drift_share": d.thresholds.driftShare,
    }


def cluster_url(name: str, namespace: str) -> str:
    return f"http://{names.dns_name(name)}.{namespace}.svc"


def decide(
    generation: int | None,
    status: dict[str, Any],
    spec_error: str | None,
    resolved: ResolvedModel | Unresolved | None,
    plan: ServingPlan | None,
    observation: ServiceObservation,
    now: str,
    drift_seen: drift.DriftObservation | None = None,
    drift_min_samples: int = 0,
    rollout_step: rollout.Step | None = None,
    gateway_api: bool | None = None,
) -> Decision:
    """The status and what to do. `gateway_api`: whether Gateway API is served, when
    spec.gateway asks for an HTTPRoute (None otherwise)."""
    conds = cond.Rewrite(status.get("conditions") or [], generation, now)
    before = conds.before
    new = kinds.declared(MODELSERVICE, status)
    setc = conds.set

    launch = False
    if spec_error is not None:
        setc("Failed", True, "InvalidSpec", spec_error)
        setc("ModelResolved", False, "InvalidSpec", spec_error)
        setc("Ready", False, "InvalidSpec", spec_error)
    else:
        setc("Failed", False, "NoFailure", "")
        if isinstance(resolved, Unresolved) or resolved is None or plan is None:
            why = resolved if isinstance(resolved, Unresolved) else Unresolved("Pending", "")
            setc("ModelResolved", False, why.reason, why.message)
        else:
            label = f"version {resolved.version}" if resolved.version else resolved.uri
            setc("ModelResolved", True, "ModelResolved", f"serving {label} ({resolved.digest})")
            if status.get("appliedHash") != plan.hash or not observation.exists:
                launch = True
        new["replicas"] = observation.replicas
        new["readyReplicas"] = observation.ready_replicas
        if observation.url:
            new["url"] = observation.url
        if observation.ready_replicas > 0:
            setc(
                "Available",
                True,
                "MinimumReplicasAvailable",
                f"{observation.ready_replicas}/{observation.replicas} replicas ready",
            )
        else:
            setc(
                "Available",
                False,
                "ReplicasUnavailable",
                observation.message or f"0/{observation.replicas} replicas ready",
            )
        if observation.rolled_out and observation.served_version is not None:
            new["modelVersion"] = observation.served_version
        if observation.rolled_out and plan is not None:
            new["modelUri"] = plan.runtime.model_uri
        resolved_ok = cond.is_true(conds.conditions, "ModelResolved")
        if not resolved_ok:
            setc(
                "Ready",
                False,
                "ModelNotResolved",
                (cond.get(conds.conditions, "ModelResolved") or {}).get("message", ""),
            )
        elif launch or not observation.rolled_out:
            if observation.ready_replicas > 0:
                rolling = f"rolling out model version {plan.model_version if plan else '?'}"
                setc(
                    "Ready",
                    False,
                    "RollingOut",
                    f"{rolling}: {observation.message}" if observation.message else rolling,
                )
            elif status.get("modelVersion") is not None or status.get("modelUri"):
                # It served before and no replica is ready now.
                setc(
                    "Ready",
                    False,
                    "ReplicasUnavailable",
                    observation.message or "no replica is ready",
                )
            else:
                setc("Ready", False, "Deploying", observation.message or "starting the server")
        else:
            setc(
                "Ready",
                True,
                "ServingModel",
                f"{observation.ready_replicas} replica(s) serving model version "
                f"{new.get('modelVersion')}",
            )
    if spec_error is None and gateway_api is not None:
        if gateway_api:
            setc("HTTPRoute", True, "RouteApplied", "the HTTPRoute attaches the servers")
        else:
            setc(
                "HTTPRoute",
                False,
                "GatewayAPINotInstalled",
                f"spec.gateway: the cluster does not serve {GATEWAY_API} HTTPRoute; install "
                "Gateway API or remove spec.gateway (meanwhile the servers split a rollout's "
                "traffic themselves)",
            )
    events = drift.apply(new, conds, drift_seen, drift_min_samples)
    if rollout_step is not None and spec_error is None:
        new["rollout"] = rollout_step.status
        new["traffic"] = rollout.traffic_status(rollout_step.status)
        for ctype, value, reason, message in rollout.conditions(rollout_step.status):
            setc(ctype, value, reason, message)
        events.extend(rollout_step.events)
    new["conditions"] = conds.conditions
    new["observedGeneration"] = generation
    new["phase"] = cond.modelservice_phase(conds.conditions)
    for change in conds.changes():
        if change["type"] not in ("Ready", "Failed", "ModelResolved", "Available", "HTTPRoute"):
            continue
        if change["type"] == "Failed" and change["status"] != "True":
            continue
        if (
            not before
            and change["status"] != "True"
            and change["type"] not in ("ModelResolved", "HTTPRoute")
        ):
            continue
        warn = change["type"] == "Failed" or (
            change["type"] in ("Available", "HTTPRoute") and change["status"] == "False"
        )
        events.append(
            ("Warning" if warn else "Normal", change["reason"], change["message"] or change["type"])
        )
    kinds.checked(MODELSERVICE, new)
    return Decision(status=new, launch=launch, events=events)
