"""The operator does its job with exactly the chart's RBAC, and nothing more."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Kube, eventually
from tests.operator.conftest import EXAMPLES, OperatorProcess, get, report_result

pytestmark = pytest.mark.integration
CHART = Path(__file__).resolve().parents[2] / "charts" / "modelfactory"


@pytest.fixture
def operator_as_its_serviceaccount(
    operator: OperatorProcess, kube: Kube, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The chart's ServiceAccount and RBAC (namespaced install), and the operator running with
    that ServiceAccount's token instead of the admin's; the session operator pauses meanwhile."""
    release = f"mf-{namespace[-5:]}"
    rendered = kube.helm(
        "template",
        release,
        str(CHART),
        "-n",
        namespace,
        "--set",
        f"watchNamespaces={{{namespace}}}",
    ).stdout
    rbac_kinds = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    objects = [o for o in yaml.safe_load_all(rendered) if o and o["kind"] in rbac_kinds]
    kube.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )
    sa = next(o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount")
    token = kube.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").strip()
    admin = json.loads(Path(kube.kubeconfig).read_text())
    admin["users"] = [{"name": "operator", "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = "operator"
    kubeconfig = tmp_path / "operator-kubeconfig"
    kubeconfig.write_text(json.dumps(admin))
    operator.stop()
    own = OperatorProcess(
        kube,
        tmp_path,
        ["--namespace", namespace],
        {"KUBECONFIG": str(kubeconfig), "MF_LAUNCHER": "kubernetes"},
    )
    own.start()
    try:
        yield own
    finally:
        own.stop()
        operator.start()
        cluster_scoped = [o for o in objects if o["kind"].startswith("Cluster")]
        for o in cluster_scoped:
            kube.kubectl(
                "delete", o["kind"].lower(), o["metadata"]["name"], "--wait=false", check=False
            )
        (tmp_path / "sa").write_text(sa)


def test_operator_works_with_least_privilege(
    operator_as_its_serviceaccount: OperatorProcess, kube: Kube, namespace: str, example_claim: str
) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "iris-classifier.yaml"))
    eventually(
        lambda: kube.kubectl_json("get", "jobs", "-n", namespace)["items"],
        what="training Job created by the operator's ServiceAccount",
    )
    report_result(kube, namespace, "iris")
    eventually(
        lambda: get(kube, "msvc", "iris", namespace).get("status", {}).get("phase") == "Ready",
        what="ModelService Ready",
        timeout=90,
    )
    log = operator_as_its_serviceaccount.log.read_text()
    assert "Forbidden" not in log and "forbidden" not in log, log[-3000:]
    kube.kubectl(
        "delete", "-n", namespace, "-f", str(EXAMPLES / "iris-classifier.yaml"), "--timeout=60s"
    )
    assert json.loads(kube.helm("list", "-n", namespace, "-o", "json").stdout) == []


def test_operator_serviceaccount_is_refused_the_rest(kube: Kube, namespace: str) -> None:
    release = f"mf-{namespace[-5:]}"
    rendered = kube.helm("template", release, str(CHART), "-n", namespace).stdout
    sa = next(
        o["metadata"]["name"]
        for o in yaml.safe_load_all(rendered)
        if o and o["kind"] == "ServiceAccount"
    )
    who = f"--as=system:serviceaccount:{namespace}:{sa}"
    for verb, resource in (
        ("delete", "nodes"),
        ("delete", "namespaces"),
        ("create", "clusterroles"),
        ("create", "pods"),
        ("get", "configmaps"),
    ):
        answer = kube.run(
            "kubectl", "auth", "can-i", verb, resource, "-n", namespace, who, check=False
        ).stdout.strip()
        assert answer == "no", f"{verb} {resource}: {answer}"
