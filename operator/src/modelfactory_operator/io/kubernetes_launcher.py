"""The kubernetes launcher: one Helm release per custom resource."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

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
            return observe.rayjob(
                await asyncio.to_thread(kube.get_rayjob, plan.namespace, plan.job_name)
            )
        return observe.job(await asyncio.to_thread(kube.get_job, plan.namespace, plan.job_name))

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
