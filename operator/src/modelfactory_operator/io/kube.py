"""Kubernetes API access (blocking client; handlers call it through asyncio.to_thread)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelfactory_api.batchprediction import BATCHPREDICTION_PLURAL
from modelfactory_api.modelservice import MODELSERVICE_PLURAL
from modelfactory_api.trainingjob import GROUP, TRAININGJOB_PLURAL, VERSION

log = logging.getLogger("modelfactory.operator.kube")
T = TypeVar("T")
# Detail reads the operator's Role does not allow, already said once in the log.
_refused: set[str] = set()


@cache
def api_client() -> client.ApiClient:
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.ApiClient()


def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


def or_none(read: Callable[[], Any]) -> dict[str, Any] | None:
    """The object as a plain dict, or None when it does not exist."""
    try:
        obj = read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return cast(dict[str, Any], plain(obj))


def get_custom(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    return or_none(
        lambda: custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    )


def get_trainingjob(namespace: str, name: str) -> dict[str, Any] | None:
    return get_custom(TRAININGJOB_PLURAL, namespace, name)


def get_modelservice(namespace: str, name: str) -> dict[str, Any] | None:
    return get_custom(MODELSERVICE_PLURAL, namespace, name)


def get_batchprediction(namespace: str, name: str) -> dict[str, Any] | None:
    return get_custom(BATCHPREDICTION_PLURAL, namespace, name)


def list_modelservices(namespace: str) -> list[dict[str, Any]]:
    return list_custom(MODELSERVICE_PLURAL, namespace)


def list_batchpredictions(namespace: str) -> list[dict[str, Any]]:
    return list_custom(BATCHPREDICTION_PLURAL, namespace)


def list_custom(plural: str, namespace: str) -> list[dict[str, Any]]:
    res = cast(
        dict[str, Any],
        custom().list_namespaced_custom_object(GROUP, VERSION, namespace, plural),
    )
    return list(res.get("items", []))


def patch_status(plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Merge-patch the status subresource; a vanished object is not an error."""
    try:
        custom().patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": status}
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


def get_job(namespace: str, name: str) -> dict[str, Any] | None:
    return or_none(lambda: client.BatchV1Api(api_client()).read_namespaced_job(name, namespace))


def get_rayjob(namespace: str, name: str) -> dict[str, Any] | None:
    return or_none(
        lambda: custom().get_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", name)
    )


def get_deployment(namespace: str, name: str) -> dict[str, Any] | None:
    return or_none(
        lambda: client.AppsV1Api(api_client()).read_namespaced_deployment(name, namespace)
    )


def crd_exists(name: str) -> bool:
    try:
        client.ApiextensionsV1Api(api_client()).read_custom_resource_definition(name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def serves(group: str, version: str, resource: str) -> bool:
    """Whether the API server serves `resource` in group/version (discovery, as helm sees it)."""
    try:
        found = custom().get_api_resources(group, version)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return any(r.name == resource for r in found.resources or [])


def core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def plain(obj: Any) -> Any:
    return api_client().sanitize_for_serialization(obj)


def detail(what: str, read: Callable[[], T], fallback: T) -> T:
    """Reads that only add detail to a status message: when one fails (the operator's Role may
    not allow it), the message goes without it; a missing permission is logged once."""
    try:
        return read()
    except ApiException as exc:
        if exc.status == 403 and what not in _refused:
            _refused.add(what)
            log.warning(
                "reading %s is not allowed (HTTP 403): grant get and list on them to the "
                "operator to see why workloads do not start",
                what,
            )
        elif exc.status != 403:
            log.debug("reading %s failed: HTTP %s", what, exc.status)
        return fallback


def list_pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    pods = core().list_namespaced_pod(namespace, label_selector=selector)
    return [cast(dict[str, Any], plain(p)) for p in pods.items]


def pod_http_get(
    namespace: str, pod: str, port: int, path: str, limit: int = 65536
) -> tuple[int, bytes]:
    """GET a pod's HTTP endpoint through the API server's proxy: (status, first `limit`
    bytes)."""
    return _pod_http(
        lambda: core().connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:{port}",
            namespace,
            path.lstrip("/"),
            _preload_content=False,
            _request_timeout=5,
        ),
        limit,
    )


def pod_http_post(
    namespace: str, pod: str, port: int, path: str, body: dict[str, Any], limit: int = 65536
) -> tuple[int, bytes]:
    """POST JSON to a pod's HTTP endpoint through the API server's proxy (the generated client
    has no body parameter for it)."""
    api = api_client()

    def call() -> Any:
        method, url, headers, data, _ = api.param_serialize(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/{path.lstrip('/')}",
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = api.call_api(method, url, header_params=headers, body=data, _request_timeout=10)
        if resp.status >= 400:
            # The generated methods raise for these; keep one behaviour for both.
            raise ApiException(http_resp=resp.response)
        return resp.response

    return _pod_http(call, limit)


def _pod_http(call: Callable[[], Any], limit: int) -> tuple[int, bytes]:
    try:
        resp: Any = call()
    except ApiException as exc:
        if exc.status in (401, 403):
            raise
        body = exc.body if isinstance(exc.body, bytes) else str(exc.body or "").encode()
        return int(exc.status or 0), body[:limit]
    try:
        return int(resp.status), bytes(resp.read(limit))
    finally:
        resp.release_conn()


def list_trainingjobs(namespace: str) -> list[dict[str, Any]]:
    return list_custom(TRAININGJOB_PLURAL, namespace)


def get_claim(namespace: str, name: str) -> dict[str, Any] | None:
    return or_none(lambda: core().read_namespaced_persistent_volume_claim(name, namespace))


def list_events(namespace: str, involved_kind: str, involved_name: str) -> list[dict[str, Any]]:
    """The events of one object: a busy namespace's other events are never read."""
    events = core().list_namespaced_event(
        namespace,
        field_selector=f"involvedObject.kind={involved_kind},involvedObject.name={involved_name}",
    )
    return [cast(dict[str, Any], plain(e)) for e in events.items]
