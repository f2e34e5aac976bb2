"""Restarts of the operator: killed (SIGKILL) while it reconciles 20 resources, a new one
converges them all without duplicate releases, runs or orphans; restarted with resources in
place, it runs Helm only for releases whose inputs changed."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Kube, eventually
from tests.operator.conftest import (
    OperatorProcess,
    apply_list,
    get,
    modelservice,
    start_operator,
)

pytestmark = pytest.mark.integration
DIGEST = "sha256:" + "cd" * 32


def manifests(count: int) -> str:
    items = []
    for i in range(count):
        items.append(
            {
                "apiVersion": "modelfactory.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": f"tj-{i}"},
                "spec": {
                    "dataset": {"uri": "sklearn://wine"},
                    "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
                    "output": {"storageUri": f"s3://models/tj-{i}"},
                },
            }
        )
        items.append(
            {
                "apiVersion": "modelfactory.dev/v1alpha1",
                "kind": "ModelService",
                "metadata": {"name": f"ms-{i}"},
                "spec": {"model": {"uri": f"s3://models/m{i}/1", "digest": DIGEST}},
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def test_sigkill_mid_reconcile_converges(
    operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", "-", input_text=manifests(10))
    # Let it get part-way: some releases installed, some not, one possibly mid-helm.
    eventually(
        lambda: len(json.loads(kube.helm("list", "-n", namespace, "-a", "-o", "json").stdout)) >= 3,
        interval=0.1,
        what="first releases",
    )
    operator.kill()
    time.sleep(1)
    operator.start()

    def converged() -> bool:
        tjs = kube.kubectl_json("get", "tj", "-n", namespace)["items"]
        mss = kube.kubectl_json("get", "msvc", "-n", namespace)["items"]
        return (
            len(tjs) == 10
            and len(mss) == 10
            and all((t.get("status") or {}).get("phase") == "Failed" for t in tjs)
            and all((m.get("status") or {}).get("phase") == "Ready" for m in mss)
        )

    eventually(converged, timeout=240, interval=1, what="all 20 resources converged")
    releases = json.loads(kube.helm("list", "-n", namespace, "-a", "-o", "json").stdout)
    assert sorted(r["name"] for r in releases) == sorted(
        [f"tj-tj-{i}" for i in range(10)] + [f"msvc-ms-{i}" for i in range(10)]
    )
    assert {r["status"] for r in releases} == {"deployed"}
    # One run per TrainingJob (its Job finished without a result under kwok: NoResult) and one
    # Deployment per ModelService.
    jobs = kube.kubectl_json("get", "jobs", "-n", namespace)["items"]
    owners = Counter(j["metadata"]["labels"]["app.kubernetes.io/instance"] for j in jobs)
    assert owners == Counter({f"tj-{i}": 1 for i in range(10)})
    deployments = kube.kubectl_json("get", "deployments", "-n", namespace)["items"]
    assert len(deployments) == 10


def helm_wrapper(kube: Kube, tmp_path: Path) -> tuple[Path, Path]:
    """A `helm` that writes each command line to a log, then runs the real one."""
    real = shutil.which("helm", path=kube.env["PATH"])
    assert real, "helm is not on the cluster's PATH"
    log = tmp_path / "helm-calls.log"
    wrapper = tmp_path / "helm"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, log


def resumed(op: OperatorProcess, handler: str) -> int:
    """How many resources a fresh operator process has reconciled through `handler`."""
    return op.log.read_text(errors="replace").count(f"Handler '{handler}' succeeded")


def test_a_restart_runs_helm_only_for_releases_whose_inputs_changed(
    crds: Kube, own_namespace: str, tmp_path: Path
) -> None:
    """Restarted with existing resources, the operator reconciles every one of them and runs
    Helm for none whose inputs are unchanged: only for the ModelService changed while it was
    down, then, once the serving chart itself changed, for every ModelService (a chart change
    is an input change) and still for no TrainingJob (a run keeps what it started with)."""
    ns = own_namespace
    charts = tmp_path / "charts"
    shutil.copytree(Path(__file__).resolve().parents[2] / "charts", charts)
    wrapper, calls = helm_wrapper(crds, tmp_path)
    env = {"MF_HELM_BINARY": str(wrapper), "MF_CHARTS_DIR": str(charts)}
    spec = {
        "dataset": {"uri": "sklearn://iris"},
        "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
        "output": {"storageUri": "s3://models/restart"},
    }
    tjs = [
        {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": n},
            "spec": spec,
        }
        for n in ("done", "busy")
    ]
    # busy's pod can never be scheduled: its run stays unfinished.
    tjs[1]["spec"] = {**spec, "pod": {"nodeSelector": {"modelfactory.dev/nowhere": "true"}}}
    services = [modelservice(f"ms-{i}") for i in range(3)]

    def phases() -> dict[str, str]:
        return {
            f"{o['kind']}/{o['metadata']['name']}": (o.get("status") or {}).get("phase", "")
            for kind in ("tj", "msvc")
            for o in crds.kubectl_json("get", kind, "-n", ns)["items"]
        }

    def settled() -> bool:
        now = phases()
        return (
            len(now) == 5
            and now["TrainingJob/done"] == "Failed"  # no result under kwok
            and now["TrainingJob/busy"] == "Pending"
            and all(now[f"ModelService/ms-{i}"] == "Ready" for i in range(3))
        )

    (tmp_path / "first").mkdir()
    op = start_operator(crds, tmp_path / "first", ns, **env)
    try:
        apply_list(crds, ns, *tjs, *services)
        eventually(settled, timeout=90, interval=1, what="five resources settled")
    finally:
        op.stop()
    assert len(calls.read_text().splitlines()) == 5  # one install each

    def restart(name: str) -> list[str]:
        calls.write_text("")
        (tmp_path / name).mkdir()
        op = start_operator(crds, tmp_path / name, ns, **env)
        try:
            eventually(
                lambda: (
                    resumed(op, "modelservice_changed") >= 3
                    and resumed(op, "trainingjob_changed") >= 2
                ),
                timeout=60,
                what="every resource reconciled after the restart",
            )
            eventually(settled, timeout=60, what="settled again")
            time.sleep(2)  # the children's events of the restart come and go
        finally:
            op.stop()
        return [
            line.split()[2]
            for line in calls.read_text().splitlines()
            if line.startswith("upgrade --install")
        ]

    crds.kubectl(
        "patch",
        "msvc",
        "ms-1",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec":{"replicas":{"min":1,"max":2}}}',
    )
    assert restart("second") == ["msvc-ms-1"]
    assert calls.read_text().splitlines()[0].startswith("upgrade --install msvc-ms-1")
    assert len(calls.read_text().splitlines()) == 1  # no other helm command either
    assert get(crds, "msvc", "ms-1", ns)["status"]["releaseRevision"] == 2

    deployment = charts / "model-service" / "templates" / "deployment.yaml"
    deployment.write_text(deployment.read_text() + "\n# a new chart version\n")
    assert sorted(restart("third")) == ["msvc-ms-0", "msvc-ms-1", "msvc-ms-2"]
