"""The local launcher: the same entrypoints and configuration as in the cluster, as processes
on this machine. Runs (training, scoring) are io/local_runs.py; model servers behind their
stable port are io/local_services.py; both live under one state folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelfactory_operator.logic.kinds import RUN_KINDS

from .local_runs import LocalRuns
from .local_services import LocalServices


class LocalLauncher(LocalRuns, LocalServices):
    name = "local"

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)

    async def start(self, reconciler: Any) -> None:
        self.reconcile = reconciler.reconcile
        self.dir.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        """Stopping the operator stops every process it started."""
        await self.stop_runs(RUN_KINDS)
        await self.stop_services()
