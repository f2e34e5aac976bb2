"""The helm wrapper bounds how many helm processes run at once and how long each may take."""

import asyncio
import os
from pathlib import Path

import pytest

from modelfactory_operator.io.helm import Helm, HelmError

pytestmark = pytest.mark.unit

# Stands in for helm: records how many copies run at once, then sleeps.
SLOW_HELM = """#!/bin/sh
dir=$(dirname "$0")/running
mkdir -p "$dir"
touch "$dir/$$"
ls "$dir" | wc -l >> "$(dirname "$0")/seen"
sleep "${SLEEP:-0.3}"
rm -f "$dir/$$"
echo '{"version": 1}'
"""


@pytest.fixture
def slow_helm(tmp_path: Path) -> Path:
    binary = tmp_path / "helm"
    binary.write_text(SLOW_HELM)
    binary.chmod(0o755)
    return binary


def test_at_most_n_helm_processes_at_once(slow_helm: Path) -> None:
    helm = Helm(str(slow_helm), concurrency=3)

    async def burst() -> list[int]:
        return await asyncio.gather(
            *(helm.upgrade_install(f"r{i}", "chart", "ns", {}) for i in range(12))
        )

    assert asyncio.run(burst()) == [1] * 12
    seen = [int(n) for n in (slow_helm.parent / "seen").read_text().split()]
    assert len(seen) == 12 and max(seen) <= 3


def test_a_helm_call_that_hangs_is_killed(slow_helm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEEP", "30")
    helm = Helm(str(slow_helm), concurrency=1, timeout_seconds=0.5)

    async def call() -> None:
        await helm.upgrade_install("r", "chart", "ns", {})

    with pytest.raises(HelmError, match=r"did not finish within 0\.5s"):
        asyncio.run(call())
    running = slow_helm.parent / "running"
    pids = [int(p.name) for p in running.iterdir()] if running.exists() else []
    for pid in pids:  # the killed process never got to clean up after itself
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
