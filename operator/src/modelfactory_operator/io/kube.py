"""Kubernetes API access (blocking client; handlers call it through asyncio.to_thread)."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelfactory_api.modelservice import MODELSERVICE_PLURAL
from modelfactory_api.trainingjob import GROUP, TRAININGJOB_PLURAL, VERSION


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
    return cast(dict[str, Any], api_client().sanitize_for_serialization(obj))


def get_custom(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    return or_none(
        lambda: custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    )


def get_trainingjob(namespace: str, name: str) -> dict[str, Any] | None:
    return get_custom(TRAININGJOB_PLURAL, namespace, name)


def get_modelservice(namespace: str, name: str) -> dict[str, Any] | None:
    return get_custom(MODELSERVICE_PLURAL, namespace, name)


def list_modelservices(namespace: str) -> list[dict[str, Any]]:
    res = cast(
        dict[str, Any],
        custom().list_namespaced_custom_object(GROUP, VERSION, namespace, MODELSERVICE_PLURAL),
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
