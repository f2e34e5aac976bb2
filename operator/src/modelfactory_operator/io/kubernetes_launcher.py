"""The kubernetes launcher: one Helm release per custom resource."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from modelfactory_operator.io import kube
from modelfactory_operator.io.helm import Helm
from modelfactory_operator.logic import names, observe
from modelfactory_operator.logic.modelservice import cluster_url
from modelfactory_operator.logic.plans import (
    RunObservation,
    ServiceObservation,
    ServingPlan,
    TrainingPlan,
)

RAYJOB_CRD = "rayjobs.ray.io"


Obj = dict[str, Any]
UNREADABLE: tuple[bool, Obj | None] = (False, None)


def read_pending(plan: TrainingPlan) -> tuple[list[Obj], dict[str, Obj | None], list[Obj]]:
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


class KubernetesLauncher:
    name = "kubernetes"

    def __init__(self, helm: Helm, charts_dir: Path, crd_cache_seconds: float = 30.0) -> None:
        self.helm = helm
        self.crd_cache_seconds = crd_cache_seconds
        self.charts = charts_dir
        self._rayjob_checked = (0.0, False)

    async def rayjob_available(self) -> bool:
        checked_at, available = self._rayjob_checked
        if time.monotonic() - checked_at > self.crd_cache_seconds:
            available = await asyncio.to_thread(kube.crd_exists, RAYJOB_CRD)
            self._rayjob_checked = (time.monotonic(), available)
        return available

    async def launch_training(self, plan: TrainingPlan) -> int | None:
        return await self.helm.upgrade_install(
            plan.release, str(self.charts / "training-job"), plan.namespace, plan.chart_values
        )

    async def observe_training(self, plan: TrainingPlan) -> RunObservation:
        if plan.mode == "rayjob":
            seen = observe.rayjob(
                await asyncio.to_thread(kube.get_rayjob, plan.namespace, plan.job_name)
            )
        else:
            seen = observe.job(await asyncio.to_thread(kube.get_job, plan.namespace, plan.job_name))
        if seen.state != "pending":
            return seen
        pods, claims, events = await asyncio.to_thread(read_pending, plan)
        return observe.explain_pending(seen, observe.pending_reason(pods, claims, events))

    async def delete_training(self, namespace: str, name: str) -> None:
        await self.helm.uninstall(names.release_name("tj", name), namespace)

    async def apply_service(self, plan: ServingPlan) -> int | None:
        return await self.helm.upgrade_install(
            plan.release, str(self.charts / "model-service"), plan.namespace, plan.chart_values
        )

    async def observe_service(self, namespace: str, name: str) -> ServiceObservation:
        dep = await asyncio.to_thread(kube.get_deployment, namespace, names.dns_name(name))
        return observe.deployment(dep, cluster_url(name, namespace))

    async def delete_service(self, namespace: str, name: str) -> None:
        await self.helm.uninstall(names.release_name("msvc", name), namespace)
