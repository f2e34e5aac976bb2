#!/usr/bin/env python3
"""A burst of ModelServices against one operator process: how it holds.

    python3 hack/cluster.py up --no-node
    .venv/bin/python hack/bench/operator_burst.py --count 300

Applies COUNT ModelServices at once in a fresh namespace, to an operator (kubernetes launcher)
run as a process with MF_HELM_CONCURRENCY=--concurrency. The local cluster's service range holds
254 addresses, so past that the releases fail ("range is full") and must back off. Prints: how
long until every ModelService says whether its release applied, how many applied and failed,
the most helm processes at once, helm runs in all, and the operator's CPU (its own plus its helm
children's) during the burst and in consecutive windows after it. Cleans up after itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TICKS = os.sysconf("SC_CLK_TCK")


def cluster_env() -> dict[str, str]:
    status = subprocess.run(
        [sys.executable, str(ROOT / "hack/cluster.py"), "status"], capture_output=True, text=True
    )
    if status.returncode != 0:
        sys.exit("no cluster: run python3 hack/cluster.py up --no-node first")
    bin_path = subprocess.run(
        [sys.executable, str(ROOT / "hack/cluster.py"), "bin-path"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {
        **os.environ,
        "KUBECONFIG": json.loads(status.stdout)["kubeconfig"],
        "PATH": f"{bin_path}:{os.environ['PATH']}",
    }


def kubectl(env: dict[str, str], *args: str, data: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", *args], input=data, capture_output=True, text=True, env=env, check=True
    ).stdout


def stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return [raw[raw.index("(") + 1 : raw.rindex(")")], *raw[raw.rindex(")") + 2 :].split()]


def cpu_seconds(pid: int) -> float:
    """The process's CPU plus that of its children it has waited for (the helm runs)."""
    fields = stat(pid)
    if fields is None:
        return 0.0
    # utime, stime, cutime, cstime are fields 14-17 of stat (1-based; comm is field 2).
    return sum(int(fields[i]) for i in (12, 13, 14, 15)) / TICKS


class Sampler(threading.Thread):
    def __init__(self, parent: int) -> None:
        super().__init__(daemon=True)
        self.parent = parent
        self.seen: set[int] = set()
        self.most = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            now = []
            for entry in os.listdir("/proc"):
                if (
                    entry.isdigit()
                    and (f := stat(int(entry)))
                    and f[0] == "helm"
                    and int(f[2]) == self.parent
                ):
                    now.append(int(entry))
            self.seen.update(now)
            self.most = max(self.most, len(now))
            time.sleep(0.02)


def settled(items: list[dict[str, Any]]) -> tuple[int, int]:
    applied = failed = 0
    for item in items:
        for c in (item.get("status") or {}).get("conditions") or []:
            if c["type"] == "ReleaseApplied":
                applied += c["status"] == "True"
                failed += c["status"] == "False"
    return applied, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--window-seconds", type=float, default=60.0)
    parser.add_argument(
        "--windows",
        type=int,
        default=4,
        help="quiet windows measured one after the other after the burst",
    )
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    env = cluster_env()
    kubectl(env, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    ns = f"bench-burst-{uuid.uuid4().hex[:6]}"
    kubectl(env, "create", "namespace", ns)
    log = Path(f"/tmp/{ns}-operator.log")
    operator = subprocess.Popen(
        [str(ROOT / ".venv/bin/modelfactory-operator"), "--namespace", ns],
        env={**env, "MF_LAUNCHER": "kubernetes", "MF_HELM_CONCURRENCY": str(args.concurrency)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    sampler = Sampler(operator.pid)
    sampler.start()
    try:
        time.sleep(3)
        items = [
            {
                "apiVersion": "modelfactory.dev/v1alpha1",
                "kind": "ModelService",
                "metadata": {"name": f"burst-{i}"},
                "spec": {
                    "model": {"uri": f"s3://models/burst-{i}/1", "digest": "sha256:" + "ab" * 32}
                },
            }
            for i in range(args.count)
        ]
        cpu0, t0 = cpu_seconds(operator.pid), time.monotonic()
        kubectl(
            env,
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            data=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
        applied = failed = 0
        while time.monotonic() - t0 < args.timeout:
            listed = json.loads(kubectl(env, "get", "msvc", "-n", ns, "-o", "json"))["items"]
            applied, failed = settled(listed)
            if applied + failed >= args.count:
                break
            time.sleep(2)
        settle = time.monotonic() - t0
        cpu1, runs1 = cpu_seconds(operator.pid), len(sampler.seen)
        after = []
        cpu, runs = cpu1, runs1
        for _ in range(args.windows):
            time.sleep(args.window_seconds)
            cpu_now, runs_now = cpu_seconds(operator.pid), len(sampler.seen)
            after.append(
                {
                    "helm_runs": runs_now - runs,
                    "operator_cores": round((cpu_now - cpu) / args.window_seconds, 3),
                }
            )
            cpu, runs = cpu_now, runs_now
        print(
            json.dumps(
                {
                    "count": args.count,
                    "helm_concurrency": args.concurrency,
                    "settled_seconds": round(settle, 1),
                    "applied": applied,
                    "failed": failed,
                    "most_helm_at_once": sampler.most,
                    "helm_runs_during_burst": runs1,
                    "operator_cores_during_burst": round((cpu1 - cpu0) / settle, 2),
                    "after_burst_windows_seconds": args.window_seconds,
                    "after_burst": after,
                    "loadavg": os.getloadavg(),
                },
                indent=2,
            )
        )
    finally:
        sampler.stopped.set()
        os.killpg(operator.pid, 15)
        operator.wait(timeout=30)
        # The operator is gone: drop the finalizers it would have honoured, then the namespace
        # (helm's release records are Secrets in it).
        names = kubectl(env, "get", "msvc", "-n", ns, "-o", "name").split()
        for name in names:
            kubectl(
                env,
                "patch",
                "-n",
                ns,
                name,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
            )
        kubectl(env, "delete", "namespace", ns, "--wait=false")
        log.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
