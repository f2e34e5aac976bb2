"""The kubernetes launcher: one Helm release per custom resource."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelfactory_operator.io import charts, kube
from modelfactory_operator.io.helm import Helm
from modelfactory_operator.logic import drift, names, observe
from modelfactory_operator.logic import traffic_metrics as tm
from modelfactory_operator.logic.kinds import MODELSERVICE, Kind
from modelfactory_operator.logic.modelservice import (
    GATEWAY_GROUP,
    GATEWAY_VERSION,
    SERVING_PORT,
    cluster_url,
)
from modelfactory_operator.logic.names import SERVICE_APP
from modelfactory_operator.logic.plans import (
    RunObservation,
    RunPlan,
    ServiceObservation,
    ServingPlan,
)

RAYJOB_CRD = "rayjobs.ray.io"
# Helm release of a run: <prefix>-<name>.
# How soon a model server that is still starting is asked again why it is not ready.
RECHECK_SECONDS = 5.0
# How soon a training run that waits to start is looked at again: what explains the wait (a
# claim's provisioning events) comes without a watch event. Only waiting runs are looked at.
PENDING_RECHECK_SECONDS = 60.0


Obj = dict[str, Any]
UNREADABLE: tuple[bool, Obj | None] = (False, None)


def read_pending(plan: RunPlan) -> tuple[list[Obj], dict[str, Obj | None], list[Obj]]:
    """What explains a run that does not start: its pods, its claims (left out when they cannot
    be read) and, when a claim is not bound, the claims' events."""
    ns = plan.namespace
    no_objects: list[Obj] = []
    pods = kube.detail(
        "pods", lambda: kube.list_pods(ns, f"{names.RUN_ID_LABEL}={plan.run_id}"), no_objects
    )
    claims: dict[str, Obj | None] = {}
    for claim in plan.claims:

        def read(c: str = claim) -> tuple[bool, Obj | None]:
            return True, kube.get_claim(ns, c)

        readable, obj = kube.detail("persistentvolumeclaims", read, UNREADABLE)
        if readable:
            claims[claim] = obj
    events: list[Obj] = []
    for name, found in claims.items():
        if found is not None and not observe.claim_bound(found):

            def claim_events(c: str = name) -> list[Obj]:
                return kube.list_events(ns, "PersistentVolumeClaim", c)

            events += kube.detail("events", claim_events, no_objects)
    return pods, claims, events


def server_failure(namespace: str, name: str) -> tuple[str | None, bool]:
    """Why a started model server says it will not be ready (a refused artifact): kubelet's
    probe sees only the 503, so the answer is read from the pod through the API server. Also
    whether a server was asked and is still starting (worth asking again soon)."""
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=serving"
    no_pods: list[Obj] = []
    pods = kube.detail("pods", lambda: kube.list_pods(namespace, selector), no_pods)
    candidates = observe.probe_candidates(pods)
    for pod in candidates:

        def ask(p: str = pod) -> tuple[int, bytes]:
            return kube.pod_http_get(namespace, p, SERVING_PORT, "/v2/health/ready")

        status, body = kube.detail("pods/proxy", ask, (0, b""))
        if status == 503 and (failure := observe.readiness_failure(body)):
            return failure, False
    return None, bool(candidates)


def drift_windows(
    namespace: str, name: str
) -> tuple[list[Obj], Callable[[dict[str, Any]], dict[str, Any] | None]]:
    """Each ready replica's drift window, read through the API server's pod proxy."""
    selector = stable_selector(name)
    no_pods: list[Obj] = []
    pods = drift.ready_pods(
        kube.detail("pods", lambda: kube.list_pods(namespace, selector), no_pods)
    )
    windows = []
    for pod in pods:

        def ask(p: str = pod) -> tuple[int, bytes]:
            return kube.pod_http_get(
                namespace, p, SERVING_PORT, drift.drift_path(name), drift.WINDOW_LIMIT_BYTES
            )

        if (window := drift.parse(*kube.detail("pods/proxy", ask, (0, b"")))) is not None:
            windows.append(window)

    def evaluate(window: dict[str, Any]) -> dict[str, Any] | None:
        if not pods:
            return None

        def post() -> tuple[int, bytes]:
            return kube.pod_http_post(
                namespace,
                pods[0],
                SERVING_PORT,
                drift.evaluate_path(name),
                window,
                drift.WINDOW_LIMIT_BYTES,
            )

        return drift.parse(*kube.detail("pods/proxy", post, (0, b"")))

    return windows, evaluate


def stable_selector(name: str) -> str:
    """The stable version's server pods (during a rollout the other version's have another
    app.kubernetes.io/name)."""
    return (
        f"app.kubernetes.io/name={SERVICE_APP},app.kubernetes.io/instance={name},"
        "app.kubernetes.io/component=serving"
    )


def traffic_snapshot(namespace: str, name: str) -> tm.Snapshot | None:
    """The rollout figures of both versions' servers, summed over the ready replicas; None
    unless every one answered."""
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=serving"
    no_pods: list[Obj] = []
    pods = drift.ready_pods(
        kube.detail("pods", lambda: kube.list_pods(namespace, selector), no_pods)
    )
    snapshot, answered = tm.empty(), 0
    for pod in pods:

        def ask(p: str = pod) -> tuple[int, bytes]:
            return kube.pod_http_get(namespace, p, SERVING_PORT, "/metrics", tm.METRICS_LIMIT_BYTES)

        status, body = kube.detail("pods/proxy", ask, (0, b""))
        if status == 200:
            tm.parse(body.decode("utf-8", "replace"), snapshot)
            answered += 1
    return snapshot if answered and answered == len(pods) else None


class KubernetesLauncher:
    name = "kubernetes"

    def __init__(self, helm: Helm, charts_dir: Path, crd_cache_seconds: float = 30.0) -> None:
        self.helm = helm
        self.crd_cache_seconds = crd_cache_seconds
        self.charts = charts_dir
        self._checked: dict[str, tuple[float, bool]] = {}
        self._chart_digests: dict[str, str] = {}
        self.reconciler: Any = None

    def chart_digest(self, chart: str) -> str:
        """Read once: the charts are part of the operator's image."""
        if chart not in self._chart_digests:
            self._chart_digests[chart] = charts.digest(self.charts / chart)
        return self._chart_digests[chart]

    async def start(self, reconciler: Any) -> None:
        self.reconciler = reconciler

    async def _api_available(self, key: str, check: Callable[[], bool]) -> bool:
        checked_at, available = self._checked.get(key, (0.0, False))
        if not checked_at or time.monotonic() - checked_at > self.crd_cache_seconds:
            available = await asyncio.to_thread(check)
            self._checked[key] = (time.monotonic(), available)
        return available

    async def rayjob_available(self) -> bool:
        return await self._api_available(RAYJOB_CRD, lambda: kube.crd_exists(RAYJOB_CRD))

    async def httproute_available(self) -> bool:
        return await self._api_available(
            "httproutes", lambda: kube.serves(GATEWAY_GROUP, GATEWAY_VERSION, "httproutes")
        )

    async def launch_run(self, plan: RunPlan) -> int | None:
        return await self.helm.upgrade_install(
            plan.release, str(self.charts / "training-job"), plan.namespace, plan.chart_values
        )

    async def observe_run(self, plan: RunPlan) -> RunObservation:
        if plan.mode == "rayjob":
            seen = observe.rayjob(
                await asyncio.to_thread(kube.get_rayjob, plan.namespace, plan.job_name)
            )
        else:
            seen = observe.job(await asyncio.to_thread(kube.get_job, plan.namespace, plan.job_name))
        if seen.state != "pending":
            return seen
        if self.reconciler is not None:
            key = (plan.plural, plan.namespace, plan.name)
            self.reconciler.recheck(key, PENDING_RECHECK_SECONDS)
        pods, claims, events = await asyncio.to_thread(read_pending, plan)
        return observe.explain_pending(seen, observe.pending_reason(pods, claims, events))

    async def delete_run(self, kind: Kind, namespace: str, name: str) -> None:
        await self.helm.uninstall(names.release_name(kind.prefix, name), namespace)

    async def apply_service(self, plan: ServingPlan) -> int | None:
        return await self.helm.upgrade_install(
            plan.release, str(self.charts / "model-service"), plan.namespace, plan.chart_values
        )

    async def observe_service(self, namespace: str, name: str) -> ServiceObservation:
        dep = await asyncio.to_thread(kube.get_deployment, namespace, names.dns_name(name))
        seen = observe.deployment(dep, cluster_url(name, namespace))
        if not seen.exists or seen.rolled_out:
            return seen
        failure, starting = await asyncio.to_thread(server_failure, namespace, name)
        if starting and self.reconciler is not None:
            # Its pod will not change again when it gives up loading: look again shortly.
            self.reconciler.recheck((MODELSERVICE.plural, namespace, name), RECHECK_SECONDS)
        return observe.with_server_failure(seen, failure)

    async def delete_service(self, namespace: str, name: str) -> None:
        await self.helm.uninstall(names.release_name(MODELSERVICE.prefix, name), namespace)

    async def drift_windows(
        self, namespace: str, name: str
    ) -> tuple[list[dict[str, Any]], Callable[[dict[str, Any]], dict[str, Any] | None]]:
        return await asyncio.to_thread(drift_windows, namespace, name)

    async def traffic_snapshot(self, namespace: str, name: str) -> tm.Snapshot | None:
        return await asyncio.to_thread(traffic_snapshot, namespace, name)
