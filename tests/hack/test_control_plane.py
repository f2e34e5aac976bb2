"""The local control plane is a real Kubernetes: CRDs, Helm, scheduling under kwok, RBAC."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Kube

pytestmark = pytest.mark.integration

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.modelfactory.dev}
spec:
  group: test.modelfactory.dev
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer, minimum: 1}}}
          status: {type: object, properties: {phase: {type: string}}}
"""


def wait_for(check, timeout: float = 60, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_nodes_are_ready(kube: Kube) -> None:
    nodes = kube.kubectl_json("get", "nodes")["items"]
    ready = [
        n
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    ]
    assert len(ready) >= 3
    assert "v1.34" in kube.kubectl("version", "-o", "json")


def test_custom_resource_lifecycle(kube: Kube, namespace: str) -> None:
    kube.kubectl("apply", "-f", "-", input_text=CRD)
    kube.wait_established("widgets.test.modelfactory.dev")
    watch = subprocess.Popen(
        [
            "kubectl",
            "get",
            "widgets",
            "-n",
            namespace,
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=kube.env,
    )
    try:
        time.sleep(1)
        kube.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input_text=json.dumps(
                {
                    "apiVersion": "test.modelfactory.dev/v1",
                    "kind": "Widget",
                    "metadata": {"name": "w1"},
                    "spec": {"size": 3},
                }
            ),
        )
        # The schema is enforced by the API server.
        bad = kube.run(
            "kubectl",
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            check=False,
            input_text=json.dumps(
                {
                    "apiVersion": "test.modelfactory.dev/v1",
                    "kind": "Widget",
                    "metadata": {"name": "w2"},
                    "spec": {"size": 0},
                }
            ),
        )
        assert bad.returncode != 0 and "spec.size" in bad.stderr
        kube.kubectl(
            "patch",
            "widget",
            "w1",
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status": {"phase": "Ready"}}',
        )
        assert kube.kubectl_json("get", "widget", "w1", "-n", namespace)["status"] == {
            "phase": "Ready"
        }
        kube.kubectl("delete", "widget", "w1", "-n", namespace)
        time.sleep(1)
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=10)
    events = [
        json.loads(chunk)["type"]
        for chunk in out.replace("}\n{", "}\x00{").split("\x00")
        if chunk.strip()
    ]
    assert events[0] == "ADDED" and "MODIFIED" in events and events[-1] == "DELETED"


def test_helm_install_and_uninstall(kube: Kube, namespace: str, tmp_path: Path) -> None:
    chart = tmp_path / "hello"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hello\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: '{{ .Release.Name }}-cm'}\n"
        "data: {greeting: '{{ .Values.greeting }}'}\n"
    )
    kube.helm("install", "hello", str(chart), "-n", namespace, "--set", "greeting=hi")
    cm = kube.kubectl_json("get", "configmap", "hello-cm", "-n", namespace)
    assert cm["data"] == {"greeting": "hi"}
    kube.helm("uninstall", "hello", "-n", namespace)
    assert (
        kube.run("kubectl", "get", "configmap", "hello-cm", "-n", namespace, check=False).returncode
        != 0
    )


def test_deployment_pods_become_running(kube: Kube, namespace: str) -> None:
    kube.kubectl(
        "create",
        "deployment",
        "web",
        "--image=example.invalid/web:1",
        "--replicas=2",
        "-n",
        namespace,
    )

    def running() -> bool:
        pods = kube.kubectl_json("get", "pods", "-n", namespace, "-l", "app=web")["items"]
        return len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods)

    wait_for(running, what="2 Running pods")
    dep = kube.kubectl_json("get", "deployment", "web", "-n", namespace)
    wait_for(
        lambda: (
            kube.kubectl_json("get", "deployment", "web", "-n", namespace)["status"].get(
                "readyReplicas"
            )
            == 2
        ),
        what="ready replicas",
    )
    assert dep["metadata"]["name"] == "web"


def test_job_completes(kube: Kube, namespace: str) -> None:
    kube.kubectl("create", "job", "once", "--image=example.invalid/once:1", "-n", namespace)
    wait_for(
        lambda: (
            kube.kubectl_json("get", "job", "once", "-n", namespace)["status"].get("succeeded") == 1
        ),
        what="Job completion",
    )


def test_rbac_refuses_what_was_not_granted(kube: Kube, namespace: str) -> None:
    kube.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kube.kubectl(
        "create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", namespace
    )
    kube.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=pod-reader",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    who = f"--as=system:serviceaccount:{namespace}:reader"
    assert kube.kubectl("auth", "can-i", "list", "pods", "-n", namespace, who).strip() == "yes"
    refused = kube.run("kubectl", "get", "secrets", "-n", namespace, who, check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr
    token = kube.kubectl("create", "token", "reader", "-n", namespace).strip()
    assert token.count(".") == 2


def test_pod_security_admission_is_enforced(kube: Kube, namespace: str) -> None:
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    res = kube.run(
        "kubectl",
        "run",
        "priv",
        "--image=example.invalid/x:1",
        "-n",
        namespace,
        "--privileged",
        check=False,
    )
    assert res.returncode != 0 and "violates PodSecurity" in res.stderr
