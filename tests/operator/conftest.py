"""The operator as a real process against the real local control plane."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kube, eventually


class OperatorProcess:
    def __init__(self, kube: Kube, logdir: Path, args: list[str],
                 env: dict[str, str] | None = None) -> None:
        self.kube = kube
        self.log = logdir / "operator.log"
        self.args = args
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = str(Path(sys.executable).parent / "modelfactory-operator")
        out = self.log.open("ab")
        self.proc = subprocess.Popen([exe, *self.args], stdout=out, stderr=subprocess.STDOUT,
                                     env={**self.kube.env, **self.extra_env},
                                     start_new_session=True)

    def kill(self) -> None:
        """SIGKILL: no clean-up handlers run, exactly like a crashed pod."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def own_namespace(crds: Kube) -> Iterator[str]:
    """A namespace for a test that runs an operator of its own."""
    # Not "t-*": the session's operator must not reconcile here too.
    name = f"h-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", name)
    eventually(lambda: crds.kubectl("get", "serviceaccount", "default", "-n", name,
                                    check=False), what="default ServiceAccount")
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator(crds: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """One operator for the session, with the kubernetes launcher."""
    # Test namespaces start with "t-"; e2e tests run operators of their own elsewhere.
    op = OperatorProcess(crds, tmp_path_factory.mktemp("operator"), ["--namespace", "t-*"],
                         {"MF_LAUNCHER": "kubernetes", "MF_CRD_CACHE_SECONDS": "1"})
    op.start()
    time.sleep(2)
    yield op
    op.stop()


# The examples keep their models on this claim.
EXAMPLE_CLAIM = "modelfactory-models"


@pytest.fixture
def example_claim(kube: Kube, namespace: str) -> Iterator[str]:
    """A volume for the examples' claim, bound to it in advance: pods here run on kwok's fake
    nodes, where no provisioner makes volumes, and pods on an unbound claim are never scheduled.
    The volume takes the default StorageClass (the real node's), which the claim gets too."""
    pv = f"{namespace}-models"
    classes = kube.kubectl_json("get", "storageclasses")["items"]
    default = next((c["metadata"]["name"] for c in classes
                    if (c["metadata"].get("annotations") or {})
                    .get("storageclass.kubernetes.io/is-default-class") == "true"), "")
    kube.kubectl("apply", "-f", "-", input_text=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": default,
                 "claimRef": {"namespace": namespace, "name": EXAMPLE_CLAIM},
                 "hostPath": {"path": f"/tmp/modelfactory-test-volumes/{namespace}"}}}))
    yield EXAMPLE_CLAIM
    kube.kubectl("delete", "persistentvolume", pv, "--wait=false", check=False)


def get(kube: Kube, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return json.loads(kube.kubectl("get", kind, name, "-n", namespace, "-o", "json"))


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return dict(c)
    return {}
