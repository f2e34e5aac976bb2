"""The cluster path on the real node: the operator from its chart, workloads in real containers.

Every namespace here is pinned to the real node (PodNodeSelector, PodTolerationRestriction) and
enforces Pod Security `restricted`, as a careful cluster would.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Kube, cluster_cli, install_crds

NODE = "mf-node"
TAINT = "modelfactory.dev/real-node"
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def create_namespace(kube: Kube, prefix: str) -> str:
    """A namespace whose pods run on the real node, made as the README says
    (`hack/cluster.py pin-namespace`), with the restricted Pod Security level enforced."""
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    pinned = cluster_cli("pin-namespace", name)
    assert pinned.returncode == 0, pinned.stderr
    kube.kubectl(
        "label",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "--overwrite",
    )
    return name


@dataclass
class RealCluster:
    kube: Kube
    images: dict[str, str]
    operator_ns: str
    ns: str

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        return self.kube.kubectl(*args, input_text=input_text)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.kube.kubectl_json("get", kind, name, "-n", namespace or self.ns)

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return dict(self.get(kind, name).get("status") or {})

    def apply(self, obj: dict[str, Any] | str) -> None:
        text = obj if isinstance(obj, str) else json.dumps(obj)
        self.kubectl("apply", "-n", self.ns, "-f", "-", input_text=text)

    def cluster_ip(self, service: str) -> str:
        svc = self.get("service", service)
        port = svc["spec"]["ports"][0]["port"]
        return f"http://{svc['spec']['clusterIP']}:{port}"

    def operator_pod(self) -> dict[str, Any]:
        pods = self.kube.kubectl_json(
            "get", "pods", "-n", self.operator_ns, "-l", "app.kubernetes.io/name=modelfactory"
        )["items"]
        running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        assert running, "no operator pod"
        return dict(running[0])

    def diagnose(self) -> str:
        out = []
        for ns in (self.operator_ns, self.ns):
            out.append(self.kube.kubectl("get", "all,pvc,events", "-n", ns, check=False)[-4000:])
        return "\n".join(out)


@pytest.fixture(scope="session")
def real_cluster(kube: Kube) -> Iterator[RealCluster]:
    if os.environ.get("MF_NO_NODE") == "1":
        pytest.skip("MF_NO_NODE=1: the cluster runs without its real node")
    state = json.loads(cluster_cli("status").stdout)
    if not state.get("node"):
        pytest.fail(
            "the local cluster runs without its real node: `hack/cluster.py down`, then "
            "`hack/cluster.py up`",
            pytrace=False,
        )
    images = state.get("images") or {}
    if not {"operator", "training", "serving"} <= set(images):
        pytest.fail("the project's images are not built: `hack/cluster.py images`", pytrace=False)
    install_crds(kube)
    operator_ns = create_namespace(kube, "rn-system")
    ns = create_namespace(kube, "rn-work")
    # The images' values as the README installs the chart: `hack/cluster.py helm-values`.
    printed = cluster_cli("helm-values")
    assert printed.returncode == 0, printed.stderr
    images_file = Path(kube.kubeconfig).parent / f"images-{operator_ns}.yaml"
    images_file.write_text(printed.stdout)
    values_file = Path(kube.kubeconfig).parent / f"values-{operator_ns}.json"
    values_file.write_text(json.dumps({"watchNamespaces": [ns]}))
    kube.helm(
        "install",
        "modelfactory",
        str(ROOT / "charts" / "modelfactory"),
        "-n",
        operator_ns,
        "-f",
        str(images_file),
        "-f",
        str(values_file),
        "--wait",
        "--timeout",
        "180s",
    )
    cluster = RealCluster(kube, images, operator_ns, ns)
    yield cluster
    # The operator removes its resources' finalizers, so they go before it does.
    kube.kubectl("delete", "tj,msvc", "--all", "-n", ns, "--timeout=120s", check=False)
    kube.helm("uninstall", "modelfactory", "-n", operator_ns, check=False)
    for name in (ns, operator_ns):
        kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def claim_directory(rc: RealCluster, claim: str) -> Path:
    """Where a bound claim's files live on the node (local-path volumes are host directories)."""
    pv = rc.get("pvc", claim, rc.ns)["spec"]["volumeName"]
    spec = rc.get("pv", pv)["spec"]
    return Path((spec.get("hostPath") or spec.get("local") or {})["path"])
