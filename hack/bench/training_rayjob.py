#!/usr/bin/env python3
"""Training on the real node: the same search as Job (one pod) and as RayJob (head + 2 workers).

The search of hack/bench/training_bench.py (24 RandomForest configurations x 5-fold CV on
make_classification(20000, 20)), written as a Parquet file onto a claim by a pod of the training
image, then trained twice by TrainingJobs that differ only in `compute`:

- Job mode: one pod, cpu 1500m (Ray counts 2 CPUs), memory 3Gi;
- RayJob mode: a head (no CPUs for trials) and 2 workers of cpu 500m (Ray counts 1 CPU each),
  memory 1536Mi each: the same 2 Ray CPUs and the same CPU requests, on the same node.

Prints, for each: apply -> Ray cluster ready (RayJob), apply -> first finished trial (as the
TrainingJob's status shows it; it is written at most every 2 s), apply -> Succeeded, the best CV
score and the Ray nodes the folds ran on. Needs the cluster with its real node and the images:

    python3 hack/cluster.py up          # after `hack/cluster.py images`
    .venv/bin/python hack/bench/training_rayjob.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack"))
from bench.training_bench import GRID, QUICK_GRID  # noqa: E402

CLAIM = "bench-data"
NODE = "mf-node"
TAINT = "modelfactory.dev/real-node"


def cli(*args: str) -> str:
    return subprocess.run(
        [sys.executable, str(ROOT / "hack" / "cluster.py"), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


class Cluster:
    def __init__(self) -> None:
        state = json.loads(cli("status"))
        if not state.get("node"):
            sys.exit("the cluster runs without its real node: `python3 hack/cluster.py up`")
        self.images: dict[str, str] = state["images"]
        self.env = dict(
            os.environ,
            KUBECONFIG=state["kubeconfig"],
            PATH=f"{cli('bin-path').strip()}:{os.environ['PATH']}",
        )

    def run(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        res = subprocess.run(
            args, input=input_text, capture_output=True, text=True, env=self.env, timeout=600
        )
        if check and res.returncode:
            raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()[-2000:]}")
        return res.stdout

    def apply(self, ns: str, obj: dict[str, Any]) -> None:
        self.run("kubectl", "apply", "-n", ns, "-f", "-", input_text=json.dumps(obj))

    def get(self, ns: str, kind: str, name: str) -> dict[str, Any]:
        out = self.run("kubectl", "get", kind, name, "-n", ns, "-o", "json", check=False)
        return json.loads(out) if out else {}


def namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "annotations": {
                "scheduler.alpha.kubernetes.io/node-selector": f"kubernetes.io/hostname={NODE}",
                "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
                    [{"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}]
                ),
            },
        },
    }


def data_pod(image: str, rows: int) -> dict[str, Any]:
    """Writes the benchmark's data onto the claim, from the training image's own libraries."""
    script = (
        "import pandas as pd; from sklearn.datasets import make_classification; "
        f"X, y = make_classification(n_samples={rows}, n_features=20, random_state=0); "
        "pd.DataFrame(X, columns=[f'f{i}' for i in range(20)]).assign(y=y)"
        ".to_parquet('/data/train.parquet')"
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bench-data"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
            "containers": [
                {
                    "name": "write",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": CLAIM}}],
        },
    }


def training_job(name: str, grid: dict[str, list[Any]], folds: int, workers: int) -> dict[str, Any]:
    compute = (
        {"workers": 2, "cpu": "500m", "memory": "1536Mi"}
        if workers
        else {"workers": 0, "cpu": "1500m", "memory": "3Gi"}
    )
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "dataset": {"uri": f"pvc://{CLAIM}/train.parquet", "target": "y", "seed": 0},
            "model": {
                "estimator": "sklearn.ensemble.RandomForestClassifier",
                "params": {"random_state": 0},
                "preprocessing": False,
            },
            "tuning": {
                "algorithm": "grid",
                "cvFolds": folds,
                "metric": "accuracy",
                "searchSpace": {k: {"values": v} for k, v in grid.items()},
            },
            "compute": compute,
            "ttlSecondsAfterFinished": 5,
            "output": {"storageUri": f"pvc://{CLAIM}/models/{name}"},
        },
    }


def measure(c: Cluster, ns: str, tj: dict[str, Any]) -> dict[str, Any]:
    name = tj["metadata"]["name"]
    started = time.monotonic()
    c.apply(ns, tj)
    marks: dict[str, float] = {}
    while True:
        status = c.get(ns, "tj", name).get("status") or {}
        now = time.monotonic() - started
        if "ready" not in marks and tj["spec"]["compute"]["workers"]:
            pods = json.loads(
                c.run(
                    "kubectl",
                    "get",
                    "pods",
                    "-n",
                    ns,
                    "-l",
                    f"app.kubernetes.io/instance={name}",
                    "-o",
                    "json",
                )
            )["items"]
            ray = [p for p in pods if "ray.io/node-type" in p["metadata"]["labels"]]
            if len(ray) == 3 and all(
                any(
                    k["type"] == "Ready" and k["status"] == "True"
                    for k in p["status"].get("conditions") or []
                )
                for p in ray
            ):
                marks["ready"] = now
        if "first" not in marks and (status.get("progress") or {}).get("trialsCompleted"):
            marks["first"] = now
        if status.get("phase") in ("Succeeded", "Failed"):
            marks["done"] = now
            break
        if now > 3600:
            raise RuntimeError(f"{name} did not finish within an hour: {status}")
        time.sleep(0.5)
    if status["phase"] != "Succeeded":
        raise RuntimeError(f"{name} failed: {status.get('message')}")
    progress = status.get("progress") or {}
    return {
        "mode": "RayJob, 2 workers" if tj["spec"]["compute"]["workers"] else "Job, 1 pod",
        **{k: round(v, 1) for k, v in marks.items()},
        "score": progress.get("bestScore"),
        "rayNodes": progress.get("rayNodes"),
        "trials": progress.get("trialsCompleted"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 configs, 3 folds, 4000 rows")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each mode, interleaved")
    args = parser.parse_args()
    rows, grid, folds = (4000, QUICK_GRID, 3) if args.quick else (20000, GRID, 5)
    c = Cluster()
    ns = f"bench-ray-{uuid.uuid4().hex[:5]}"
    operator_ns = f"{ns}-op"
    try:
        for name in (ns, operator_ns):
            c.apply("default", namespace(name))
        c.run("kubectl", "apply", "-f", str(ROOT / "crds"))
        repo, tag = c.images["operator"].rsplit(":", 1)
        t_repo, t_tag = c.images["training"].rsplit(":", 1)
        values = {
            "image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
            "trainingImage": {"repository": t_repo, "tag": t_tag},
            "watchNamespaces": [ns],
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(values, f)
            f.flush()
            c.run(
                "helm",
                "install",
                "modelfactory",
                str(ROOT / "charts" / "modelfactory"),
                "-n",
                operator_ns,
                "-f",
                f.name,
                "--wait",
                "--timeout",
                "180s",
            )
        c.apply(
            ns,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": CLAIM},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        c.apply(ns, data_pod(c.images["training"], rows))
        c.run(
            "kubectl",
            "wait",
            "-n",
            ns,
            "pod/bench-data",
            "--for=jsonpath={.status.phase}=Succeeded",
            "--timeout=300s",
        )
        configs = 1
        for values_ in grid.values():
            configs *= len(values_)
        print(
            f"data: make_classification({rows}, 20); {configs} configs x {folds}-fold CV; "
            f"node cpus={os.cpu_count()}; load={os.getloadavg()[0]:.2f}",
            flush=True,
        )
        for i in range(args.repeat):
            for workers in (0, 2):
                name = f"bench-{'ray' if workers else 'job'}-{i}"
                load = os.getloadavg()[0]
                result = measure(c, ns, training_job(name, grid, folds, workers))
                print(json.dumps({"run": i, "load_before": round(load, 2), **result}), flush=True)
    finally:
        c.run("kubectl", "delete", "tj", "--all", "-n", ns, "--timeout=120s", check=False)
        c.run("helm", "uninstall", "modelfactory", "-n", operator_ns, check=False)
        c.run("kubectl", "delete", "namespace", ns, operator_ns, "--wait=false", check=False)


if __name__ == "__main__":
    main()
