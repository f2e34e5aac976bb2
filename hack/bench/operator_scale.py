#!/usr/bin/env python3
"""The operator holding hundreds of resources: bursts, single applies, rest and a restart.

    python3 hack/cluster.py up --no-node
    .venv/bin/python hack/bench/operator_scale.py --services 500 --trainingjobs 100

One operator process (kubernetes launcher, MF_HELM_CONCURRENCY=--concurrency) watches a fresh
namespace on kwok's fake nodes. The script applies SERVICES ModelServices in bursts of --burst,
then TRAININGJOBS TrainingJobs in one burst, and prints:

- each burst's time from `kubectl apply` until every resource of it has its release applied
  (ReleaseApplied True) and its children exist (Deployment and Service, or Job);
- the time from creating one more ModelService to its Deployment and Service existing, --singles
  times one after the other while the others exist (p50 / p99 / max);
- at rest, over --rest-seconds (opening no sooner than one resync period, --resync-seconds,
  after the operator started, so that the window holds the resync's steady trickle): the
  operator's CPU (its own plus its helm children's), its RSS, helm runs, and the API requests it
  makes per second;
- a restart (SIGTERM, one ModelService's spec changed while it is down, a new process): how long
  until it is quiet again with the changed one applied, the helm runs it made (only the changed
  one's release has new inputs) and the requests it made to get there;
- the operator's peak RSS, its busiest second of CPU, and the most helm processes at once.

API requests are counted inside the operator process: the script starts it through a small
runner that counts every request its two HTTP clients send (urllib3 for the kubernetes client,
aiohttp for kopf) by verb and resource; watch requests are counted apart (each is one long poll).
Helm processes are the operator's children, counted from /proc. Cleans up after itself unless
--keep.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from operator_burst import ROOT, TICKS, Sampler, cluster_env, cpu_seconds, kubectl, stat

DIGEST = "sha256:" + "ab" * 32


# --- the operator, run with request counters (the script re-runs itself in this mode)


def resource_of(path: str) -> str:
    """`/apis/g/v/namespaces/ns/plural/name/status` -> `plural/status` (or `plural`)."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if "namespaces" in parts:
        i = parts.index("namespaces")
        parts = parts[i + 2 :] if len(parts) > i + 2 else ["namespaces"]
    elif parts and parts[0] in ("api", "apis"):
        parts = parts[3:] if parts[0] == "apis" else parts[2:]
    if not parts:
        return "discovery"
    return parts[0] + ("/" + parts[2] if len(parts) > 2 else "")


def run_operator(counts_file: str, argv: list[str]) -> None:
    import aiohttp
    import urllib3

    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def count(method: str, url: str) -> None:
        watch = "watch=true" in url or "watch=1" in url
        if "://" in url:  # aiohttp has the whole URL, urllib3 the path
            url = "/" + url.split("://", 1)[1].partition("/")[2]
        key = f"{'WATCH' if watch else method.upper()} {resource_of(url)}"
        with lock:
            counts[key] += 1

    original_urlopen = urllib3.connectionpool.HTTPConnectionPool.urlopen

    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        count(method, url)
        return original_urlopen(self, method, url, *args, **kwargs)

    urllib3.connectionpool.HTTPConnectionPool.urlopen = urlopen  # type: ignore[method-assign]
    original_request = aiohttp.ClientSession._request

    async def request(self: Any, method: str, str_or_url: Any, *args: Any, **kwargs: Any) -> Any:
        url = str(str_or_url)
        params = kwargs.get("params")
        if params:
            url += "?" + "&".join(f"{k}={v}" for k, v in dict(params).items())
        count(method, url)
        return await original_request(self, method, str_or_url, *args, **kwargs)

    aiohttp.ClientSession._request = request  # type: ignore[method-assign]

    def dump() -> None:
        while True:
            with lock:
                snapshot = dict(counts)
            tmp = counts_file + ".tmp"
            Path(tmp).write_text(json.dumps(snapshot))
            os.replace(tmp, counts_file)
            time.sleep(0.5)

    threading.Thread(target=dump, daemon=True).start()
    from modelfactory_operator.main import main

    main(argv)


# --- measuring


def read_counts(path: Path) -> dict[str, int]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def requests_of(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if not k.startswith("WATCH"))


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    keys = set(after) | set(before)
    out = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    return dict(sorted(((k, v) for k, v in out.items() if v), key=lambda kv: -kv[1]))


def children_cpu_seconds(pid: int) -> float:
    """The CPU of the children the process has waited for: its helm runs."""
    fields = stat(pid)
    return sum(int(fields[i]) for i in (14, 15)) / TICKS if fields else 0.0


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Monitor(threading.Thread):
    """The operator's RSS and its busiest second of CPU (its own plus its waited-for helm runs)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss = 0.0
        self.peak_cores = 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        last = cpu_seconds(self.pid), time.monotonic()
        while not self.stopped.wait(1.0):
            self.peak_rss = max(self.peak_rss, rss_mib(self.pid, "VmHWM"))
            now = cpu_seconds(self.pid), time.monotonic()
            self.peak_cores = max(self.peak_cores, (now[0] - last[0]) / (now[1] - last[1]))
            last = now


class Children(threading.Thread):
    """When each resource's children were first seen (watching them, by instance label)."""

    def __init__(self, namespace: str, kind: str) -> None:
        super().__init__(daemon=True)
        self.namespace = namespace
        self.kind = kind
        self.seen: dict[str, float] = {}

    def run(self) -> None:
        from kubernetes import client, watch

        api = client.ApiClient()
        lister = {
            "deployments": client.AppsV1Api(api).list_namespaced_deployment,
            "services": client.CoreV1Api(api).list_namespaced_service,
            "jobs": client.BatchV1Api(api).list_namespaced_job,
        }[self.kind]
        version = None
        while True:
            try:
                for event in watch.Watch().stream(
                    lister, self.namespace, resource_version=version, timeout_seconds=300
                ):
                    obj = event["object"]
                    version = obj.metadata.resource_version
                    instance = (obj.metadata.labels or {}).get("app.kubernetes.io/instance")
                    if instance and instance not in self.seen:
                        self.seen[instance] = time.monotonic()
            except Exception:
                version = None
                time.sleep(1)


def released(items: list[dict[str, Any]]) -> set[str]:
    done = set()
    for item in items:
        for c in (item.get("status") or {}).get("conditions") or []:
            if c["type"] == "ReleaseApplied" and c["status"] == "True":
                done.add(item["metadata"]["name"])
    return done


def modelservice(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": name},
        "spec": {"model": {"uri": f"s3://models/{name}/1", "digest": DIGEST}},
    }


def trainingjob(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "dataset": {"uri": "sklearn://wine"},
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "output": {"storageUri": f"s3://models/{name}"},
        },
    }


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.env = cluster_env()
        os.environ["KUBECONFIG"] = self.env["KUBECONFIG"]
        from kubernetes import client, config

        config.load_kube_config()
        self.custom = client.CustomObjectsApi()
        self.ns = f"bench-scale-{uuid.uuid4().hex[:6]}"
        self.workdir = Path(f"/tmp/{self.ns}")
        self.workdir.mkdir()
        self.operator: subprocess.Popen[bytes] | None = None
        self.started = time.monotonic()
        self.counts_file = self.workdir / "counts-0.json"
        self.sampler: Sampler | None = None
        self.monitor: Monitor | None = None
        self.deployments = Children(self.ns, "deployments")
        self.services = Children(self.ns, "services")
        self.jobs = Children(self.ns, "jobs")

    def start_operator(self, generation: int) -> None:
        self.counts_file = self.workdir / f"counts-{generation}.json"
        env = {
            **self.env,
            "MF_LAUNCHER": "kubernetes",
            "MF_HELM_CONCURRENCY": str(self.args.concurrency),
            "MF_RESYNC_SECONDS": str(self.args.resync_seconds),
        }
        self.operator = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--as-operator",
                str(self.counts_file),
                "--namespace",
                self.ns,
            ],
            env=env,
            stdout=(self.workdir / f"operator-{generation}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started = time.monotonic()
        self.sampler = Sampler(self.operator.pid)
        self.sampler.start()
        self.monitor = Monitor(self.operator.pid)
        self.monitor.start()

    def stop_operator(self) -> None:
        assert self.operator and self.sampler and self.monitor
        os.killpg(self.operator.pid, signal.SIGTERM)
        self.operator.wait(timeout=60)
        self.sampler.stopped.set()
        self.monitor.stopped.set()

    def list(self, plural: str) -> list[dict[str, Any]]:
        res = self.custom.list_namespaced_custom_object(
            "modelfactory.dev", "v1alpha1", self.ns, plural
        )
        return list(res["items"])

    def burst(
        self, items: list[dict[str, Any]], plural: str, children: list[Children]
    ) -> dict[str, Any]:
        assert self.operator and self.sampler
        names = {i["metadata"]["name"] for i in items}
        runs0, cpu0, t0 = len(self.sampler.seen), cpu_seconds(self.operator.pid), time.monotonic()
        helm_cpu0 = children_cpu_seconds(self.operator.pid)
        counts0 = read_counts(self.counts_file)
        kubectl(
            self.env,
            "apply",
            "-n",
            self.ns,
            "-f",
            "-",
            data=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
        applied_at = time.monotonic() - t0
        while time.monotonic() - t0 < self.args.timeout:
            done = released(self.list(plural)) & names
            if len(done) == len(names) and all(names <= set(c.seen) for c in children):
                break
            time.sleep(1)
        took = time.monotonic() - t0
        return {
            "resources": len(items),
            "kind": plural,
            "kubectl_apply_seconds": round(applied_at, 1),
            "converged_seconds": round(took, 1),
            "released": len(released(self.list(plural)) & names),
            "helm_runs": len(self.sampler.seen) - runs0,
            "operator_cores": round((cpu_seconds(self.operator.pid) - cpu0) / took, 2),
            "helm_cpu_seconds": round(children_cpu_seconds(self.operator.pid) - helm_cpu0, 1),
            "api_requests": requests_of(read_counts(self.counts_file)) - requests_of(counts0),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }

    def singles(self) -> dict[str, Any]:
        latencies = []
        for i in range(self.args.singles):
            name = f"single-{i}"
            t0 = time.monotonic()
            self.custom.create_namespaced_custom_object(
                "modelfactory.dev", "v1alpha1", self.ns, "modelservices", modelservice(name)
            )
            while time.monotonic() - t0 < 60:
                if name in self.deployments.seen and name in self.services.seen:
                    break
                time.sleep(0.01)
            latencies.append(
                max(self.deployments.seen.get(name, t0 + 60), self.services.seen.get(name, t0 + 60))
                - t0
            )
            time.sleep(1)
        latencies.sort()
        return {
            "samples": len(latencies),
            "p50_seconds": round(statistics.median(latencies), 2),
            "p99_seconds": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
            "max_seconds": round(latencies[-1], 2),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }

    def rest(self, seconds: float) -> dict[str, Any]:
        assert self.operator and self.sampler
        runs0, cpu0, t0 = len(self.sampler.seen), cpu_seconds(self.operator.pid), time.monotonic()
        counts0 = read_counts(self.counts_file)
        rss = []
        while time.monotonic() - t0 < seconds:
            time.sleep(5)
            rss.append(rss_mib(self.operator.pid))
        took = time.monotonic() - t0
        counts = delta(read_counts(self.counts_file), counts0)
        return {
            "window_seconds": round(took),
            "resources": len(self.list("modelservices")) + len(self.list("trainingjobs")),
            "operator_cores": round((cpu_seconds(self.operator.pid) - cpu0) / took, 4),
            "rss_mib": round(max(rss), 1),
            "helm_runs": len(self.sampler.seen) - runs0,
            "api_requests_per_second": round(requests_of(counts) / took, 3),
            "api_requests": {k: v for k, v in counts.items() if not k.startswith("WATCH")},
            "watch_requests": {k: v for k, v in counts.items() if k.startswith("WATCH")},
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }

    def restart(self) -> dict[str, Any]:
        self.stop_operator()
        changed = "ms-0"
        self.custom.patch_namespaced_custom_object(
            "modelfactory.dev",
            "v1alpha1",
            self.ns,
            "modelservices",
            changed,
            {"spec": {"replicas": {"min": 1, "max": 2}}},
        )
        generation = self.custom.get_namespaced_custom_object(
            "modelfactory.dev", "v1alpha1", self.ns, "modelservices", changed
        )["metadata"]["generation"]
        t0 = time.monotonic()
        self.start_operator(1)
        assert self.operator and self.sampler
        cpu0 = cpu_seconds(self.operator.pid)
        last, last_busy, applied = 0, t0, None
        # Over once the changed release is applied and fewer than --quiet-requests requests a
        # second have come for 5 s: it took until the last busy second.
        while time.monotonic() - t0 < self.args.timeout:
            time.sleep(1)
            now = time.monotonic()
            total = requests_of(read_counts(self.counts_file))
            if total - last >= self.args.quiet_requests or total == 0:
                last_busy = now
            last = total
            if applied is None:
                ms = self.custom.get_namespaced_custom_object(
                    "modelfactory.dev", "v1alpha1", self.ns, "modelservices", changed
                )
                conds = {c["type"]: c for c in (ms.get("status") or {}).get("conditions") or []}
                ok = conds.get("ReleaseApplied", {})
                if ok.get("status") == "True" and ok.get("observedGeneration") == generation:
                    applied = now - t0
            elif now - last_busy >= 5:
                break
        took = last_busy - t0
        counts = read_counts(self.counts_file)
        return {
            "resources": len(self.list("modelservices")) + len(self.list("trainingjobs")),
            "changed_while_down": 1,
            "changed_release_applied_seconds": round(applied, 1) if applied else None,
            "quiet_after_seconds": round(took, 1),
            "helm_runs": len(self.sampler.seen),
            "operator_cores": round(
                (cpu_seconds(self.operator.pid) - cpu0) / (time.monotonic() - t0), 2
            ),
            "api_requests": requests_of(counts),
            "by_request": {
                k: v
                for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
                if not k.startswith("WATCH")
            },
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }

    def cleanup(self) -> None:
        from kubernetes import client

        core = client.CoreV1Api()
        for plural in ("modelservices", "trainingjobs"):
            for item in self.list(plural):
                self.custom.patch_namespaced_custom_object(
                    "modelfactory.dev",
                    "v1alpha1",
                    self.ns,
                    plural,
                    item["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                )
        core.delete_namespace(self.ns)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def run(self) -> dict[str, Any]:
        a = self.args
        kubectl(self.env, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        kubectl(self.env, "create", "namespace", self.ns)
        for watcher in (self.deployments, self.services, self.jobs):
            watcher.start()
        self.start_operator(0)
        out: dict[str, Any] = {"namespace": self.ns, "helm_concurrency": a.concurrency}
        try:
            time.sleep(3)
            bursts = []
            for start in range(0, a.services, a.burst):
                items = [
                    modelservice(f"ms-{i}") for i in range(start, min(start + a.burst, a.services))
                ]
                bursts.append(self.burst(items, "modelservices", [self.deployments, self.services]))
                print(json.dumps(bursts[-1]), file=sys.stderr)
            if a.trainingjobs:
                items = [trainingjob(f"tj-{i}") for i in range(a.trainingjobs)]
                bursts.append(self.burst(items, "trainingjobs", [self.jobs]))
                print(json.dumps(bursts[-1]), file=sys.stderr)
            out["bursts"] = bursts
            time.sleep(a.settle_seconds)
            out["single_apply"] = self.singles()
            print(json.dumps(out["single_apply"]), file=sys.stderr)
            time.sleep(a.settle_seconds)
            # The resync's first pass starts one period after the operator did: a window that
            # opens earlier would miss it.
            time.sleep(max(0.0, self.started + a.resync_seconds - time.monotonic()))
            out["at_rest"] = self.rest(a.rest_seconds)
            print(json.dumps(out["at_rest"]), file=sys.stderr)
            assert self.monitor and self.sampler
            out["first_process"] = {
                "peak_rss_mib": round(self.monitor.peak_rss, 1),
                "busiest_second_cores": round(self.monitor.peak_cores, 2),
                "most_helm_at_once": self.sampler.most,
            }
            out["restart"] = self.restart()
            print(json.dumps(out["restart"]), file=sys.stderr)
            if a.rest_after_restart_seconds:
                out["at_rest_after_restart"] = self.rest(a.rest_after_restart_seconds)
            assert self.monitor and self.sampler
            out["second_process"] = {
                "peak_rss_mib": round(self.monitor.peak_rss, 1),
                "busiest_second_cores": round(self.monitor.peak_cores, 2),
                "most_helm_at_once": self.sampler.most,
            }
        finally:
            self.stop_operator()
            if not a.keep:
                self.cleanup()
        return out


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--as-operator":
        run_operator(sys.argv[2], sys.argv[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--trainingjobs", type=int, default=100)
    parser.add_argument("--burst", type=int, default=100, help="ModelServices per apply")
    parser.add_argument(
        "--singles",
        type=int,
        default=30,
        help="single ModelServices applied one by one once the bursts are in",
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--settle-seconds", type=float, default=30.0)
    parser.add_argument(
        "--rest-seconds",
        type=float,
        default=600.0,
        help="the window measured at rest (a whole resync period by default)",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=600.0,
        help="MF_RESYNC_SECONDS of the operator; the window at rest opens no "
        "sooner than one period after the operator started",
    )
    parser.add_argument("--rest-after-restart-seconds", type=float, default=0.0)
    parser.add_argument(
        "--quiet-requests",
        type=int,
        default=3,
        help="a second of the restart with fewer requests than this is quiet",
    )
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="leave the namespace behind")
    args = parser.parse_args()
    bench = Bench(args)
    out = bench.run()
    out["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
