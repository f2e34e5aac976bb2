"""A real node for the local cluster: containerd, CNI, kubelet, kube-proxy, DNS, storage, metrics.

Used by hack/cluster.py (standard library only). Everything the node creates outside its own
directory is recorded or named after it, so `down` (and an `up` after a killed run) can remove it:
processes by PID, mounts under the node's directories and pod network namespaces, the kubepods
cgroups, KUBE-* and CNI-* iptables chains, the CNI bridge and the node's address, and the
sysctls it changed.

CoreDNS, metrics-server and the storage provisioner run as processes on this machine beside the
control plane (like kwok and KubeRay's operator), reached by pods through selector-less Services.
Storage is rancher's local-path-provisioner, the default of kind: ReadWriteOnce claims bind to a
directory on the node made world-writable by its helper pod, so non-root pods under the
`restricted` Pod Security level can write.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import images

NODE_NAME = "mf-node"
NODE_IP = "10.250.0.1"
# The node's own address sits on the loopback interface (a kubelet refuses 127.0.0.0/8, not
# the interface): it needs no kernel module, and nothing outside this machine can reach it.
NODE_IFACE = "lo"
BRIDGE = "mf-cni0"
POD_CIDR = "10.244.0.0/24"
DNS_IP = "10.0.0.10"
PAUSE_IMAGE = "localhost/modelfactory/pause:3.10"
# The local-path provisioner's helper pod only needs a shell: the project's base image has one.
HELPER_IMAGE = "localhost/modelfactory/base:node"
# The real node carries this taint: workloads that must really run tolerate it, while pods of
# the object-level tests keep landing on kwok's fake nodes.
TAINT_KEY = "modelfactory.dev/real-node"
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}
# Directories the kubelet and containerd create outside their configured roots.
FOREIGN_DIRS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/run/netns",
    "/run/runc",
    "/var/lib/cni",
    "/etc/cni",
    "/opt/cni",
)
# One real node per machine (its address, bridge, chains and cgroups are the machine's): this file
# names the cluster that runs it.
OWNER = Path("/run/modelfactory-node")
NODE_PROCESSES = ("kubelet", "kube-proxy", "containerd", "coredns", "metrics-server",
                  "local-path-provisioner")


def log(msg: str) -> None:
    print(f"[node] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], check: bool = True, input_text: str | None = None) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, input=input_text)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def missing_tools() -> list[str]:
    need = ("containerd", "runc", "ctr", "iptables", "ip6tables", "ip", "buildah", "mmdebstrap",
            "gcc")
    missing = [t for t in need if shutil.which(t) is None]
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("containernetworking-plugins")
    return missing


DEBIAN_PACKAGES = ("containerd runc containernetworking-plugins buildah mmdebstrap iptables "
                   "conntrack iproute2 gcc libc6-dev")


class Node:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.dir: Path = cluster.dir / "node"
        self.containerd_dir = self.dir / "containerd"
        self.sock = self.containerd_dir / "containerd.sock"
        # containerd's content store outlives the node, like the binary cache: a warm `up`
        # imports no image twice. Everything else of the node goes with `down`.
        self.image_store = cluster.cache / "containerd"
        self.kubelet_dir = self.dir / "kubelet"
        self.cni_dir = self.dir / "cni"
        self.storage_dir = self.dir / "local-path"
        # Outside the node's folder, which `down` removes; `.last` keeps it for `leftovers`.
        self.record = cluster.dir / "node-host.json"

    # ------------------------------------------------------------------ config files

    def containerd_config(self) -> str:
        c = self.containerd_dir
        return f"""version = 2
root = "{self.image_store}"
state = "{c / 'state'}"
[grpc]
  address = "{self.sock}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{c / 'opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{c / 'runc'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{self.cni_dir / 'net.d'}"
"""

    def cni_config(self) -> str:
        return json.dumps({
            "cniVersion": "0.4.0", "name": "modelfactory-pods",
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(self.cni_dir / "ipam"),
                          "ranges": [[{"subnet": POD_CIDR}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=2)

    def kubelet_config(self, ports: dict[str, int]) -> str:
        pki = self.cluster.pki
        return json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "containerRuntimeEndpoint": f"unix://{self.sock}",
            "cgroupDriver": "cgroupfs", "failSwapOn": False,
            "address": NODE_IP, "port": ports["kubelet"], "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": ports["kubelet_healthz"],
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [DNS_IP], "clusterDomain": "cluster.local",
            "podLogsDir": str(self.dir / "pod-logs"),
            "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "maxPods": 110,
            "resolvConf": "/etc/resolv.conf",
            "protectKernelDefaults": False,
            "makeIPTablesUtilChains": True,
        }, indent=2)

    def kube_proxy_config(self, ports: dict[str, int]) -> str:
        return json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.cluster.kubeconfig)},
            "mode": "iptables", "clusterCIDR": POD_CIDR, "hostnameOverride": NODE_NAME,
            "conntrack": {"maxPerCore": 0, "min": 0},
            "healthzBindAddress": f"127.0.0.1:{ports['proxy_healthz']}",
            "metricsBindAddress": f"127.0.0.1:{ports['proxy_metrics']}",
        }, indent=2)

    def corefile(self) -> str:
        return f""".:53 {{
    bind {NODE_IP}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {self.cluster.kubeconfig} local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    forward . /etc/resolv.conf
    cache 5
}}
"""

    # ------------------------------------------------------------------ start

    def owner(self) -> str | None:
        try:
            return OWNER.read_text().strip() or None
        except OSError:
            return None

    def claim(self) -> None:
        """Refuse to start a second node on this machine; a stale claim is taken over."""
        other = self.owner()
        if other and other != str(self.cluster.dir) and (Path(other) / "node").exists():
            raise RuntimeError(
                f"the real node of the cluster in {other} runs on this machine: stop it with "
                f"`MF_CLUSTER_DIR={other} python3 hack/cluster.py down`, or use `up --no-node`")
        OWNER.write_text(str(self.cluster.dir))

    def owned(self) -> bool:
        """Whether this cluster started (part of) a node: only then may `down` clean up."""
        return self.dir.exists() or self.record.exists() or self.owner() == str(self.cluster.dir)

    def remember_host(self) -> None:
        """What the machine looked like before the node: `down` puts it back."""
        if self.record.exists():
            return
        found = {
            "sysctls": {k: read_sysctl(k) for k in SYSCTLS},
            "dirs": {d: os.path.lexists(d) for d in FOREIGN_DIRS},
        }
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_text(json.dumps(found))

    def start_network(self) -> None:
        if not Path("/proc/sys/net/bridge").exists() and shutil.which("modprobe"):
            run(["modprobe", "br_netfilter"], check=False)
        run(["ip", "addr", "replace", f"{NODE_IP}/32", "dev", NODE_IFACE])
        for key, value in SYSCTLS.items():
            write_sysctl(key, value)

    def start(self, bins: dict[str, Path], free_port: Any, built: dict[str, str]) -> None:
        for d in (self.containerd_dir, self.kubelet_dir, self.cni_dir / "net.d", self.storage_dir,
                  self.dir / "pod-logs"):
            d.mkdir(parents=True, exist_ok=True)
        (self.containerd_dir / "config.toml").write_text(self.containerd_config())
        (self.cni_dir / "net.d" / "10-modelfactory.conflist").write_text(self.cni_config())
        c = self.cluster
        c.start("containerd", ["containerd", "--config", str(self.containerd_dir / "config.toml")])
        c.wait_for("containerd", self.ctr_ok, 30)
        self.load_images(built)

        ports = {k: free_port() for k in ("kubelet", "kubelet_healthz", "proxy_healthz",
                                           "proxy_metrics", "metrics_server")}
        (self.dir / "ports.json").write_text(json.dumps(ports))
        (self.kubelet_dir / "config.json").write_text(self.kubelet_config(ports))
        (self.kubelet_dir / "kubeconfig").write_text(c.node_kubeconfig())
        c.start("kubelet", [
            str(bins["kubelet"]), f"--config={self.kubelet_dir / 'config.json'}",
            f"--kubeconfig={self.kubelet_dir / 'kubeconfig'}",
            f"--root-dir={self.kubelet_dir / 'root'}", f"--node-ip={NODE_IP}",
            f"--hostname-override={NODE_NAME}", "--v=1",
        ])
        (self.dir / "kube-proxy.json").write_text(self.kube_proxy_config(ports))
        c.start("kube-proxy", [str(bins["kube-proxy"]),
                               f"--config={self.dir / 'kube-proxy.json'}", "--v=1"])
        c.wait_for("kubelet", lambda: self.node_ready(), 90)
        c.wait_for("kube-proxy", lambda: http_ok(
            f"http://127.0.0.1:{ports['proxy_healthz']}/healthz"), 60)

        (self.dir / "Corefile").write_text(self.corefile())
        c.start("coredns", [str(bins["coredns"]), "-conf", str(self.dir / "Corefile")])
        c.kubectl("apply", "-f", "-", input_text=json.dumps(self.host_services(ports)))

        c.start("metrics-server", [
            str(bins["metrics-server"]), f"--kubeconfig={c.kubeconfig}",
            f"--authentication-kubeconfig={c.kubeconfig}",
            f"--authorization-kubeconfig={c.kubeconfig}",
            f"--bind-address={NODE_IP}", f"--secure-port={ports['metrics_server']}",
            f"--cert-dir={self.dir / 'metrics-server'}", "--kubelet-insecure-tls",
            "--kubelet-preferred-address-types=InternalIP", "--kubelet-use-node-status-port",
            "--metric-resolution=15s",
        ])
        c.kubectl("apply", "-f", "-", input_text=json.dumps(self.storage_objects()))
        (self.dir / "local-path-config.json").write_text(self.local_path_config())
        c.start("local-path-provisioner", [
            str(bins["local-path-provisioner"]), "start", f"--kubeconfig={c.kubeconfig}",
            f"--config={self.dir / 'local-path-config.json'}",
            "--provisioner-name=rancher.io/local-path", "--namespace=local-path-storage",
            f"--helper-image={HELPER_IMAGE}", "--configmap-name=local-path-config",
            "--service-account-name=local-path-provisioner",
        ])
        time.sleep(1)
        for name in ("coredns", "metrics-server", "local-path-provisioner"):
            if name not in c.running():
                raise c.fail(name, "exited during start-up")

    def ctr_ok(self) -> bool:
        res = subprocess.run(["ctr", "--address", str(self.sock), "version"],
                             capture_output=True)
        return res.returncode == 0

    def ctr(self, *args: str) -> str:
        return run(["ctr", "--address", str(self.sock), "-n", "k8s.io", *args])

    def load_images(self, built: dict[str, str]) -> None:
        """Import the images built here into containerd, the pause and helper images by name."""
        present = set(self.ctr("images", "ls", "-q").split())
        for role, archive in images.archives(self.cluster.cache, built).items():
            if built[role] not in present:
                started = time.monotonic()
                self.ctr("images", "import", str(archive))
                log(f"imported {built[role]} in {time.monotonic() - started:.1f}s")
        self.ctr("images", "tag", "--force", built["base"], HELPER_IMAGE)
        # Images of earlier inputs: containerd collects their content once no name holds it.
        keep = {*built.values(), PAUSE_IMAGE, HELPER_IMAGE}
        stale = [i for i in present if i.startswith(images.REPOSITORY + "/") and i not in keep]
        if stale:
            self.ctr("images", "rm", *stale)

    def node_ready(self) -> bool:
        try:
            node = json.loads(self.cluster.kubectl("get", "node", NODE_NAME, "-o", "json"))
        except Exception:
            return False
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node.get("status", {}).get("conditions", []))

    def host_services(self, ports: dict[str, int]) -> dict[str, Any]:
        """Selector-less Services for DNS and metrics, whose endpoint is this machine."""

        def service(name: str, spec: dict[str, Any], endpoint_ports: list[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
            meta = {"name": name, "namespace": "kube-system",
                    "labels": {"k8s-app": name, "app.kubernetes.io/managed-by": "hack-cluster"}}
            return [
                {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec},
                {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
                 "subsets": [{"addresses": [{"ip": NODE_IP}], "ports": endpoint_ports}]},
            ]

        dns_ports = [{"name": "dns", "port": 53, "protocol": "UDP"},
                     {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
        items = service("kube-dns", {"clusterIP": DNS_IP, "ports": [
            {**p, "targetPort": 53} for p in dns_ports]}, dns_ports)
        items += service("metrics-server", {"ports": [
            {"name": "https", "port": 443, "targetPort": ports["metrics_server"],
             "protocol": "TCP"}]},
            [{"name": "https", "port": ports["metrics_server"], "protocol": "TCP"}])
        items.append({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                     "service": {"name": "metrics-server", "namespace": "kube-system",
                                 "port": 443},
                     "insecureSkipTLSVerify": True, "groupPriorityMinimum": 100,
                     "versionPriority": 100},
        })
        return {"apiVersion": "v1", "kind": "List", "items": items}

    def local_path_config(self) -> str:
        return json.dumps({"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES",
                                            "paths": [str(self.storage_dir)]}]})

    def storage_objects(self) -> dict[str, Any]:
        helper_pod = {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "helper-pod"},
            "spec": {
                "tolerations": [{"key": TAINT_KEY, "operator": "Exists"}],
                "nodeSelector": {"kubernetes.io/hostname": NODE_NAME},
                "containers": [{"name": "helper-pod", "image": HELPER_IMAGE,
                                "imagePullPolicy": "Never"}],
            },
        }
        ns = "local-path-storage"
        return {"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "local-path-provisioner", "namespace": ns}},
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "local-path-config", "namespace": ns},
             "data": {
                 "config.json": self.local_path_config(),
                 "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                 "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                 "helperPod.yaml": json.dumps(helper_pod),
             }},
            {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
             "metadata": {"name": "local-path", "annotations": {
                 "storageclass.kubernetes.io/is-default-class": "true"}},
             "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
             "volumeBindingMode": "WaitForFirstConsumer"},
        ]}

    # ------------------------------------------------------------------ stop

    def stop(self, crictl: Path | None) -> None:
        """Remove every trace of the node; safe to run on a node that never fully started.

        A cluster that never started a node touches nothing: the machine's node may be another
        cluster's."""
        if not self.owned():
            return
        c = self.cluster
        running = c.running()
        for name in ("kubelet", "local-path-provisioner", "metrics-server", "coredns"):
            if name in running:
                c.stop_process(name)
        if "containerd" in c.running() and crictl is not None and crictl.exists():
            env = dict(os.environ, CONTAINER_RUNTIME_ENDPOINT=f"unix://{self.sock}")
            subprocess.run([str(crictl), "--timeout", "30s", "rmp", "-af"], env=env,
                           capture_output=True)
        if "kube-proxy" in c.running():
            c.stop_process("kube-proxy")
        if "containerd" in c.running():
            c.stop_process("containerd")
        self.kill_shims()
        self.unmount()
        remove_cgroups()
        clean_iptables()
        run(["ip", "link", "del", BRIDGE], check=False)
        run(["ip", "addr", "del", f"{NODE_IP}/32", "dev", NODE_IFACE], check=False)
        self.restore_host()
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.owner() == str(self.cluster.dir):
            OWNER.unlink(missing_ok=True)

    def kill_shims(self) -> None:
        """containerd-shims of this node's containerd outlive it; they hold the containers."""
        for pid, cmdline in processes(str(self.containerd_dir)):
            if "containerd-shim" in cmdline:
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)
        time.sleep(0.5)

    def unmount(self) -> None:
        roots = (str(self.dir), str(self.image_store), "/run/netns/cni-",
                 "/run/containerd/io.containerd", "/var/lib/kubelet/pods")
        for _ in range(3):
            mounts = [m for m in mountpoints() if m.startswith(roots)]
            if not mounts:
                break
            for m in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True)
        netns = Path("/run/netns")
        if netns.is_dir():
            for f in netns.glob("cni-*"):
                with contextlib.suppress(OSError):
                    f.unlink()

    def restore_host(self) -> None:
        try:
            found = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return
        for key, value in found.get("sysctls", {}).items():
            if value is not None:
                write_sysctl(key, value)
        for d, existed in found.get("dirs", {}).items():
            if not existed and os.path.lexists(d):
                shutil.rmtree(d, ignore_errors=True)
        self.record.replace(self.record.with_suffix(".last"))

    def leftovers(self) -> list[str]:
        try:
            found = json.loads(self.record.with_suffix(".last").read_text())
        except (OSError, ValueError):
            found = {}
        return leftovers(self.dir, self.image_store, found)


def leftovers(node_dir: Path, image_store: Path, found: dict[str, Any]) -> list[str]:
    """What a node left on this machine: empty after a clean `down`."""
    left = []
    needle = str(node_dir.parent)
    left += [f"process {pid}: {cmdline[:120]}" for pid, cmdline in processes(needle)
             if "leftovers" not in cmdline]
    left += [f"mount {m}" for m in mountpoints()
             if m.startswith((needle, str(image_store), "/run/netns/cni-"))]
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = run([tool, "-w", "-t", table, "-S"], check=False).splitlines()
            left += [f"{tool} -t {table} {r}" for r in rules
                     if r.startswith("-N ") and r.split()[1].startswith(("KUBE-", "CNI-"))]
    if run(["ip", "-o", "link", "show", BRIDGE], check=False):
        left.append(f"interface {BRIDGE}")
    if f" {NODE_IP}/" in run(["ip", "-o", "addr", "show", "dev", NODE_IFACE], check=False):
        left.append(f"address {NODE_IP} on {NODE_IFACE}")
    for top in ("kubepods", "kubepods.slice"):
        left += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/{top}")]
    for key, value in (found.get("sysctls") or {}).items():
        if value is not None and read_sysctl(key) != value:
            left.append(f"sysctl {key}={read_sysctl(key)} (was {value})")
    for d, existed in (found.get("dirs") or {}).items():
        if not existed and os.path.lexists(d):
            left.append(f"directory {d}")
    if OWNER.exists():
        left.append(f"{OWNER} ({OWNER.read_text().strip()})")
    return left


def processes(needle: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose command line mentions `needle`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmdline:
            found.append((int(proc.name), cmdline))
    return found


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def read_sysctl(key: str) -> str | None:
    try:
        return Path("/proc/sys", key).read_text().strip()
    except OSError:
        return None


def write_sysctl(key: str, value: str) -> None:
    with contextlib.suppress(OSError):
        Path("/proc/sys", key).write_text(value)


def mountpoints() -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            out.append(line.split()[4].replace("\\040", " "))
    return out


def remove_cgroups() -> None:
    """The kubelet's cgroupfs driver leaves kubepods trees in every controller."""
    base = Path("/sys/fs/cgroup")
    tops = []
    for name in ("kubepods", "kubepods.slice", "k8s.io"):
        tops += list(base.glob(name)) + list(base.glob(f"*/{name}"))
    # Containers whose containerd and shims were killed (a killed run) still live in them.
    orphans = {int(pid) for top in tops for procs in top.rglob("cgroup.procs")
               for pid in procs.read_text().split() if pid.isdigit()}
    for pid in orphans:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
    if orphans:
        time.sleep(1)
    for top in tops:
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def clean_iptables() -> None:
    """Remove the chains kube-proxy, the kubelet and the CNI plugins made, and jumps to them."""
    ours = ("KUBE-", "CNI-")
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            rules = run([tool, "-w", "-t", table, "-S"], check=False).splitlines()
            for rule in rules:
                parts = shlex.split(rule)
                if len(parts) < 2 or parts[0] != "-A":
                    continue
                if parts[1].startswith(ours):
                    continue  # flushed below
                if any(p.startswith(ours) for p in parts[2:]):
                    run([tool, "-w", "-t", table, "-D", *parts[1:]], check=False)
            chains = [r.split()[1] for r in rules if r.startswith("-N ")
                      and r.split()[1].startswith(ours)]
            for chain in chains:
                run([tool, "-w", "-t", table, "-F", chain], check=False)
            for chain in chains:
                run([tool, "-w", "-t", table, "-X", chain], check=False)
