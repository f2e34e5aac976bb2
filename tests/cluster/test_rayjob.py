"""Ray-distributed training on the real node: a TrainingJob with workers runs as a KubeRay RayJob
whose head and workers are the project's training image, in real containers.

The tests run in order in the cluster path's namespace; each run has its own claim for models.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.cluster.conftest import NODE, RealCluster
from tests.conftest import eventually

pytestmark = pytest.mark.cluster
CLAIM = "ray-models"


def claim() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CLAIM},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def ray_training(name: str, *, trials: int, n_estimators: list[int]) -> dict[str, Any]:
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "dataset": {"uri": "sklearn://breast_cancer"},
            "model": {
                "estimator": "sklearn.ensemble.RandomForestClassifier",
                "params": {"random_state": 0},
            },
            "tuning": {
                "metric": "accuracy",
                "algorithm": "random",
                "trials": trials,
                "cvFolds": 3,
                "searchSpace": {
                    "n_estimators": {"values": n_estimators},
                    "max_depth": {"low": 2, "high": 8, "type": "int"},
                },
            },
            # Two workers beside the head on a 2-core node: half a CPU each (Ray counts one).
            "compute": {"workers": 2, "cpu": "500m", "memory": "1536Mi"},
            "ttlSecondsAfterFinished": 5,
            "output": {"storageUri": f"pvc://{CLAIM}/{name}"},
        },
    }


def ray_pods(rc: RealCluster, name: str) -> list[dict[str, Any]]:
    pods = rc.kube.kubectl_json(
        "get", "pods", "-n", rc.ns, "-l", f"app.kubernetes.io/instance={name}"
    )["items"]
    return [p for p in pods if "ray.io/node-type" in p["metadata"].get("labels", {})]


def ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def progress(rc: RealCluster, name: str) -> dict[str, Any]:
    return dict(rc.status("tj", name).get("progress") or {})


def wait_for_phase(rc: RealCluster, name: str, phase: str, timeout: float) -> dict[str, Any]:
    try:
        return dict(
            eventually(
                lambda: (s := rc.status("tj", name)).get("phase") == phase and s,
                timeout=timeout,
                interval=3,
                what=f"{name} {phase}",
            )
        )
    except AssertionError:
        print(rc.diagnose())
        print(
            rc.kube.kubectl("get", "rayjobs,rayclusters", "-n", rc.ns, "-o", "yaml", check=False)[
                -6000:
            ]
        )
        raise


def test_two_workers_run_the_search_across_ray_pods(real_cluster: RealCluster) -> None:
    rc = real_cluster
    rc.apply(claim())
    started = time.monotonic()
    rc.apply(ray_training("ray-iris", trials=8, n_estimators=[10, 20, 40]))

    def cluster_ready() -> list[dict[str, Any]] | None:
        pods = ray_pods(rc, "ray-iris")
        kinds = sorted(p["metadata"]["labels"]["ray.io/node-type"] for p in pods)
        return pods if kinds == ["head", "worker", "worker"] and all(map(ready, pods)) else None

    pods = eventually(cluster_ready, timeout=300, interval=2, what="head and 2 workers ready")
    ready_at = time.monotonic() - started
    for pod in pods:
        assert pod["spec"]["nodeName"] == NODE
        (container,) = pod["spec"]["containers"]
        assert container["image"] == rc.images["training"]
        # The chart's own HTTP probes, not KubeRay's wget-based ones.
        assert "httpGet" in container["readinessProbe"], container["readinessProbe"]
    eventually(
        lambda: progress(rc, "ray-iris").get("trialsCompleted", 0) >= 1,
        timeout=300,
        interval=1,
        what="the first trial",
    )
    first_trial_at = time.monotonic() - started

    status = wait_for_phase(rc, "ray-iris", "Succeeded", timeout=600)
    print(
        f"\nRayJob with 2 workers: apply -> Ray cluster ready {ready_at:.0f}s, -> first trial "
        f"{first_trial_at:.0f}s, -> Succeeded {time.monotonic() - started:.0f}s"
    )
    assert status["model"]["version"] == 1
    done = status["progress"]
    assert done["trialsCompleted"] == done["trialsTotal"] == 8
    # Folds ran on both workers (the head has no CPUs for them).
    assert done["rayNodes"] == 2, done
    assert status.get("score", 0) >= 0.9
    # shutdownAfterJobFinishes with ttlSecondsAfterFinished: the Ray cluster goes.
    eventually(
        lambda: not ray_pods(rc, "ray-iris"),
        timeout=180,
        interval=3,
        what="the Ray pods deleted after the TTL",
    )


def test_a_worker_killed_mid_search_does_not_end_the_run(real_cluster: RealCluster) -> None:
    rc = real_cluster
    rc.apply(claim())
    rc.apply(ray_training("ray-kill", trials=16, n_estimators=[100, 200]))
    eventually(
        lambda: progress(rc, "ray-kill").get("trialsCompleted", 0) >= 1,
        timeout=420,
        interval=1,
        what="the first trial",
    )
    workers = [
        p
        for p in ray_pods(rc, "ray-kill")
        if p["metadata"]["labels"]["ray.io/node-type"] == "worker"
    ]
    victim = workers[0]["metadata"]["name"]
    rc.kubectl("delete", "pod", victim, "-n", rc.ns, "--grace-period=0", "--force", "--wait=false")

    status = wait_for_phase(rc, "ray-kill", "Succeeded", timeout=900)
    done = status["progress"]
    # Every planned trial is accounted for: folds on the lost worker were retried elsewhere, or
    # their trials are counted as failed; none is silently missing.
    assert done["trialsCompleted"] + done["trialsFailed"] == done["trialsTotal"] == 16, done
    assert done["trialsCompleted"] >= 1
    assert status["model"]["version"] >= 1
    print(f"\nworker {victim} killed mid-search: {done}")


def test_deleting_a_trainingjob_mid_run_removes_its_ray_cluster(real_cluster: RealCluster) -> None:
    rc = real_cluster
    rc.apply(claim())
    rc.apply(ray_training("ray-gone", trials=16, n_estimators=[100, 200]))
    eventually(
        lambda: len(ray_pods(rc, "ray-gone")) == 3,
        timeout=300,
        interval=2,
        what="the Ray pods of the run",
    )
    rc.kubectl("delete", "tj", "ray-gone", "-n", rc.ns, "--timeout=120s")

    def leftovers() -> list[str]:
        objs = rc.kube.kubectl_json(
            "get",
            "rayjobs,rayclusters,pods,jobs",
            "-n",
            rc.ns,
            "-l",
            "app.kubernetes.io/instance=ray-gone",
        )["items"]
        clusters = rc.kube.kubectl_json("get", "rayclusters", "-n", rc.ns)["items"]
        return [
            f"{o['kind']}/{o['metadata']['name']}"
            for o in objs + clusters
            if "ray-gone" in o["metadata"]["name"] or o in objs
        ]

    left: list[str] = []

    def gone() -> bool:
        left[:] = leftovers()
        return not left

    assert eventually(gone, timeout=180, interval=3, what=f"nothing of ray-gone left: {left}")
    rc.kubectl(
        "delete", "tj", "ray-iris", "ray-kill", "-n", rc.ns, "--ignore-not-found", "--timeout=120s"
    )
    rc.kubectl("delete", "pvc", CLAIM, "-n", rc.ns, "--wait=false")
