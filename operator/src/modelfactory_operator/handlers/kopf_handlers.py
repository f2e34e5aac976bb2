"""kopf registrations: every trigger ends in one idempotent reconcile of the affected resource."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from modelfactory_api.batchprediction import BATCHPREDICTION_PLURAL
from modelfactory_api.modelservice import MODELSERVICE_PLURAL
from modelfactory_api.trainingjob import GROUP, TRAININGJOB_PLURAL, VERSION
from modelfactory_operator.io.helm import HelmError
from modelfactory_operator.logic import release, resync
from modelfactory_operator.logic.names import PART_OF

log = logging.getLogger("modelfactory.operator")
# Helm sets managed-by on what it installs; part-of marks every child of a Model Factory resource.
MANAGED = {"app.kubernetes.io/part-of": PART_OF}
# The resource a child belongs to, by its app.kubernetes.io/component.
PARENTS = {
    "training": TRAININGJOB_PLURAL,
    "serving": MODELSERVICE_PLURAL,
    "batch": BATCHPREDICTION_PLURAL,
}


async def guarded(action: Callable[[], Awaitable[None]], retry: int) -> None:
    """Transient failures retry with backoff; nothing else escapes as a crash."""
    try:
        await action()
    except (HelmError, ApiException, OSError) as exc:
        delay = min(2 ** min(retry, 6), 60)
        raise kopf.TemporaryError(f"{type(exc).__name__}: {exc}"[:500], delay=delay) from exc


async def removing(
    body: kopf.Body, action: Callable[[], Awaitable[None]], retry: int, memo: kopf.Memo
) -> None:
    """Remove a deleted resource's release. A release that cannot be removed (its CRDs gone, the
    API refusing) is tried a bounded number of times; then the finalizer goes anyway, with a
    Warning: the resource and its namespace never stay Terminating forever."""
    try:
        await action()
    except (HelmError, ApiException, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:800]
        limit = memo.reconciler.settings.delete_retries
        if not release.removal_gives_up(retry, limit):
            raise kopf.TemporaryError(error, delay=release.removal_delay(retry)) from exc
        message = (
            f"the Helm release could not be removed after {retry + 1} tries; letting the "
            f"resource go (its children are garbage-collected through owner references): {error}"
        )
        log.warning("%s", message)
        kopf.warn(body, reason="ReleaseNotRemoved", message=message[:1000])


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
        await memo.reconciler.nudge((TRAININGJOB_PLURAL, namespace, name))


@kopf.on.delete(GROUP, VERSION, "trainingjobs")
async def trainingjob_deleted(
    body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, retry: int, **_: Any
) -> None:
    await removing(body, lambda: memo.launcher.delete_training(namespace, name), retry, memo)


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
    body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, retry: int, **_: Any
) -> None:
    await removing(body, lambda: memo.launcher.delete_service(namespace, name), retry, memo)


# --- BatchPrediction


@kopf.on.resume(GROUP, VERSION, "batchpredictions")
@kopf.on.create(GROUP, VERSION, "batchpredictions")
@kopf.on.update(GROUP, VERSION, "batchpredictions")
async def batchprediction_changed(
    namespace: str, name: str, memo: kopf.Memo, retry: int, **_: Any
) -> None:
    await guarded(lambda: memo.reconciler.batchprediction(namespace, name), retry)


@kopf.on.event(GROUP, VERSION, "batchpredictions")
async def batchprediction_event(
    event: dict[str, Any], namespace: str, name: str, memo: kopf.Memo, **_: Any
) -> None:
    # Status writes (the scoring runtime's progress and result) arrive here.
    if event.get("type") in ("ADDED", "MODIFIED"):
        await memo.reconciler.nudge((BATCHPREDICTION_PLURAL, namespace, name))


@kopf.on.delete(GROUP, VERSION, "batchpredictions")
async def batchprediction_deleted(
    body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, retry: int, **_: Any
) -> None:
    await removing(
        body,
        lambda: memo.launcher.delete_training(namespace, name, BATCHPREDICTION_PLURAL),
        retry,
        memo,
    )


# No per-resource timers: one resync loop walks every resource, spread over its period
# (Reconciler.resync_forever, started in main.py).


# --- children: their status flows to the parent without polling


def parent_of(labels: dict[str, str]) -> tuple[str, str] | None:
    component = labels.get("app.kubernetes.io/component")
    instance = labels.get("app.kubernetes.io/instance")
    if not instance or component not in PARENTS:
        return None
    return component, instance


async def child_changed(
    labels: dict[str, str], namespace: str, memo: kopf.Memo, event_type: str | None = "MODIFIED"
) -> None:
    parent = parent_of(labels)
    if parent is None:
        return
    component, instance = parent
    key = (PARENTS[component], namespace, instance)
    if resync.child_event_matters(event_type, key in memo.reconciler.known):
        await memo.reconciler.nudge(key)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
# Pods: a training pod that cannot start (image, scheduling, claim) says why without waiting.
@kopf.on.event("", "v1", "pods", labels=MANAGED)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
async def child_event(
    event: dict[str, Any], labels: dict[str, str], namespace: str, memo: kopf.Memo, **_: Any
) -> None:
    await child_changed(labels, namespace, memo, event.get("type"))


# RayJobs are children too, but their CRD is optional and may come and go: kopf stops the whole
# operator when a watch answers 404, so they are watched by io.optional_watch (see main.py).
RAYJOB_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED.items())
