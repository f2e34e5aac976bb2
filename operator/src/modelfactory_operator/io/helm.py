"""The helm binary: one release per custom resource."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
from typing import Any


class HelmError(RuntimeError):
    pass


class Helm:
    def __init__(
        self,
        binary: str = "helm",
        kubeconfig: str | None = None,
        concurrency: int = 4,
        timeout_seconds: float = 120.0,
    ) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.timeout_seconds = timeout_seconds
        # Every helm process is a Go binary of its own: a burst of them starves the node.
        self.slots = asyncio.Semaphore(concurrency)

    async def _run(self, *args: str) -> str:
        env = dict(os.environ)
        if self.kubeconfig:
            env["KUBECONFIG"] = self.kubeconfig
        async with self.slots:
            proc = await asyncio.create_subprocess_exec(
                self.binary,
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,  # a timeout kills helm and anything it started
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(), self.timeout_seconds)
            except TimeoutError:
                await self._kill(proc)
                raise HelmError(
                    f"helm {args[0]} did not finish within {self.timeout_seconds:g}s"
                ) from None
            except asyncio.CancelledError:
                await self._kill(proc)
                raise
        if proc.returncode != 0:
            raise HelmError(f"helm {args[0]} failed: {err.decode().strip()[-2000:]}")
        return out.decode()

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def upgrade_install(
        self, release: str, chart: str, namespace: str, values: dict[str, Any]
    ) -> int:
        """Install or upgrade without waiting for readiness; returns the release revision."""
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(values, f)
            path = f.name
        args = (
            "upgrade",
            "--install",
            release,
            chart,
            "--namespace",
            namespace,
            "--values",
            path,
            "--output",
            "json",
            "--history-max",
            "5",
        )
        try:
            try:
                out = await self._run(*args)
            except HelmError as exc:
                if "another operation" not in str(exc):
                    raise
                await self.recover_pending(release, namespace)
                out = await self._run(*args)
        finally:
            os.unlink(path)
        return int(json.loads(out).get("version", 0))

    async def recover_pending(self, release: str, namespace: str) -> None:
        """Undo a release left pending by a helm process that died (an operator killed mid-way).

        Only the operator runs helm on its releases, one at a time per resource, so a pending
        release found here has no live helm process behind it.
        """
        status = json.loads(
            await self._run("status", release, "--namespace", namespace, "--output", "json")
        )
        state = (status.get("info") or {}).get("status", "")
        if state == "pending-install":
            await self._run("uninstall", release, "--namespace", namespace)
        elif state.startswith("pending-"):
            await self._run("rollback", release, "--namespace", namespace)

    async def uninstall(self, release: str, namespace: str) -> None:
        try:
            await self._run("uninstall", release, "--namespace", namespace, "--wait=false")
        except HelmError as exc:
            if "not found" not in str(exc):
                raise
