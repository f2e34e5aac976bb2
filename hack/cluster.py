#!/usr/bin/env python3
"""A real local Kubernetes control plane for Model Factory's tests, built from Go modules.

    hack/cluster.py build    # build every binary into the cache (idempotent, keyed by version),
                             # MinIO for the s3:// tests included (hack/s3server.py)
    hack/cluster.py up       # build if needed, then start etcd, apiserver, controllers, kwok
    hack/cluster.py status   # what runs, where
    hack/cluster.py env      # KUBECONFIG=... and PATH=... lines for `eval`
    hack/cluster.py down     # stop every process `up` started (and an S3 server `hack/s3server.py
                             # up` started beside it) and forget the state

Standard library only: it has to run before any Python package is installed.
The binary cache lives outside the repository (MF_CACHE_DIR, default ~/.cache/modelfactory) and
the running cluster's state in MF_CLUSTER_DIR (default <cache>/cluster). The builds are
hack/builds.py's, the credentials hack/pki.py's, the real node hack/node.py's.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import builds  # noqa: E402  (hack/builds.py, standard library only)
import images  # noqa: E402  (hack/images.py, standard library only)
import node as realnode  # noqa: E402  (hack/node.py, standard library only)
import s3server  # noqa: E402  (hack/s3server.py, standard library only)
from builds import binaries, build_all, build_lock, path_dirs  # noqa: E402
from hostprocs import cache_dir, free_port, pid_alive, tail  # noqa: E402
from pki import PKIError, kubeconfig_text, make_certs  # noqa: E402  (hack/pki.py)

# Host tools the tests run beside the node's packages: a real Prometheus checks the operator
# chart's Grafana dashboard queries.
TEST_PACKAGES = "prometheus"
# hack/install-python.sh makes the Python environment with `python3 -m venv`.
PYTHON_PACKAGES = "python3-venv"
NODE_COUNT = 3
# Sized for the operator's scale benchmark (500 ModelServices and 100 TrainingJobs, a Service
# and at least one pod each): a /24 service range runs out of ClusterIPs past ~250 Services.
SERVICE_CIDR = "10.0.0.0/16"
# Addresses kwok hands its fake pods: apart from the service range and the real node's pods.
KWOK_POD_CIDR = "10.128.0.1/16"
# Each fake node's capacity: room for every pod of that benchmark on three nodes (its model
# servers request 500m and 512Mi each, its training pods 1 CPU and 2Gi).
KWOK_NODE_CAPACITY = {"cpu": "256", "memory": "1Ti", "pods": "500"}
# What makes a namespace's pods run on the real node: its node selector and a toleration of its
# taint, added to every pod by the PodNodeSelector and PodTolerationRestriction admission plugins.
PIN_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/node-selector": f"kubernetes.io/hostname={realnode.NODE_NAME}",
    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
        [{"key": realnode.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    ),
}


class ClusterError(RuntimeError):
    """A failure with a message meant for the person at the terminal."""


def state_dir() -> Path:
    return Path(os.environ.get("MF_CLUSTER_DIR") or cache_dir() / "cluster")


def log(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


def kuberay_resolving_cluster_names(state: Path, cmd: list[str]) -> list[str]:
    """KubeRay's operator asks each Ray head's dashboard for its job's status at
    <head>-head-svc.<ns>.svc.cluster.local, as it does from its pod in a cluster. Here it runs
    on this machine, beside the control plane: in a mount namespace of its own, its resolver is
    the node's CoreDNS (which forwards other names to the machine's resolver). The namespace
    ends with the process, so nothing stays mounted."""
    resolv = state / "kuberay-resolv.conf"
    resolv.write_text(f"nameserver {realnode.NODE_IP}\n")
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind "$0" /etc/resolv.conf && exec "$@"',
        str(resolv),
        *cmd,
    ]


def build_images(then: Callable[[dict[str, str]], None] | None = None) -> dict[str, str]:
    """The project's images; the Go builds they take from (helm, the pause source) first.

    `then` runs under the same lock: another build prunes the archives of earlier tags."""
    try:
        with build_lock():
            builds.build_binaries()
            built = images.build_all(cache_dir(), builds.pause_source(), binaries()["helm"])
            if then is not None:
                then(built)
            return built
    except (images.ImageError, subprocess.CalledProcessError) as exc:
        raise ClusterError(str(exc)) from exc


def built_images() -> dict[str, str]:
    try:
        return dict(json.loads((cache_dir() / "images" / "images.json").read_text()))
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------------------- run


@dataclass
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_port(env_name: str) -> int:
    wanted = os.environ.get(env_name)
    if not wanted:
        return free_port()
    port = int(wanted)
    if not port_free(port):
        raise ClusterError(
            f"port {port} on 127.0.0.1 (from {env_name}) is already taken by another process; "
            f"free it or unset {env_name} to pick a free port"
        )
    return port


def terminate(pids: list[int], timeout: float) -> None:
    """SIGTERM each process group, then SIGKILL what still runs after `timeout` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


class Cluster:
    def __init__(self) -> None:
        self.dir = state_dir()
        self.logs = self.dir / "logs"
        self.pids = self.dir / "pids"
        self.pki = self.dir / "pki"
        self.kubeconfig = self.dir / "kubeconfig"
        self.info_file = self.dir / "cluster.json"
        self.cache = cache_dir()
        self.node = realnode.Node(self)

    # --- state
    def token(self) -> str:
        try:
            return (self.pki / "admin.token").read_text().strip()
        except OSError:
            return ""

    def node_kubeconfig(self) -> str:
        server = str(self.info()["server"])
        return kubeconfig_text(
            server,
            self.pki / "ca.crt",
            (self.pki / "node.token").read_text().strip(),
            f"system:node:{realnode.NODE_NAME}",
        )

    def running(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.pids.exists():
            for f in self.pids.iterdir():
                try:
                    pid = int(f.read_text())
                except ValueError:
                    continue
                if pid_alive(pid):
                    out[f.name] = pid
        return out

    def info(self) -> dict[str, object]:
        try:
            return dict(json.loads(self.info_file.read_text()))
        except (OSError, ValueError):
            return {}

    def healthy(self) -> bool:
        info = self.info()
        if not info or not self.kubeconfig.exists():
            return False
        wanted = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
        if info.get("node"):
            wanted |= set(realnode.NODE_PROCESSES)
        if not wanted <= set(self.running()):
            return False
        return self.readyz(str(info["server"]))

    def readyz(self, server: str) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        req = urllib.request.Request(
            server + "/readyz", headers={"Authorization": f"Bearer {self.token()}"}
        )
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=3) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    # --- processes
    def start(self, name: str, cmd: list[str]) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pids.mkdir(parents=True, exist_ok=True)
        logf = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        (self.pids / name).write_text(str(proc.pid))
        return proc.pid

    def fail(self, name: str, why: str) -> ClusterError:
        return ClusterError(
            f"{name} {why}; last lines of {self.logs / (name + '.log')}:\n"
            + tail(self.logs / f"{name}.log")
        )

    def wait_for(self, name: str, check: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name not in self.running():
                raise self.fail(name, "exited during start-up")
            if check():  # type: ignore[operator]
                return
            time.sleep(0.3)
        raise self.fail(name, f"did not become ready within {timeout:.0f}s")

    def stop_process(self, name: str, timeout: float = 15) -> None:
        pid = self.running().get(name)
        if pid is not None:
            terminate([pid], timeout)
        (self.pids / name).unlink(missing_ok=True)

    def stop_all(self) -> list[str]:
        running = self.running()
        terminate(list(running.values()), 10)
        if self.pids.exists():
            shutil.rmtree(self.pids)
        return list(running)

    def etcd_data(self) -> Path:
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else self.dir
        return base / f"modelfactory-etcd-{abs(hash(str(self.dir))) % 10**8}"

    # --- lifecycle
    def up(self, kuberay: bool, with_node: bool) -> None:
        if self.healthy() and bool(self.info().get("node")) >= with_node:
            log(f"already up: {self.info()['server']} (KUBECONFIG={self.kubeconfig})")
            return
        if self.running() or (self.dir / "node").exists():
            log(
                "found a cluster left by an earlier run: stopping "
                + (", ".join(sorted(self.running())) or "its node")
            )
            self.node.stop(binaries()["crictl"])
            self.stop_all()
        shutil.rmtree(self.etcd_data(), ignore_errors=True)
        bins = binaries()
        missing = [n for n, p in bins.items() if not p.exists()]
        if missing:
            log(f"binaries missing ({', '.join(missing)}): building")
            build_all()
        if shutil.which("openssl") is None:
            raise ClusterError("openssl is missing: install it (Debian package `openssl`)")
        if with_node:
            missing = realnode.missing_tools()
            if missing:
                raise ClusterError(
                    f"the real node needs {', '.join(missing)}: apt-get install "
                    f"{realnode.DEBIAN_PACKAGES} (or run `up --no-node`)"
                )
            if os.geteuid() != 0:
                raise ClusterError("the real node needs root (or run `up --no-node`)")
            built = built_images() or build_images()
        started = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        make_certs(self.pki)
        ports = Ports(choose_port("MF_ETCD_PORT"), free_port(), choose_port("MF_APISERVER_PORT"))
        # With a real node the API server listens on the node's own address, which pods reach
        # through the `kubernetes` Service; without one, on loopback only.
        host = realnode.NODE_IP if with_node else "127.0.0.1"
        server = f"https://{host}:{ports.apiserver}"
        if with_node:
            try:
                self.node.claim()
            except RuntimeError as exc:
                raise ClusterError(str(exc)) from exc
            self.node.remember_host()
            self.node.start_network()
        self.kubeconfig.write_text(kubeconfig_text(server, self.pki / "ca.crt", self.token()))
        self.info_file.write_text(
            json.dumps({"server": server, "etcd": ports.etcd_client, "node": with_node})
        )

        etcd_url = f"http://127.0.0.1:{ports.etcd_client}"
        self.start(
            "etcd",
            [
                str(bins["etcd"]),
                "--data-dir",
                str(self.etcd_data()),
                "--name",
                "mf",
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{ports.etcd_peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{ports.etcd_peer}",
                "--initial-cluster",
                f"mf=http://127.0.0.1:{ports.etcd_peer}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )
        self.wait_for("etcd", lambda: realnode.http_ok(etcd_url + "/health"), 30)

        pki = self.pki
        self.start(
            "kube-apiserver",
            [
                str(bins["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                f"--secure-port={ports.apiserver}",
                f"--bind-address={host}",
                f"--advertise-address={host}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={server}/",
                f"--service-account-key-file={pki / 'sa.key'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'kubelet-client.key'}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--requestheader-client-ca-file={pki / 'ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                "--enable-aggregator-routing=true",
                # Namespaces may pin their pods to a node and tolerate its taint (the real node's).
                "--enable-admission-plugins=PodNodeSelector,PodTolerationRestriction",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        self.wait_for("kube-apiserver", lambda: self.readyz(server), 90)

        kc = str(self.kubeconfig)
        self.start(
            "kube-controller-manager",
            [
                str(bins["kube-controller-manager"]),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--secure-port=0",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--controllers=*,-nodeipam",
                "--concurrent-gc-syncs=5",
                # Scale-down after load in minutes, not the default five: a local cluster for tests.
                "--horizontal-pod-autoscaler-downscale-stabilization=30s",
                "--horizontal-pod-autoscaler-sync-period=5s",
                "--v=1",
            ],
        )
        self.start(
            "kube-scheduler",
            [
                str(bins["kube-scheduler"]),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ],
        )
        self.start(
            "kwok",
            [
                # kwok manages only the fake nodes, never the real one.
                str(bins["kwok"]),
                f"--kubeconfig={kc}",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--cidr={KWOK_POD_CIDR}",
                "--node-lease-duration-seconds=40",
            ],
        )
        time.sleep(1)
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            if name not in self.running():
                raise self.fail(name, "exited during start-up")
        self.kubectl("apply", "-f", "-", input_text=nodes_manifest(NODE_COUNT))
        self.wait_for("kwok", lambda: self.nodes_ready() >= NODE_COUNT, 60)
        self.wait_for("kube-controller-manager", self.default_sa_exists, 60)
        if with_node:
            node_started = time.monotonic()
            try:
                self.node.start(bins, free_port, built)
            except RuntimeError as exc:
                raise ClusterError(f"the real node did not start: {exc}") from exc
            log(
                f"real node {realnode.NODE_NAME} ({realnode.NODE_IP}) ready in "
                f"{time.monotonic() - node_started:.1f}s"
            )
        if kuberay:
            self.install_kuberay(cluster_dns=with_node)
        log(f"up in {time.monotonic() - started:.1f}s: {server}; export KUBECONFIG={kc}")

    def install_kuberay(self, cluster_dns: bool) -> None:
        crds = builds.kuberay_crds()
        for f in sorted(crds.glob("*.yaml")):
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
        self.wait_established(["rayjobs.ray.io", "rayclusters.ray.io"])
        cmd = [
            str(binaries()["ray-operator"]),
            f"--kubeconfig={self.kubeconfig}",
            "--enable-leader-election=false",
            "--metrics-addr=0",
            "--health-probe-bind-address=0",
        ]
        self.start(
            "ray-operator", kuberay_resolving_cluster_names(self.dir, cmd) if cluster_dns else cmd
        )

    def wait_established(self, crds: list[str], timeout: float = 60) -> None:
        """`kubectl wait --for=condition=Established` fails at once on a CRD that has no
        conditions yet, as right after it is created: poll instead."""
        deadline = time.monotonic() + timeout
        pending = list(crds)
        while pending:
            pending = [
                c
                for c in pending
                if self.kubectl(
                    "get",
                    "crd",
                    c,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                    check=False,
                )
                != "True"
            ]
            if pending and time.monotonic() > deadline:
                raise ClusterError(
                    f"CRDs not established after {timeout:.0f}s: " + ", ".join(pending)
                )
            if pending:
                time.sleep(0.3)

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        res = subprocess.run(
            [str(binaries()["kubectl"]), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
        )
        if check and res.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
        return res.stdout

    def nodes_ready(self) -> int:
        try:
            out = self.kubectl("get", "nodes", "-o", "json")
        except ClusterError:
            return 0
        count = 0
        for node in json.loads(out)["items"]:
            for cond in node.get("status", {}).get("conditions", []):
                if cond["type"] == "Ready" and cond["status"] == "True":
                    count += 1
        return count

    def default_sa_exists(self, namespace: str = "default") -> bool:
        try:
            self.kubectl("get", "serviceaccount", "default", "-n", namespace)
        except ClusterError:
            return False
        return True

    def down(self) -> None:
        self.node.stop(binaries()["crictl"])
        stopped = self.stop_all()
        shutil.rmtree(self.etcd_data(), ignore_errors=True)
        for f in (self.info_file, self.kubeconfig):
            f.unlink(missing_ok=True)
        log("stopped " + (", ".join(sorted(stopped)) if stopped else "nothing (was not running)"))

    def images(self) -> None:
        def report_and_load(built: dict[str, str]) -> None:
            for role, size in images.sizes(cache_dir(), built).items():
                log(f"{built[role]}: {size} MB")
            if self.info().get("node") and "containerd" in self.running():
                self.node.load_images(built)

        build_images(then=report_and_load)

    def pin_namespaces(self, names: list[str]) -> None:
        """Create (or keep) each namespace and make its pods run on the real node."""
        if not self.info().get("node"):
            raise ClusterError(
                "no cluster with its real node is up: run `python3 hack/cluster.py up` first"
            )
        pins = [f"{k}={v}" for k, v in PIN_ANNOTATIONS.items()]
        for ns in names:
            if not self.kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name"):
                self.kubectl("create", "namespace", ns)
            self.kubectl("annotate", "--overwrite", "namespace", ns, *pins)
        # Pods need their namespace's default ServiceAccount, which comes a moment later.
        for ns in names:
            self.wait_until(
                f"{ns}'s default ServiceAccount", functools.partial(self.default_sa_exists, ns), 60
            )
            log(f"namespace {ns}: new pods run on the real node {realnode.NODE_NAME}")

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise ClusterError(f"no {what} after {timeout:.0f}s")
            time.sleep(0.3)

    def status(self) -> int:
        running = self.running()
        info = self.info()
        healthy = self.healthy()
        print(
            json.dumps(
                {
                    "healthy": healthy,
                    "server": info.get("server"),
                    "kubeconfig": str(self.kubeconfig) if info else None,
                    "processes": running,
                    "node": bool(info.get("node")),
                    "images": built_images(),
                    "state_dir": str(self.dir),
                },
                indent=2,
            )
        )
        return 0 if healthy else 1


def nodes_manifest(count: int) -> str:
    items = []
    for i in range(count):
        name = f"kwok-node-{i}"
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
                "status": {
                    "allocatable": dict(KWOK_NODE_CAPACITY),
                    "capacity": dict(KWOK_NODE_CAPACITY),
                },
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def chart_values(built: dict[str, str], pull_policy: str) -> dict[str, dict[str, str]]:
    """The operator chart's values that run the images built here."""

    def image(name: str) -> dict[str, str]:
        repository, tag = name.rsplit(":", 1)
        return {"repository": repository, "tag": tag}

    return {
        "image": {**image(built["operator"]), "pullPolicy": pull_policy},
        "trainingImage": image(built["training"]),
        "servingImage": image(built["serving"]),
    }


def values_yaml(values: dict[str, dict[str, str]]) -> str:
    """Two levels of strings as YAML; every scalar quoted, so no tag ever reads as a number."""
    lines = []
    for key, fields in values.items():
        lines.append(f"{key}:")
        lines += [f"  {k}: {json.dumps(v)}" for k, v in fields.items()]
    return "\n".join(lines)


def values_set_flags(values: dict[str, dict[str, str]]) -> str:
    return " ".join(
        f"--set-string {key}.{k}={v}" for key, fields in values.items() for k, v in fields.items()
    )


def helm_values(fmt: str, pull_policy: str) -> str:
    helm = binaries()["helm"]
    if not helm.exists():
        raise ClusterError(
            "helm is not built yet (the images' names follow it): run "
            "`python3 hack/cluster.py build`"
        )
    wanted = images.names(helm)
    built = built_images()
    if any(built.get(r) != wanted[r] for r in images.TARGETS):
        log(
            "the images of the current sources are not built yet: run "
            "`python3 hack/cluster.py images`"
        )
    values = chart_values(wanted, pull_policy)
    return values_yaml(values) if fmt == "yaml" else values_set_flags(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build every binary into the cache")
    up = sub.add_parser("up", help="start the control plane (builds first if needed)")
    up.add_argument(
        "--no-kuberay",
        action="store_true",
        help="do not install KubeRay's CRDs nor start its operator",
    )
    up.add_argument(
        "--no-node",
        action="store_true",
        help="no real node: the control plane with kwok's fake nodes only",
    )
    sub.add_parser(
        "images",
        help="build the project's images (cached by their inputs) and "
        "load them into the running node",
    )
    sub.add_parser("down", help="stop everything `up` started")
    sub.add_parser("status", help="print what runs; exit 1 when not healthy")
    sub.add_parser("env", help="print KUBECONFIG and PATH lines for eval")
    sub.add_parser("bin-path", help="print the directories that hold the built binaries")
    sub.add_parser(
        "leftovers",
        help="list what a stopped node left on this machine; exit 1 when anything is left",
    )
    wait = sub.add_parser("wait-crds", help="wait until the named CRDs are established")
    wait.add_argument("crds", nargs="+")
    sub.add_parser(
        "packages",
        help="print the Debian packages the real node, the images, the "
        "Python environment and the tests need",
    )
    sub.add_parser(
        "gateway-api-crds", help="print the folder of Gateway API's CRDs (`build` fetches them)"
    )
    values = sub.add_parser(
        "helm-values",
        help="print the operator chart's values that run the "
        "images `images` builds (YAML for -f, or --set-string flags)",
    )
    values.add_argument("--format", choices=("yaml", "set"), default="yaml")
    values.add_argument(
        "--pull-policy",
        choices=("Never", "IfNotPresent"),
        default="Never",
        help="the operator's imagePullPolicy (default: Never)",
    )
    pin = sub.add_parser(
        "pin-namespace",
        help="create (or keep) namespaces whose new pods run "
        "on the real node: its node selector and a toleration of its taint",
    )
    pin.add_argument("namespaces", nargs="+")
    args = parser.parse_args(argv)
    cluster = Cluster()
    try:
        if args.cmd == "build":
            build_all()
        elif args.cmd == "up":
            cluster.up(kuberay=not args.no_kuberay, with_node=not args.no_node)
        elif args.cmd == "images":
            cluster.images()
        elif args.cmd == "down":
            cluster.down()
            if s3server.down():
                log("stopped the S3 server (MinIO)")
        elif args.cmd == "status":
            return cluster.status()
        elif args.cmd == "env":
            print(f"export KUBECONFIG={cluster.kubeconfig}")
            print(f"export PATH={':'.join(path_dirs())}:$PATH")
        elif args.cmd == "leftovers":
            left = cluster.node.leftovers() + s3server.leftovers()
            print("\n".join(left) or "nothing left")
            return 1 if left else 0
        elif args.cmd == "wait-crds":
            cluster.wait_established(args.crds)
        elif args.cmd == "packages":
            print(realnode.DEBIAN_PACKAGES, PYTHON_PACKAGES, TEST_PACKAGES)
        elif args.cmd == "bin-path":
            print(":".join(path_dirs()))
        elif args.cmd == "helm-values":
            print(helm_values(args.format, args.pull_policy))
        elif args.cmd == "pin-namespace":
            cluster.pin_namespaces(args.namespaces)
        elif args.cmd == "gateway-api-crds":
            print(builds.gateway_api_crd_dir())
    except (ClusterError, builds.BuildError, PKIError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
