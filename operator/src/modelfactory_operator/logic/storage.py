"""pvc://<claim>/<path> URIs: the operator mounts the claim and hands workloads a file path.

Workloads only ever see file:// URIs under a mount root; statuses keep the portable pvc:// form,
so a model trained on a claim is served from the same claim.
"""

from __future__ import annotations

from typing import Any

from modelfactory_api.uris import check_uri

PVC_SCHEME = "pvc://"
CLUSTER_MOUNT_ROOT = "/mnt/pvc"


def claim_of(uri: str) -> str | None:
    if not uri.startswith(PVC_SCHEME):
        return None
    return uri[len(PVC_SCHEME) :].split("/", 1)[0]


def to_workload(uri: str, root: str, field: str = "uri") -> str:
    """pvc://claim/a/b -> file://<root>/claim/a/b; every other URI unchanged. A `..` segment
    (which would leave the claim's mount) is a ValueError naming `field`."""
    check_uri(uri, field)
    if not uri.startswith(PVC_SCHEME):
        return uri
    return f"file://{root.rstrip('/')}/{uri[len(PVC_SCHEME) :]}"


def from_workload(uri: str, root: str) -> str:
    """The inverse of to_workload for URIs a workload reports back."""
    prefix = f"file://{root.rstrip('/')}/"
    return PVC_SCHEME + uri[len(prefix) :] if uri.startswith(prefix) else uri


def mounts(uris: list[str], root: str, read_only: bool) -> dict[str, list[dict[str, Any]]]:
    """Chart values `volumes` and `volumeMounts` for every claim the URIs name."""
    claims = sorted({c for c in (claim_of(u) for u in uris) if c})
    volumes = [
        {"name": f"pvc-{i}", "persistentVolumeClaim": {"claimName": c, "readOnly": read_only}}
        for i, c in enumerate(claims)
    ]
    volume_mounts = [
        {"name": f"pvc-{i}", "mountPath": f"{root.rstrip('/')}/{c}", "readOnly": read_only}
        for i, c in enumerate(claims)
    ]
    return {"volumes": volumes, "volumeMounts": volume_mounts}
