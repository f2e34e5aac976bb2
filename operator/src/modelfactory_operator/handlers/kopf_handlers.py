"""kopf registrations: every trigger ends in one idempotent reconcile of the affected resource."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from modelfactory_api.trainingjob import GROUP, VERSION
from modelfactory_operator.io.helm import HelmError
from modelfactory_operator.logic.names import PART_OF

log = logging.getLogger("modelfactory.operator")
# Helm sets managed-by on what it installs; part-of marks every child of a Model Factory resource.
MANAGED = {"app.kubernetes.io/part-of": PART_OF}


async def guarded(action: Callable[[], Awaitable[None]], retry: int) -> None:
    """Transient failures retry with backoff; nothing else escapes as a crash."""
    try:
        await action()
    except (HelmError, ApiException, OSError) as exc:
        delay = min(2 ** min(retry, 6), 60)
        raise kopf.TemporaryError(f"{type(exc).__name__}: {exc}"[:500], delay=delay) from exc


async def best_effort(action: Callable[[], Awaitable[None]]) -> None:
    """For watch events, which kopf does not retry: the next event or the resync catches up."""
    try:
        await action()
    except Exception as exc:
        log.warning("reconcile after a watch event failed: %s", exc)


# --- TrainingJob


@kopf.on.resume(GROUP, VERSION, "trainingjobs")
@kopf.on.create(GROUP, VERSION, "trainingjobs")
@kopf.on.update(GROUP, VERSION, "trainingjobs")
async def trainingjob_changed(
    namespace: str, name: str, memo: kopf.Memo, retry: int, **_: Any
) -> None:
    await guarded(lambda: memo.reconciler.trainingjob(namespace, name), retry)


@kopf.on.event(GROUP, VERSION, "trainingjobs")
async def trainingjob_event(
    event: dict[str, Any], namespace: str, name: str, memo: kopf.Memo, **_: Any
) -> None:
    # Status writes (the training runtime's result and progress) arrive here.
    if event.get("type") in ("ADDED", "MODIFIED"):
        await best_effort(lambda: memo.reconciler.trainingjob(namespace, name))


@kopf.on.delete(GROUP, VERSION, "trainingjobs")
async def trainingjob_deleted(
    namespace: str, name: str, memo: kopf.Memo, retry: int, **_: Any
) -> None:
    await guarded(lambda: memo.launcher.delete_training(namespace, name), retry)


@kopf.timer(GROUP, VERSION, "trainingjobs", interval=120.0, idle=60.0)
async def trainingjob_resync(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    await best_effort(lambda: memo.reconciler.trainingjob(namespace, name))


# --- ModelService


@kopf.on.resume(GROUP, VERSION, "modelservices")
@kopf.on.create(GROUP, VERSION, "modelservices")
@kopf.on.update(GROUP, VERSION, "modelservices")
async def modelservice_changed(
    namespace: str, name: str, memo: kopf.Memo, retry: int, **_: Any
) -> None:
    await guarded(lambda: memo.reconciler.modelservice(namespace, name), retry)


@kopf.on.delete(GROUP, VERSION, "modelservices")
async def modelservice_deleted(
    namespace: str, name: str, memo: kopf.Memo, retry: int, **_: Any
) -> None:
    await guarded(lambda: memo.launcher.delete_service(namespace, name), retry)


@kopf.timer(GROUP, VERSION, "modelservices", interval=120.0, idle=60.0)
async def modelservice_resync(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    await best_effort(lambda: memo.reconciler.modelservice(namespace, name))


# --- children: their status flows to the parent without polling


def parent_of(labels: dict[str, str]) -> tuple[str, str] | None:
    component = labels.get("app.kubernetes.io/component")
    instance = labels.get("app.kubernetes.io/instance")
    if not instance or component not in ("training", "serving"):
        return None
    return component, instance


async def child_changed(labels: dict[str, str], namespace: str, memo: kopf.Memo) -> None:
    parent = parent_of(labels)
    if parent is None:
        return
    component, instance = parent
    if component == "training":
        await best_effort(lambda: memo.reconciler.trainingjob(namespace, instance))
    else:
        await best_effort(lambda: memo.reconciler.modelservice(namespace, instance))


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
# Pods: a training pod that cannot start (image, scheduling, claim) says why without waiting.
@kopf.on.event("", "v1", "pods", labels=MANAGED)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
async def child_event(labels: dict[str, str], namespace: str, memo: kopf.Memo, **_: Any) -> None:
    await child_changed(labels, namespace, memo)


# RayJobs are children too, but their CRD is optional and may come and go: kopf stops the whole
# operator when a watch answers 404, so they are watched by io.optional_watch (see main.py).
RAYJOB_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED.items())
