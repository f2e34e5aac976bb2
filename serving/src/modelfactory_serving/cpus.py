"""How many CPUs this process may use: the pod's, not the node's."""

from __future__ import annotations

import math
import os
from pathlib import Path

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cpus_from_cpu_max(text: str, affinity: int) -> int:
    """A cgroup v2 cpu.max ("<quota> <period>" or "max <period>") as whole CPUs, at least one
    and never more than the CPUs the process may run on."""
    parts = text.split()
    if len(parts) == 2 and parts[0] != "max":
        try:
            quota, period = int(parts[0]), int(parts[1])
        except ValueError:
            return affinity
        if quota > 0 and period > 0:
            return max(1, min(affinity, math.ceil(quota / period)))
    return affinity


def cpu_budget() -> int:
    affinity = len(os.sched_getaffinity(0))
    try:
        return cpus_from_cpu_max(CPU_MAX.read_text(), affinity)
    except OSError:
        return affinity


def threads_for(asked: int, budget: int) -> int:
    """Threads for one model run: what was asked for, never more than the CPUs the process
    may use."""
    return max(1, min(asked, budget))
