"""A ModelService behind a Gateway: the operator's HTTPRoute, accepted by the API server with
Gateway API's own CRDs, carrying a canary's weights (object-level: no gateway runs here)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLUSTER, Kube, eventually
from tests.operator.conftest import OperatorProcess, apply, condition, get

pytestmark = pytest.mark.integration
V1 = "sha256:" + "ab" * 32
V2 = "sha256:" + "cd" * 32
CRDS = ("gatewayclasses", "gateways", "httproutes")


@pytest.fixture
def gateway_api(kube: Kube) -> Iterator[Path]:
    """Gateway API's standard CRDs (from its Go module, fetched by `hack/cluster.py build`),
    removed afterwards: every other test sees a cluster without them."""
    folder = Path(
        subprocess.run(
            [*CLUSTER, "gateway-api-crds"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    files = [folder / f"gateway.networking.k8s.io_{kind}.yaml" for kind in CRDS]
    assert all(f.exists() for f in files), f"no Gateway API CRDs in {folder}: run the build"
    yield folder
    for f in files:
        kube.kubectl("delete", "-f", str(f), "--ignore-not-found", "--wait=false", check=False)


def msvc(uri: str, digest: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": "routed"},
        "spec": {
            "model": {"uri": uri, "digest": digest},
            "gateway": {
                "parentRefs": [{"name": "public", "namespace": "gateways"}],
                "hostnames": ["models.example.com"],
            },
            "rollout": {"strategy": "Canary", "steps": [25, 100], "stepIntervalSeconds": 600},
        },
    }


def route(kube: Kube, namespace: str) -> dict[str, Any] | None:
    out = kube.kubectl("get", "httproute", "routed", "-n", namespace, "-o", "json", check=False)
    return json.loads(out) if out.strip() else None


def test_gateway_route_carries_the_canary_split(
    operator: OperatorProcess, kube: Kube, namespace: str, gateway_api: Path
) -> None:
    apply(kube, namespace, msvc("s3://models/iris/3", V1))
    # Without Gateway API: served all the same, and the status says why there is no route.
    ms = eventually(
        lambda: (
            (m := get(kube, "msvc", "routed", namespace)).get("status", {}).get("phase") == "Ready"
            and m
        ),
        what="Ready without Gateway API",
    )
    missing = condition(ms, "HTTPRoute")
    assert missing["status"] == "False" and missing["reason"] == "GatewayAPINotInstalled"
    for kind in CRDS:
        kube.kubectl(
            "apply",
            "--server-side",
            "-f",
            str(gateway_api / f"gateway.networking.k8s.io_{kind}.yaml"),
        )
    kube.wait_established(*(f"{kind}.gateway.networking.k8s.io" for kind in CRDS))
    # A new version is needed for the operator to look again; the spec change brings both.
    apply(kube, namespace, msvc("s3://models/iris/4", V2))
    r = eventually(
        lambda: (
            (x := route(kube, namespace)) and len(x["spec"]["rules"][-1]["backendRefs"]) == 2 and x
        ),
        what="the canary's route",
        timeout=90,
    )
    assert r["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public",
            "namespace": "gateways",
        }
    ]
    assert r["spec"]["hostnames"] == ["models.example.com"]
    weights = {b["name"]: b["weight"] for b in r["spec"]["rules"][-1]["backendRefs"]}
    assert weights == {"routed": 75, "routed-candidate": 25}
    pinned = {
        rule["matches"][0]["headers"][0]["value"]: rule["backendRefs"][0]["name"]
        for rule in r["spec"]["rules"][:-1]
    }
    assert pinned == {"stable": "routed", "canary": "routed-candidate"}
    assert r["metadata"]["ownerReferences"][0]["kind"] == "ModelService"
    ms = get(kube, "msvc", "routed", namespace)
    assert condition(ms, "HTTPRoute")["status"] == "True"
    assert {t["role"]: t["weight"] for t in ms["status"]["traffic"]} == {"stable": 75, "canary": 25}
    # The stable servers leave the split to the route.
    dep = get(kube, "deployment", "routed", namespace)
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MF_ROUTE_MODE"] == "none"
    # Back to the stable version: the route sends everything to the stable servers again.
    apply(kube, namespace, msvc("s3://models/iris/3", V1))
    eventually(
        lambda: (
            [b["name"] for b in route(kube, namespace)["spec"]["rules"][-1]["backendRefs"]]
            == ["routed"]
        ),
        what="the route without the canary",
        timeout=90,
    )
    kube.kubectl("delete", "msvc", "routed", "-n", namespace)
