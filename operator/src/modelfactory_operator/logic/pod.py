"""spec.pod -> the `pod` chart values of both workload charts, and what a local process gets."""

from __future__ import annotations

from typing import Any

from modelfactory_api.pod import PodSettings


def values(pod: PodSettings) -> dict[str, Any]:
    """Chart values in the shape Kubernetes' pod spec uses (imagePullSecrets stay plain names)."""
    return {
        "serviceAccountName": pod.serviceAccountName,
        "imagePullSecrets": list(pod.imagePullSecrets),
        "nodeSelector": dict(pod.nodeSelector),
        "tolerations": [t.model_dump(exclude_none=True) for t in pod.tolerations],
        "env": [e.model_dump(exclude_none=True) for e in pod.env],
        "envFrom": [e.model_dump(exclude_none=True) for e in pod.envFrom],
    }


def literal_env(pod_values: dict[str, Any]) -> dict[str, str]:
    """The env entries with a literal value: all a process outside the cluster can be given
    (valueFrom and envFrom read Secrets and ConfigMaps that only pods see)."""
    return {e["name"]: e["value"] for e in pod_values.get("env") or [] if "value" in e}
