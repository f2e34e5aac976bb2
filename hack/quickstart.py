#!/usr/bin/env python3
"""Model Factory's main flow on this machine, start to finish.

    quickstart.py up     # control plane, CRDs, operator (local launcher), train, serve, predict,
                         # score a dataset
    quickstart.py down   # stop the operator (and with it every model process) and the cluster

Safe to run twice: whatever already runs is reused.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = [sys.executable, str(ROOT / "hack" / "cluster.py")]
CACHE = Path(os.environ.get("MF_CACHE_DIR") or Path.home() / ".cache" / "modelfactory")
STATE = CACHE / "quickstart"
# Where the local launcher keeps its processes' state; pvc://<claim>/... maps to pvc/<claim>/ here.
LOCAL = CACHE / "local"
NAMESPACE = "default"
EXAMPLE = ROOT / "examples" / "iris-classifier.yaml"
BATCH_EXAMPLE = ROOT / "examples" / "batch-scoring.yaml"
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


@functools.cache
def env() -> dict[str, str]:
    """Read once, after the cluster is up: kubectl runs many times while waiting."""
    bin_path = subprocess.run(
        [*CLUSTER, "bin-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    status = json.loads(subprocess.run([*CLUSTER, "status"], capture_output=True, text=True).stdout)
    return dict(
        os.environ,
        KUBECONFIG=status["kubeconfig"] or "",
        PATH=f"{Path(sys.executable).parent}:{bin_path}:{os.environ['PATH']}",
    )


def kubectl(*args: str, check: bool = True) -> str:
    res = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env())
    if check and res.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def operator_pid() -> int | None:
    try:
        pid = int((STATE / "operator.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start_operator() -> None:
    if operator_pid():
        say("operator already running (local launcher)")
        return
    STATE.mkdir(parents=True, exist_ok=True)
    log = (STATE / "operator.log").open("ab")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "modelfactory-operator"),
            "--namespace",
            NAMESPACE,
            "--launcher",
            "local",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**env(), "MF_LOCAL_STATE_DIR": str(LOCAL)},
        start_new_session=True,
    )
    (STATE / "operator.pid").write_text(str(proc.pid))
    say(f"operator started with the local launcher (log: {STATE / 'operator.log'})")


def get(kind: str, name: str) -> dict:  # type: ignore[type-arg]
    out = kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json", check=False)
    return json.loads(out) if out else {}


def wait_for(kind: str, name: str, phase: str, timeout: float) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        status = get(kind, name).get("status") or {}
        progress = status.get("progress") or {}
        line = f"{kind}/{name}: {status.get('phase', 'Pending')}"
        if progress.get("trialsTotal"):
            line += (
                f"  trials {progress.get('trialsCompleted', 0)}/{progress['trialsTotal']}"
                f"  best {progress.get('bestScore')}"
            )
        if line != last:
            say(line)
            last = line
        if status.get("phase") == phase:
            return status
        if status.get("phase") == "Failed":
            failed = [c for c in status.get("conditions", []) if c["type"] in ("Failed", "Ready")]
            sys.exit(f"{kind}/{name} failed: {failed}")
        time.sleep(1)
    sys.exit(f"timed out waiting for {kind}/{name} to be {phase}; see {STATE / 'operator.log'}")


def post(url: str, body: dict) -> dict:  # type: ignore[type-arg]
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def up() -> None:
    say("starting the local Kubernetes control plane (first run builds it from Go modules)")
    subprocess.run([*CLUSTER, "up", "--no-kuberay", "--no-node"], check=True)
    say("installing the CRDs")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    subprocess.run(
        [
            *CLUSTER,
            "wait-crds",
            "trainingjobs.modelfactory.dev",
            "modelservices.modelfactory.dev",
            "batchpredictions.modelfactory.dev",
        ],
        check=True,
    )
    start_operator()
    data = LOCAL / "pvc" / "modelfactory-models" / "data"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "examples" / "data" / "churn.csv", data / "churn.csv")
    shutil.copy(ROOT / "examples" / "data" / "iris-unlabelled.csv", data / "iris-unlabelled.csv")
    say(f"kubectl apply -f {EXAMPLE.relative_to(ROOT)}")
    print(kubectl("apply", "-n", NAMESPACE, "-f", str(EXAMPLE)), end="")
    tj = wait_for("tj", "iris", "Succeeded", timeout=600)
    say(
        f"trained model version {tj['model']['version']}: {tj.get('metric')} = {tj.get('score')}"
        f" (best params {tj.get('bestParams')})"
    )
    ms = wait_for("msvc", "iris", "Ready", timeout=300)
    url = ms["url"]
    v2 = post(
        f"{url}/v2/models/iris/infer",
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]},
    )
    v1 = post(f"{url}/v1/models/iris:predict", {"instances": [IRIS_ROW]})
    say(f"Open Inference Protocol v2: {json.dumps(v2['outputs'])}")
    say(f"KServe v1:                  {json.dumps(v1)}")
    say(f"kubectl apply -f {BATCH_EXAMPLE.relative_to(ROOT)}")
    print(kubectl("apply", "-n", NAMESPACE, "-f", str(BATCH_EXAMPLE)), end="")
    bp = wait_for("bp", "iris-scores", "Succeeded", timeout=600)
    say(
        f"scored {bp['progress']['rowsWritten']} rows with model version "
        f"{bp['model']['version']}; manifest: {bp['manifest']}"
    )
    print()
    print(kubectl("get", "modelfactory", "-n", NAMESPACE), end="")
    print(f"""
Model Factory is running on this machine. Next:
  eval $(python3 hack/cluster.py env)          # KUBECONFIG and kubectl on PATH
  kubectl get modelfactory                     # every resource, with phase, model, URL
  kubectl describe bp iris-scores              # the scoring run: rows, manifest, drift
  kubectl describe tj iris                     # conditions, metrics, events
  curl -s {url}/v2/models/iris/infer \\
    -d '{{"inputs":[{{"name":"x","shape":[1,4],"datatype":"FP64","data":{IRIS_ROW}}}]}}'
  kubectl annotate tj iris modelfactory.dev/retrain=$(date +%s)   # retrain: the service rolls to v2
  kubectl apply -f examples/diabetes-regressor.yaml               # a regressor
  make down                                    # stop everything
""")


def down() -> None:
    pid = operator_pid()
    if pid:
        say("stopping the operator and its model processes")
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
    (STATE / "operator.pid").unlink(missing_ok=True)
    subprocess.run([*CLUSTER, "down"], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args()
    up() if args.command == "up" else down()


if __name__ == "__main__":
    main()
