"""Where workloads run. The operator decides what runs; a launcher decides where."""

from __future__ import annotations

from typing import Protocol

from modelfactory_operator.logic.plans import (
    RunObservation,
    ServiceObservation,
    ServingPlan,
    TrainingPlan,
)


class Launcher(Protocol):
    name: str

    async def rayjob_available(self) -> bool: ...

    async def launch_training(self, plan: TrainingPlan) -> int | None: ...

    async def observe_training(self, plan: TrainingPlan) -> RunObservation: ...

    async def delete_training(self, namespace: str, name: str) -> None: ...

    async def apply_service(self, plan: ServingPlan) -> int | None: ...

    async def observe_service(self, namespace: str, name: str) -> ServiceObservation: ...

    async def delete_service(self, namespace: str, name: str) -> None: ...
