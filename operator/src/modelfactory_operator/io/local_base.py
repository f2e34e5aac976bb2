"""What the local launcher's runs and services share: the state folder, and waking the
reconciler when something changes on its own (a process exits, a server gets ready)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from modelfactory_operator.logic.kinds import Kind

log = logging.getLogger("modelfactory.operator.local")
Key = tuple[str, str, str]


class LocalBase:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.reconcile: Callable[[Key], Awaitable[None]] | None = None
        self.background: set[asyncio.Task[None]] = set()

    def folder(self, kind: Kind, namespace: str, name: str) -> Path:
        """A resource's folder: <namespace>/<kind prefix>-<name>."""
        return self.dir / namespace / f"{kind.prefix}-{name}"

    def notify(self, kind: Kind, namespace: str, name: str) -> None:
        callback = self.reconcile
        if callback is None:
            return
        key = (kind.plural, namespace, name)

        async def call() -> None:
            try:
                await callback(key)
            except Exception:
                log.exception("reconcile of %s %s/%s failed", *key)

        task = asyncio.ensure_future(call())
        self.background.add(task)
        task.add_done_callback(self.background.discard)
