"""Where workloads run. The operator decides what runs; a launcher decides where."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from modelfactory_operator.logic import traffic_metrics as tm
from modelfactory_operator.logic.kinds import Kind
from modelfactory_operator.logic.plans import (
    RunObservation,
    RunPlan,
    ServiceObservation,
    ServingPlan,
)


class Launcher(Protocol):
    name: str

    async def rayjob_available(self) -> bool: ...

    async def httproute_available(self) -> bool:
        """Whether Gateway API's HTTPRoute is served (a spec.gateway route can be applied)."""
        ...

    async def launch_run(self, plan: RunPlan) -> int | None:
        """Start (or apply again) a run: its Job, RayJob or process."""
        ...

    async def observe_run(self, plan: RunPlan) -> RunObservation: ...

    async def delete_run(self, kind: Kind, namespace: str, name: str) -> None:
        """Remove a resource's run and everything made for it."""
        ...

    async def apply_service(self, plan: ServingPlan) -> int | None: ...

    async def observe_service(self, namespace: str, name: str) -> ServiceObservation: ...

    def chart_digest(self, chart: str) -> str:
        """The digest of a chart the launcher installs releases from ("" when it uses none)."""
        ...

    async def delete_service(self, namespace: str, name: str) -> None: ...

    async def drift_windows(
        self, namespace: str, name: str
    ) -> tuple[list[dict[str, Any]], Callable[[dict[str, Any]], dict[str, Any] | None]]:
        """The drift windows of the ready replicas, and how to have one of them evaluate a
        window (blocking; called from a thread)."""
        ...

    async def traffic_snapshot(self, namespace: str, name: str) -> tm.Snapshot | None:
        """The rollout figures (traffic_metrics) of both versions' servers, summed; None when
        not every ready one answered."""
        ...
