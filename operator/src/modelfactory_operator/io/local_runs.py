"""Runs of the local launcher: a run (training or scoring) is one process of the kind's
entrypoint with the same configuration a pod gets, retried like a Job (`backoffLimit`, never
after the permanent exit code), and adopted by an operator restarted meanwhile."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from typing import Any

from modelfactory_api import timestamps
from modelfactory_api.run import ExitCode
from modelfactory_operator.logic import pod
from modelfactory_operator.logic.kinds import Kind
from modelfactory_operator.logic.plans import RunObservation, RunPlan

from .local_base import LocalBase, log
from .processes import entrypoint, pid_alive, read_exit, spawn, stop_process, tail

# Exit codes after which a run is not tried again.
FINAL_EXIT_CODES = (ExitCode.OK, ExitCode.PERMANENT)


class LocalRuns(LocalBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    def _run_record(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            path = self.folder(kind, namespace, name) / "run.json"
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return None

    def _save_run(self, kind: Kind, namespace: str, name: str, rec: dict[str, Any]) -> None:
        path = self.folder(kind, namespace, name) / "run.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec))
        tmp.replace(path)

    async def rayjob_available(self) -> bool:
        return True  # workers > 0 runs the same search on this machine's local Ray

    async def launch_run(self, plan: RunPlan) -> int | None:
        rec = self._run_record(plan.kind, plan.namespace, plan.name)
        alive = rec is not None and pid_alive(rec.get("pid"))
        if rec is not None and alive and (rec["runId"] != plan.run_id or plan.suspend):
            await stop_process(rec.get("pid"))
            alive = False
        if plan.suspend:
            return None
        if rec is not None and rec["runId"] == plan.run_id and (alive or rec.get("final")):
            self._watch_run(plan)
            return None
        attempts = rec["attempts"] + 1 if rec and rec["runId"] == plan.run_id else 1
        self._start_run(plan, attempts)
        return None

    def _start_run(self, plan: RunPlan, attempts: int) -> None:
        d = self.folder(plan.kind, plan.namespace, plan.name)
        env = {
            **os.environ,
            **pod.literal_env(plan.chart_values.get("pod") or {}),
            **plan.runtime.to_env(),
        }
        pid = spawn([entrypoint(plan.entrypoint)], env, d / "run.log", d / "exit")
        rec = {
            "runId": plan.run_id,
            "pid": pid,
            "attempts": attempts,
            "startTime": timestamps.rfc3339(),
            "backoffLimit": plan.chart_values.get("backoffLimit", 0),
            "final": False,
        }
        self._save_run(plan.kind, plan.namespace, plan.name, rec)
        log.info(
            "started %s %s/%s run %s (pid %s)",
            plan.entrypoint,
            plan.namespace,
            plan.name,
            plan.run_id,
            pid,
        )
        self._watch_run(plan)

    def _watch_run(self, plan: RunPlan) -> None:
        key = (plan.namespace, f"{plan.plural}/{plan.name}")
        task = self.run_tasks.get(key)
        if task is not None and not task.done():
            return
        self.run_tasks[key] = asyncio.ensure_future(self._supervise_run(plan))

    async def _supervise_run(self, plan: RunPlan) -> None:
        """Wake the reconciler when the process exits; observe_run reads the outcome."""
        while True:
            rec = self._run_record(plan.kind, plan.namespace, plan.name)
            if rec is None or rec["runId"] != plan.run_id or rec.get("final"):
                return
            if not pid_alive(rec["pid"]):
                self.notify(plan.kind, plan.namespace, plan.name)
                return
            await asyncio.sleep(0.5)

    async def observe_run(self, plan: RunPlan) -> RunObservation:
        rec = self._run_record(plan.kind, plan.namespace, plan.name)
        if rec is None or rec["runId"] != plan.run_id:
            return RunObservation(state="absent")
        common: dict[str, Any] = {
            "start_time": rec.get("startTime"),
            "attempts": int(rec.get("attempts", 1)),
        }
        folder = self.folder(plan.kind, plan.namespace, plan.name)
        if not rec.get("final"):
            if pid_alive(rec.get("pid")):
                self._watch_run(plan)
                return RunObservation(state="running", **common)
            code = read_exit(folder / "exit")
            # Killed (no exit code, e.g. the operator stopped it) or a retryable failure:
            # absent makes the reconciler launch the run again.
            if code is None:
                return RunObservation(state="absent", **common)
            if code not in FINAL_EXIT_CODES and rec["attempts"] <= int(
                rec.get("backoffLimit") or 0
            ):
                return RunObservation(state="absent", **common)
            rec.update(exitCode=code, completionTime=timestamps.rfc3339(), final=True)
            self._save_run(plan.kind, plan.namespace, plan.name, rec)
        if rec.get("exitCode") == ExitCode.OK:
            return RunObservation(
                state="succeeded", completion_time=rec.get("completionTime"), **common
            )
        return RunObservation(
            state="failed",
            reason="ProcessFailed",
            message=(
                f"{plan.entrypoint} exited with code {rec.get('exitCode')}: "
                f"{tail(folder / 'run.log')}"
            ),
            completion_time=rec.get("completionTime"),
            **common,
        )

    async def delete_run(self, kind: Kind, namespace: str, name: str) -> None:
        task = self.run_tasks.pop((namespace, f"{kind.plural}/{name}"), None)
        if task:
            task.cancel()
        rec = self._run_record(kind, namespace, name)
        if rec:
            await stop_process(rec.get("pid"), grace=5)
        shutil.rmtree(self.folder(kind, namespace, name), ignore_errors=True)

    async def stop_runs(self, kinds: tuple[Kind, ...]) -> None:
        """Stop every run process (the operator is stopping)."""
        for key in list(self.run_tasks):
            self.run_tasks.pop(key).cancel()
        for kind in kinds:
            for run in self.dir.glob(f"*/{kind.prefix}-*/run.json"):
                rec = json.loads(run.read_text())
                await stop_process(rec.get("pid"), grace=5)
