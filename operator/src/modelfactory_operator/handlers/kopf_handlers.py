"""kopf registrations: every trigger ends in one idempotent reconcile of the affected resource."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from modelfactory_api.trainingjob import GROUP, VERSION
from modelfactory_operator.io.helm import HelmError
from modelfactory_operator.logic import kinds, release, resync
from modelfactory_operator.logic.kinds import KINDS, Kind
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


# --- the kinds: one set of registrations per kind of the registry (logic/kinds.py)


def register(kind: Kind) -> None:
    async def changed(namespace: str, name: str, memo: kopf.Memo, retry: int, **_: Any) -> None:
        await guarded(lambda: memo.reconciler.reconcile((kind.plural, namespace, name)), retry)

    async def deleted(
        body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, retry: int, **_: Any
    ) -> None:
        launcher = memo.launcher
        if kind.runs:
            await removing(body, lambda: launcher.delete_run(kind, namespace, name), retry, memo)
        else:
            await removing(body, lambda: launcher.delete_service(namespace, name), retry, memo)

    async def status_event(
        event: dict[str, Any], namespace: str, name: str, memo: kopf.Memo, **_: Any
    ) -> None:
        # Status writes (a run's progress and result, written by its workload) arrive here.
        if event.get("type") in ("ADDED", "MODIFIED"):
            await memo.reconciler.nudge((kind.plural, namespace, name))

    # Handler ids (kopf's progress annotations and log lines name them): <kind>_changed, ...
    prefix = kind.kind.lower()
    for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on(GROUP, VERSION, kind.plural, id=f"{prefix}_changed")(changed)
    kopf.on.delete(GROUP, VERSION, kind.plural, id=f"{prefix}_deleted")(deleted)
    if kind.runs:
        kopf.on.event(GROUP, VERSION, kind.plural, id=f"{prefix}_event")(status_event)


for _kind in KINDS:
    register(_kind)


# No per-resource timers: one resync loop walks every resource, spread over its period
# (Reconciler.resync_forever, started in main.py).


# --- children: their status flows to the parent without polling


async def child_changed(
    labels: dict[str, str], namespace: str, memo: kopf.Memo, event_type: str | None = "MODIFIED"
) -> None:
    parent = kinds.parent_of(labels)
    if parent is None:
        return
    kind, instance = parent
    key = (kind.plural, namespace, instance)
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
