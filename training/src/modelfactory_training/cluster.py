"""Joining or starting Ray."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from modelfactory_api.runtime import RaySizing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterInfo:
    cpus: int
    largest_node_cpus: int
    nodes: int
    started_here: bool
    largest_node_memory: int = 0  # bytes of Ray's logical memory resource on the largest node


def describe() -> ClusterInfo:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    per_node = [int(n.get("Resources", {}).get("CPU", 0)) for n in nodes]
    memory = [int(n.get("Resources", {}).get("memory", 0)) for n in nodes]
    total = int(ray.cluster_resources().get("CPU", 0))
    return ClusterInfo(
        cpus=max(total, 1),
        largest_node_cpus=max([*per_node, 1]),
        nodes=len(nodes),
        started_here=False,
        largest_node_memory=max([*memory, 0]),
    )


def local_ray_args(sizing: RaySizing | None) -> dict[str, Any]:
    """ray.init arguments of a Ray started here: as big as the pod's requests, not the node.

    Unsized, Ray counts every CPU of the node (a pod with a 1-CPU request would run a trial per
    node CPU) and takes its object store from the node's memory, not the pod's limit.
    """
    # Ray nices its workers to 15 by default; here they are the job itself, and niced they lose
    # the CPU to any other process on a shared node.
    args: dict[str, Any] = {"include_dashboard": False, "_system_config": {"worker_niceness": 0}}
    if sizing is not None:
        args.update(
            num_cpus=sizing.numCpus,
            object_store_memory=sizing.objectStoreBytes,
            _memory=sizing.heap_bytes,
        )
    return args


@contextmanager
def ray_session(sizing: RaySizing | None = None) -> Iterator[ClusterInfo]:
    """The Ray cluster at RAY_ADDRESS (as in a RayJob), an already connected one, or a local one
    sized by `sizing`.

    A local Ray started here is shut down on exit; one started by the caller is left running.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # The legacy console output honours verbose=0; the new one prints tables to stdout.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    started = False
    if not ray.is_initialized():
        quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        if os.environ.get("RAY_ADDRESS"):
            log.info("joining ray cluster", extra={"address": os.environ["RAY_ADDRESS"]})
            ray.init(**quiet)
        else:
            log.info("starting ray", extra={"sizing": sizing.model_dump() if sizing else None})
            ray.init(**local_ray_args(sizing), **quiet)
        started = True
    try:
        info = describe()
        yield replace(info, started_here=started)
    finally:
        if started:
            ray.shutdown()
