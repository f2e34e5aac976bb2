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

from modelfactory_operator.logic import trainingjob as tj
from modelfactory_operator.logic import validate
from modelfactory_operator.logic.plans import RunObservation
from tests.conftest import Kube, eventually


class OperatorProcess:
    def __init__(
        self, kube: Kube, logdir: Path, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.kube = kube
        self.log = logdir / "operator.log"
        self.args = args
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = str(Path(sys.executable).parent / "modelfactory-operator")
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [exe, *self.args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**self.kube.env, **self.extra_env},
            start_new_session=True,
        )

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
    eventually(
        lambda: crds.kubectl("get", "serviceaccount", "default", "-n", name, check=False),
        what="default ServiceAccount",
    )
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator(crds: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """One operator for the session, with the kubernetes launcher."""
    # Test namespaces start with "t-"; e2e tests run operators of their own elsewhere.
    op = OperatorProcess(
        crds,
        tmp_path_factory.mktemp("operator"),
        ["--namespace", "t-*"],
        {"MF_LAUNCHER": "kubernetes", "MF_CRD_CACHE_SECONDS": "1"},
    )
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
    default = next(
        (
            c["metadata"]["name"]
            for c in classes
            if (c["metadata"].get("annotations") or {}).get(
                "storageclass.kubernetes.io/is-default-class"
            )
            == "true"
        ),
        "",
    )
    kube.kubectl(
        "apply",
        "-f",
        "-",
        input_text=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": default,
                    "claimRef": {"namespace": namespace, "name": EXAMPLE_CLAIM},
                    "hostPath": {"path": f"/tmp/modelfactory-test-volumes/{namespace}"},
                },
            }
        ),
    )
    yield EXAMPLE_CLAIM
    kube.kubectl("delete", "persistentvolume", pv, "--wait=false", check=False)


def get(kube: Kube, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return json.loads(kube.kubectl("get", kind, name, "-n", namespace, "-o", "json"))


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return dict(c)
    return {}


# --- helpers shared by the operator's tests against the control plane

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DIGEST = "sha256:" + "ab" * 32
# Where the training and serving pods mount claims.
MOUNT_ROOT = "/mnt/pvc"


def workload_uri(uri: str) -> str:
    """The URI a training pod sees and reports: pvc://<claim>/<path> is a mounted file path."""
    return uri.replace("pvc://", f"file://{MOUNT_ROOT}/", 1)


def apply(kube: Kube, namespace: str, manifest: str | dict[str, Any]) -> None:
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    kube.kubectl("apply", "-n", namespace, "-f", "-", input_text=text)


def report_result(kube: Kube, namespace: str, name: str, version: int = 1, ok: bool = True) -> None:
    """Write status.result exactly as the training pod does: as its own ServiceAccount."""
    tj = get(kube, "tj", name, namespace)
    run_id = eventually(
        lambda: (get(kube, "tj", name, namespace).get("status") or {}).get("runId"), what="runId"
    )
    result: dict[str, Any] = {"runId": run_id, "succeeded": ok}
    if ok:
        result.update(
            metric="accuracy",
            metrics={"test_accuracy": 0.96, "cv_mean": 0.95},
            bestParams={"n_estimators": 50},
            model={
                "version": version,
                "uri": workload_uri(f"{tj['spec']['output']['storageUri']}/{version}"),
                "digest": DIGEST,
            },
            progress={"trialsTotal": 6, "trialsCompleted": 6},
        )
    else:
        result.update(reason="TargetNotFound", message="dataset: column 'label' (target) not found")
    kube.kubectl(
        "patch",
        "tj",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"result": result}}),
        f"--as=system:serviceaccount:{namespace}:{name}-trainer",
    )


def status(kube: Kube, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return dict(get(kube, kind, name, namespace).get("status") or {})


def helm_releases(kube: Kube, namespace: str) -> list[str]:
    out = kube.helm("list", "-n", namespace, "-a", "-o", "json").stdout
    return sorted(r["name"] for r in json.loads(out))


def start_operator(kube: Kube, tmp_path: Path, namespace: str, **env: str) -> OperatorProcess:
    op = OperatorProcess(
        kube, tmp_path, ["--namespace", namespace], {"MF_LAUNCHER": "kubernetes", **env}
    )
    op.start()
    return op


def modelservice(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": name},
        "spec": {"model": {"uri": f"s3://models/{name}/1", "digest": DIGEST}, **spec},
    }


def apply_list(kube: Kube, namespace: str, *objs: dict[str, Any]) -> None:
    kube.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}),
    )


# --- a TrainingJob for the logic tests (dict in, dict out)

TJ_BODY: dict[str, Any] = {
    "apiVersion": "modelfactory.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1},
    "spec": {
        "dataset": {"uri": "sklearn://iris"},
        "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
        "output": {"storageUri": "s3://models/iris"},
    },
}


def tj_plan(body: dict[str, Any] = TJ_BODY, **spec_changes: Any) -> tj.RunPlan:
    spec = validate.trainingjob_spec({**body["spec"], **spec_changes})
    return tj.render(body, spec, "ghcr.io/modelfactory/training:0.1.0")


def tj_decide(
    status: dict[str, Any], obs: RunObservation, p: tj.RunPlan | None = None, **kw: Any
) -> Any:
    return tj.decide(
        1,
        status,
        p or tj_plan(),
        kw.get("spec_error"),
        obs,
        kw.get("rayjob_available", True),
        "2026-01-01T00:00:00Z",
    )
