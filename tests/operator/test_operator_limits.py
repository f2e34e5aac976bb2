"""The operator at its limits, on the real control plane: releases that cannot be applied or
removed, bursts of resources, the longest names. Each test runs an operator of its own (its own
settings), watching only its own namespace."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kube, eventually
from tests.operator.conftest import (
    OperatorProcess,
    apply_list,
    condition,
    get,
    modelservice,
    start_operator,
)

pytestmark = pytest.mark.integration


def events(kube: Kube, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in kube.kubectl_json("get", "events", "-n", namespace)["items"]
        if e.get("reason") == reason
    ]


class HelmWatch:
    """Samples the operator's helm children: how many at once, how many in all."""

    def __init__(self, operator: OperatorProcess) -> None:
        assert operator.proc is not None
        self.parent = operator.proc.pid
        self.seen: set[int] = set()
        self.most_at_once = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _children(self) -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if comm == "helm" and ppid == self.parent:
                found.append(int(entry))
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self._children()
            self.seen.update(now)
            self.most_at_once = max(self.most_at_once, len(now))
            time.sleep(0.02)

    def __enter__(self) -> HelmWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_failing_releases_back_off_and_helm_stays_bounded(
    crds: Kube, own_namespace: str, tmp_path: Path
) -> None:
    """A burst of ModelServices whose releases fail half-way (a quota refuses their
    autoscalers after their Deployments exist, so their children keep changing): each release
    backs off instead of re-running helm on every child event, the failure is a condition and
    one Event per resource, helm runs at most MF_HELM_CONCURRENCY at once, and the releases go
    through once the quota is lifted; after a restart that changes every plan, the resume stays
    inside the bound too."""
    ns, count = own_namespace, 20
    crds.kubectl(
        "create",
        "quota",
        "no-autoscalers",
        "-n",
        ns,
        "--hard=count/horizontalpodautoscalers.autoscaling=0",
    )
    env = {
        "MF_HELM_CONCURRENCY": "2",
        "MF_APPLY_RETRY_BASE_SECONDS": "3",
        "MF_APPLY_RETRY_MAX_SECONDS": "10",
    }
    op = start_operator(crds, tmp_path, ns, **env)
    try:
        with HelmWatch(op) as watch:
            apply_list(
                crds,
                ns,
                *(modelservice(f"burst-{i}", replicas={"min": 1, "max": 2}) for i in range(count)),
            )

            def all_failed() -> bool:
                items = crds.kubectl_json("get", "msvc", "-n", ns)["items"]
                return len(items) == count and all(
                    condition(i, "ReleaseApplied").get("reason") == "ApplyFailed" for i in items
                )

            eventually(all_failed, timeout=120, what="every release failing")
            time.sleep(20)  # children keep changing meanwhile (their pods start)
        # Backoff 3, 6, 10, 10 s: a handful of tries each over the window, never one per event.
        assert watch.most_at_once <= 2, watch.most_at_once
        assert len(watch.seen) <= count * 8, len(watch.seen)
        one = get(crds, "msvc", "burst-0", ns)
        failed = condition(one, "ReleaseApplied")
        assert failed["status"] == "False" and "exceeded quota" in failed["message"], failed
        assert one["status"]["phase"] != "Ready"
        warnings = [
            e for e in events(crds, ns, "ApplyFailed") if e["involvedObject"]["name"] == "burst-0"
        ]
        assert sum(e.get("count", 1) for e in warnings) == 1, warnings

        crds.kubectl("delete", "quota", "no-autoscalers", "-n", ns)

        def all_applied() -> bool:
            items = crds.kubectl_json("get", "msvc", "-n", ns)["items"]
            return all(condition(i, "ReleaseApplied").get("status") == "True" for i in items)

        eventually(all_applied, timeout=180, what="every release applied")
        assert len(crds.kubectl_json("get", "hpa", "-n", ns)["items"]) == count
    finally:
        op.stop()
    # A new default image changes every plan: the resume re-applies all of them, two at a time.
    op = start_operator(
        crds, tmp_path, ns, **env, MF_SERVING_IMAGE="ghcr.io/modelfactory/serving:0.2.0"
    )
    try:
        with HelmWatch(op) as watch:

            def all_moved() -> bool:
                deps = crds.kubectl_json("get", "deployments", "-n", ns)["items"]
                return len(deps) == count and all(
                    d["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.2.0")
                    for d in deps
                )

            eventually(all_moved, timeout=240, what="every release re-applied")
        assert watch.most_at_once <= 2, watch.most_at_once
        assert len(watch.seen) >= count
    finally:
        op.stop()


NO_DELETE_POLICY = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: %(name)s}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["DELETE"]
      resources: ["deployments"]
  validations:
  - expression: "false"
    message: deleting Deployments is refused in this namespace
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: %(name)s}
spec:
  policyName: %(name)s
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: %(namespace)s}
"""


def test_a_release_that_cannot_be_removed_does_not_hold_the_delete(
    crds: Kube, own_namespace: str, tmp_path: Path
) -> None:
    """The API server refuses to delete the release's Deployment: helm uninstall fails every
    time. After MF_DELETE_RETRIES tries the ModelService goes anyway, with a Warning; its
    Deployment is owned by it and goes with the garbage collector once deletes are allowed."""
    ns = own_namespace
    op = start_operator(crds, tmp_path, ns, MF_DELETE_RETRIES="3")
    policy = f"no-delete-{ns}"
    try:
        apply_list(crds, ns, modelservice("stuck"))
        eventually(
            lambda: crds.kubectl_json("get", "deployments", "-n", ns)["items"], what="Deployment"
        )
        crds.kubectl(
            "apply", "-f", "-", input_text=NO_DELETE_POLICY % {"name": policy, "namespace": ns}
        )

        def refused() -> bool:
            res = crds.run(
                "kubectl",
                "delete",
                "deployment",
                "stuck",
                "-n",
                ns,
                "--dry-run=server",
                check=False,
            )
            return res.returncode != 0 and "refused" in res.stderr

        eventually(refused, what="the policy in force")
        crds.kubectl("delete", "msvc", "stuck", "-n", ns, "--wait=false")
        eventually(
            lambda: not crds.kubectl("get", "msvc", "stuck", "-n", ns, "--ignore-not-found"),
            timeout=90,
            what="the ModelService gone",
        )
        warning = events(crds, ns, "ReleaseNotRemoved")
        assert warning and "helm uninstall failed" in warning[0]["message"], warning
        assert warning[0]["type"] == "Warning"
    finally:
        crds.kubectl(
            "delete",
            "validatingadmissionpolicybinding,validatingadmissionpolicy",
            policy,
            check=False,
        )
        op.stop()
    eventually(
        lambda: not crds.kubectl_json("get", "deployments", "-n", ns)["items"],
        timeout=90,
        what="the Deployment garbage-collected",
    )


def test_the_longest_names_make_every_child(crds: Kube, own_namespace: str, tmp_path: Path) -> None:
    """63 characters, the most the CRDs accept: every derived name fits its own limit."""
    ns = own_namespace
    long_ms = "m" + "a" * 62
    long_tj = "t" + "b" * 62
    tj = {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": long_tj},
        "spec": {
            "dataset": {"uri": "sklearn://iris"},
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "output": {"storageUri": "s3://models/long"},
        },
    }
    op = start_operator(crds, tmp_path, ns)
    try:
        apply_list(crds, ns, modelservice(long_ms, replicas={"min": 1, "max": 2}), tj)

        def made() -> bool:
            return all(
                crds.kubectl_json("get", kind, "-n", ns)["items"]
                for kind in ("deployments", "services", "hpa", "pdb", "jobs")
            )

        eventually(made, timeout=90, what="every child")
        releases = json.loads(crds.helm("list", "-n", ns, "-o", "json").stdout)
        assert len(releases) == 2 and all(len(r["name"]) <= 53 for r in releases), releases
        assert crds.kubectl_json("get", "service", long_ms, "-n", ns)
        ms = eventually(
            lambda: (m := get(crds, "msvc", long_ms, ns))["status"].get("url") and m, what="url"
        )
        assert ms["status"]["url"].startswith(f"http://{long_ms}.")
        for kind in (
            "deployments",
            "services",
            "hpa",
            "pdb",
            "jobs",
            "serviceaccounts",
            "roles",
            "rolebindings",
        ):
            for item in crds.kubectl_json("get", kind, "-n", ns)["items"]:
                meta = item["metadata"]
                assert len(meta["name"]) <= 63, (kind, meta["name"])
                for key, value in (meta.get("labels") or {}).items():
                    assert len(value) <= 63, (kind, key, value)
        assert condition(get(crds, "tj", long_tj, ns), "Running")
    finally:
        op.stop()


def test_an_operator_upgrade_never_wedges_training_runs(
    crds: Kube, own_namespace: str, tmp_path: Path
) -> None:
    """A new default training image (an operator upgrade) changes every rendered plan. A
    finished run is not applied again; a run not finished keeps its image when its run control
    changes (here: its deadline), so its Job's immutable pod template is never touched."""
    from tests.operator.conftest import report_result

    ns = own_namespace
    spec = {
        "dataset": {"uri": "sklearn://iris"},
        "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
        "output": {"storageUri": "s3://models/up"},
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
    op = start_operator(crds, tmp_path, ns)
    try:
        apply_list(crds, ns, *tjs)
        eventually(
            lambda: len(crds.kubectl_json("get", "jobs", "-n", ns)["items"]) == 2, what="two Jobs"
        )
        report_result(crds, ns, "done")
        eventually(
            lambda: get(crds, "tj", "done", ns)["status"].get("phase") == "Succeeded",
            what="done Succeeded",
        )
    finally:
        op.stop()
    before = {n: get(crds, "tj", n, ns)["status"] for n in ("done", "busy")}
    op = start_operator(crds, tmp_path, ns, MF_TRAINING_IMAGE="ghcr.io/modelfactory/training:9.9.9")
    try:
        crds.kubectl(
            "patch",
            "tj",
            "busy",
            "-n",
            ns,
            "--type=merge",
            "-p",
            '{"spec":{"activeDeadlineSeconds":7200}}',
        )

        def changed() -> dict[str, Any]:
            jobs = {
                j["metadata"]["labels"]["app.kubernetes.io/instance"]: j
                for j in crds.kubectl_json("get", "jobs", "-n", ns)["items"]
            }
            return jobs if jobs["busy"]["spec"].get("activeDeadlineSeconds") == 7200 else {}

        jobs = eventually(changed, what="busy's Job with its new deadline")
        time.sleep(5)  # a resync and the children's events have come and gone
        after = {n: get(crds, "tj", n, ns)["status"] for n in ("done", "busy")}
    finally:
        op.stop()
    assert after["done"]["releaseRevision"] == before["done"]["releaseRevision"]
    assert after["busy"]["releaseRevision"] == before["busy"]["releaseRevision"] + 1
    for job in jobs.values():
        image = job["spec"]["template"]["spec"]["containers"][0]["image"]
        assert not image.endswith(":9.9.9"), image
    assert condition({"status": after["busy"]}, "ReleaseApplied")["status"] == "True"
    assert not events(crds, ns, "ApplyFailed")
