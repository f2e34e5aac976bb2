"""Watch a custom resource whose CRD may come and go (KubeRay's RayJob).

kopf treats a watch that answers 404 as fatal and stops the whole operator, so uninstalling or
upgrading KubeRay would stop every reconciliation. This watch lives beside kopf instead: while the
CRD is absent it waits; when the CRD appears it lists and watches; a 404 sends it back to waiting.
Each scope (one namespace, or the whole cluster filtered by namespace patterns) gets one thread,
because the kubernetes client's watch blocks; events are handed to the operator's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from modelfactory_operator.io import kube
from modelfactory_operator.logic.scope import in_scope, scopes

log = logging.getLogger("modelfactory.operator")

OnEvent = Callable[[str, dict[str, Any]], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Resource:
    crd: str
    group: str
    version: str
    plural: str


RAYJOBS = Resource("rayjobs.ray.io", "ray.io", "v1", "rayjobs")


class OptionalWatch:
    def __init__(
        self,
        resource: Resource,
        label_selector: str,
        clusterwide: bool,
        namespaces: list[str],
        on_event: OnEvent,
        loop: asyncio.AbstractEventLoop,
        absent_poll_seconds: float = 5.0,
        watch_seconds: int = 60,
    ) -> None:
        self.resource = resource
        self.label_selector = label_selector
        self.clusterwide = clusterwide
        self.patterns = list(namespaces)
        self.on_event = on_event
        self.loop = loop
        self.absent_poll = absent_poll_seconds
        self.watch_seconds = watch_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for scope in scopes(self.clusterwide, self.patterns):
            t = threading.Thread(
                target=self._run,
                args=(scope,),
                daemon=True,
                name=f"watch {self.resource.plural}@{scope or 'cluster'}",
            )
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()

    # --- one scope, in its own thread

    def _run(self, namespace: str | None) -> None:
        where = namespace or "all namespaces"
        present = False
        failures = 0
        while not self._stop.is_set():
            try:
                if not kube.crd_exists(self.resource.crd):
                    if present:
                        log.info(
                            "%s was removed: watch of %s paused until it returns",
                            self.resource.crd,
                            where,
                        )
                    present = False
                    self._stop.wait(self.absent_poll)
                    continue
                if not present:
                    log.info(
                        "%s is installed: watching %s in %s",
                        self.resource.crd,
                        self.resource.plural,
                        where,
                    )
                present = True
                self._list_then_watch(namespace)
                failures = 0
            except ApiException as exc:
                # 404: the CRD went away under the watch; the next round waits for it.
                if exc.status != 404:
                    failures += 1
                    log.warning(
                        "watch of %s in %s failed: %s %s",
                        self.resource.plural,
                        where,
                        exc.status,
                        exc.reason,
                    )
                    self._stop.wait(min(2**failures, 30))
            except (HTTPError, OSError, ValueError) as exc:
                failures += 1
                log.warning("watch of %s in %s failed: %s", self.resource.plural, where, exc)
                self._stop.wait(min(2**failures, 30))

    def _list_then_watch(self, namespace: str | None) -> None:
        api = kube.custom()
        r = self.resource
        if namespace is None:
            lister: Callable[..., Any] = api.list_cluster_custom_object
            args: tuple[str, ...] = (r.group, r.version, r.plural)
        else:
            lister = api.list_namespaced_custom_object
            args = (r.group, r.version, namespace, r.plural)
        listed = lister(*args, label_selector=self.label_selector)
        for obj in listed.get("items", []):
            self._deliver(obj)
        version = listed["metadata"]["resourceVersion"]
        w = watch.Watch()
        # One list, then watches one after the other from the last version seen (bookmarks keep
        # it fresh): a watch the server ends after its timeout is not a reason to list again and
        # hand every RayJob to the operator once more. Only an expired version (410) is.
        while not self._stop.is_set():
            try:
                for event in w.stream(
                    lister,
                    *args,
                    label_selector=self.label_selector,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self.watch_seconds,
                    _request_timeout=self.watch_seconds + 15,
                ):
                    if self._stop.is_set():
                        w.stop()
                        return
                    if event["type"] == "ERROR":
                        # 410 Gone (history compacted) or 404 (CRD removed): start over.
                        status = (event.get("raw_object") or {}).get("code")
                        if status == 404:
                            raise ApiException(status=404, reason="watched resource is gone")
                        return
                    if event["type"] != "BOOKMARK":
                        self._deliver(event["object"])
            except ApiException as exc:
                if exc.status == 410:
                    return  # the version expired: list again
                raise
            version = w.resource_version or version

    def _deliver(self, obj: dict[str, Any]) -> None:
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        if not in_scope(namespace, self.clusterwide, self.patterns):
            return
        future = asyncio.run_coroutine_threadsafe(self.on_event(namespace, obj), self.loop)
        future.add_done_callback(_log_failure)


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("handling a watch event failed: %s", future.exception())
