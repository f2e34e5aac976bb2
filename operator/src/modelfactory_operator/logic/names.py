"""Names and labels of the objects the operator creates."""

from __future__ import annotations

import hashlib
import re

PART_OF = "modelfactory"
MANAGED_BY = "modelfactory-operator"
RUN_ID_LABEL = "modelfactory.dev/run-id"
RETRAIN_ANNOTATION = "modelfactory.dev/retrain"
MODEL_VERSION_ANNOTATION = "modelfactory.dev/model-version"
# Helm keeps release names under 53 characters (it appends its own suffixes to secrets).
RELEASE_NAME_MAX = 53


def short_hash(*parts: object, length: int = 8) -> str:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:length]


# app.kubernetes.io/name of the stable version's model servers.
SERVICE_APP = "modelfactory-serving"


def dns_name(*parts: str, max_len: int = 63) -> str:
    """Join parts into a DNS-1123 label; long names are cut and get a stable hash suffix."""
    raw = "-".join(p for p in parts if p)
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    if len(name) <= max_len:
        return name
    suffix = short_hash(raw)
    return f"{name[: max_len - len(suffix) - 1].rstrip('-')}-{suffix}"


def release_name(kind_prefix: str, name: str) -> str:
    return dns_name(kind_prefix, name, max_len=RELEASE_NAME_MAX)


def run_id(uid: str, spec_hash: str, retrain: str | None) -> str:
    """Deterministic per (object, spec generation, retrain request): a restarted operator
    computes the same id and therefore never launches a second run for the same request."""
    return short_hash(uid, spec_hash, retrain or "")


def labels(component: str, instance: str, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
