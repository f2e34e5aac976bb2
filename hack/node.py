"""A real node for the local cluster: containerd, CNI, kubelet, kube-proxy, DNS, storage, metrics.

Used by hack/cluster.py (standard library only). What the node leaves on this machine outside its
own folder, and how `down` removes it, is hack/hostclean.py's.

CoreDNS, metrics-server and the storage provisioner run as processes on this machine beside the
control plane (like kwok and KubeRay's operator), reached by pods through selector-less Services.
Storage is rancher's local-path-provisioner, the default of kind: ReadWriteOnce claims bind to a
directory on the node made world-writable by its helper pod, so non-root pods under the
`restricted` Pod Security level can write.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import hostclean
import images
from hostclean import BRIDGE, NODE_IFACE, NODE_IP, OWNER, SYSCTLS
from hostprocs import run

NODE_NAME = "mf-node"
POD_CIDR = "10.244.0.0/24"
DNS_IP = "10.0.0.10"
PAUSE_IMAGE = "localhost/modelfactory/pause:3.10"
# The local-path provisioner's helper pod only needs a shell: the project's base image has one.
HELPER_IMAGE = "localhost/modelfactory/base:node"
# The real node carries this taint: workloads that must really run tolerate it, while pods of
# the object-level tests keep landing on kwok's fake nodes.
TAINT_KEY = "modelfactory.dev/real-node"
NODE_PROCESSES = (
    "kubelet",
    "kube-proxy",
    "containerd",
    "coredns",
    "metrics-server",
    "local-path-provisioner",
)


def log(msg: str) -> None:
    print(f"[node] {msg}", file=sys.stderr, flush=True)


def missing_tools() -> list[str]:
    need = (
        "containerd",
        "runc",
        "ctr",
        "iptables",
        "ip6tables",
        "ip",
        "buildah",
        "mmdebstrap",
        "gcc",
    )
    missing = [t for t in need if shutil.which(t) is None]
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("containernetworking-plugins")
    return missing


DEBIAN_PACKAGES = (
    "containerd runc containernetworking-plugins buildah mmdebstrap iptables "
    "conntrack iproute2 gcc libc6-dev"
)


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
state = "{c / "state"}"
[grpc]
  address = "{self.sock}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{c / "opt"}"
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
        Root = "{c / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{self.cni_dir / "net.d"}"
"""

    def cni_config(self) -> str:
        return json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": "modelfactory-pods",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": BRIDGE,
                        "isGateway": True,
                        "ipMasq": True,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "dataDir": str(self.cni_dir / "ipam"),
                            "ranges": [[{"subnet": POD_CIDR}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
            indent=2,
        )

    def kubelet_config(self, ports: dict[str, int]) -> str:
        pki = self.cluster.pki
        return json.dumps(
            {
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "containerRuntimeEndpoint": f"unix://{self.sock}",
                "cgroupDriver": "cgroupfs",
                "failSwapOn": False,
                "address": NODE_IP,
                "port": ports["kubelet"],
                "readOnlyPort": 0,
                "healthzBindAddress": "127.0.0.1",
                "healthzPort": ports["kubelet_healthz"],
                "authentication": {
                    "anonymous": {"enabled": False},
                    "webhook": {"enabled": True},
                    "x509": {"clientCAFile": str(pki / "ca.crt")},
                },
                "authorization": {"mode": "Webhook"},
                "clusterDNS": [DNS_IP],
                "clusterDomain": "cluster.local",
                "podLogsDir": str(self.dir / "pod-logs"),
                "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
                "evictionHard": {
                    "memory.available": "100Mi",
                    "nodefs.available": "1%",
                    "imagefs.available": "1%",
                    "nodefs.inodesFree": "1%",
                },
                "imageGCHighThresholdPercent": 100,
                "imageGCLowThresholdPercent": 99,
                "serializeImagePulls": False,
                "maxPods": 110,
                "resolvConf": "/etc/resolv.conf",
                "protectKernelDefaults": False,
                "makeIPTablesUtilChains": True,
            },
            indent=2,
        )

    def kube_proxy_config(self, ports: dict[str, int]) -> str:
        return json.dumps(
            {
                "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                "kind": "KubeProxyConfiguration",
                "clientConnection": {"kubeconfig": str(self.cluster.kubeconfig)},
                "mode": "iptables",
                "clusterCIDR": POD_CIDR,
                "hostnameOverride": NODE_NAME,
                "conntrack": {"maxPerCore": 0, "min": 0},
                "healthzBindAddress": f"127.0.0.1:{ports['proxy_healthz']}",
                "metricsBindAddress": f"127.0.0.1:{ports['proxy_metrics']}",
            },
            indent=2,
        )

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
                f"`MF_CLUSTER_DIR={other} python3 hack/cluster.py down`, or use `up --no-node`"
            )
        OWNER.write_text(str(self.cluster.dir))

    def owned(self) -> bool:
        """Whether this cluster started (part of) a node: only then may `down` clean up."""
        return self.dir.exists() or self.record.exists() or self.owner() == str(self.cluster.dir)

    def remember_host(self) -> None:
        hostclean.remember_host(self.record)

    def start_network(self) -> None:
        if not Path("/proc/sys/net/bridge").exists() and shutil.which("modprobe"):
            run(["modprobe", "br_netfilter"], check=False)
        run(["ip", "addr", "replace", f"{NODE_IP}/32", "dev", NODE_IFACE])
        for key, value in SYSCTLS.items():
            hostclean.write_sysctl(key, value)

    def start(self, bins: dict[str, Path], free_port: Any, built: dict[str, str]) -> None:
        for d in (
            self.containerd_dir,
            self.kubelet_dir,
            self.cni_dir / "net.d",
            self.storage_dir,
            self.dir / "pod-logs",
        ):
            d.mkdir(parents=True, exist_ok=True)
        (self.containerd_dir / "config.toml").write_text(self.containerd_config())
        (self.cni_dir / "net.d" / "10-modelfactory.conflist").write_text(self.cni_config())
        c = self.cluster
        c.start("containerd", ["containerd", "--config", str(self.containerd_dir / "config.toml")])
        c.wait_for("containerd", self.ctr_ok, 30)
        self.load_images(built)

        ports = {
            k: free_port()
            for k in (
                "kubelet",
                "kubelet_healthz",
                "proxy_healthz",
                "proxy_metrics",
                "metrics_server",
            )
        }
        (self.dir / "ports.json").write_text(json.dumps(ports))
        (self.kubelet_dir / "config.json").write_text(self.kubelet_config(ports))
        (self.kubelet_dir / "kubeconfig").write_text(c.node_kubeconfig())
        c.start(
            "kubelet",
            [
                str(bins["kubelet"]),
                f"--config={self.kubelet_dir / 'config.json'}",
                f"--kubeconfig={self.kubelet_dir / 'kubeconfig'}",
                f"--root-dir={self.kubelet_dir / 'root'}",
                f"--node-ip={NODE_IP}",
                f"--hostname-override={NODE_NAME}",
                "--v=1",
            ],
        )
        (self.dir / "kube-proxy.json").write_text(self.kube_proxy_config(ports))
        c.start(
            "kube-proxy",
            [str(bins["kube-proxy"]), f"--config={self.dir / 'kube-proxy.json'}", "--v=1"],
        )
        c.wait_for("kubelet", lambda: self.node_ready(), 90)
        c.wait_for(
            "kube-proxy", lambda: http_ok(f"http://127.0.0.1:{ports['proxy_healthz']}/healthz"), 60
        )

        (self.dir / "Corefile").write_text(self.corefile())
        c.start("coredns", [str(bins["coredns"]), "-conf", str(self.dir / "Corefile")])
        c.kubectl("apply", "-f", "-", input_text=json.dumps(self.host_services(ports)))

        c.start(
            "metrics-server",
            [
                str(bins["metrics-server"]),
                f"--kubeconfig={c.kubeconfig}",
                f"--authentication-kubeconfig={c.kubeconfig}",
                f"--authorization-kubeconfig={c.kubeconfig}",
                f"--bind-address={NODE_IP}",
                f"--secure-port={ports['metrics_server']}",
                f"--cert-dir={self.dir / 'metrics-server'}",
                "--kubelet-insecure-tls",
                "--kubelet-preferred-address-types=InternalIP",
                "--kubelet-use-node-status-port",
                "--metric-resolution=15s",
            ],
        )
        c.kubectl("apply", "-f", "-", input_text=json.dumps(self.storage_objects()))
        (self.dir / "local-path-config.json").write_text(self.local_path_config())
        c.start(
            "local-path-provisioner",
            [
                str(bins["local-path-provisioner"]),
                "start",
                f"--kubeconfig={c.kubeconfig}",
                f"--config={self.dir / 'local-path-config.json'}",
                "--provisioner-name=rancher.io/local-path",
                "--namespace=local-path-storage",
                f"--helper-image={HELPER_IMAGE}",
                "--configmap-name=local-path-config",
                "--service-account-name=local-path-provisioner",
            ],
        )
        time.sleep(1)
        for name in ("coredns", "metrics-server", "local-path-provisioner"):
            if name not in c.running():
                raise c.fail(name, "exited during start-up")

    def ctr_ok(self) -> bool:
        res = subprocess.run(["ctr", "--address", str(self.sock), "version"], capture_output=True)
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
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )

    def host_services(self, ports: dict[str, int]) -> dict[str, Any]:
        """Selector-less Services for DNS and metrics, whose endpoint is this machine."""

        def service(
            name: str, spec: dict[str, Any], endpoint_ports: list[dict[str, Any]]
        ) -> list[dict[str, Any]]:
            meta = {
                "name": name,
                "namespace": "kube-system",
                "labels": {"k8s-app": name, "app.kubernetes.io/managed-by": "hack-cluster"},
            }
            return [
                {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec},
                {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": meta,
                    "subsets": [{"addresses": [{"ip": NODE_IP}], "ports": endpoint_ports}],
                },
            ]

        dns_ports = [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ]
        items = service(
            "kube-dns",
            {"clusterIP": DNS_IP, "ports": [{**p, "targetPort": 53} for p in dns_ports]},
            dns_ports,
        )
        items += service(
            "metrics-server",
            {
                "ports": [
                    {
                        "name": "https",
                        "port": 443,
                        "targetPort": ports["metrics_server"],
                        "protocol": "TCP",
                    }
                ]
            },
            [{"name": "https", "port": ports["metrics_server"], "protocol": "TCP"}],
        )
        items.append(
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
                    "insecureSkipTLSVerify": True,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            }
        )
        return {"apiVersion": "v1", "kind": "List", "items": items}

    def local_path_config(self) -> str:
        return json.dumps(
            {
                "nodePathMap": [
                    {"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(self.storage_dir)]}
                ]
            }
        )

    def storage_objects(self) -> dict[str, Any]:
        helper_pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "helper-pod"},
            "spec": {
                "tolerations": [{"key": TAINT_KEY, "operator": "Exists"}],
                "nodeSelector": {"kubernetes.io/hostname": NODE_NAME},
                "containers": [
                    {"name": "helper-pod", "image": HELPER_IMAGE, "imagePullPolicy": "Never"}
                ],
            },
        }
        ns = "local-path-storage"
        return {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": "local-path-provisioner", "namespace": ns},
                },
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "local-path-config", "namespace": ns},
                    "data": {
                        "config.json": self.local_path_config(),
                        "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                        "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                        "helperPod.yaml": json.dumps(helper_pod),
                    },
                },
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "StorageClass",
                    "metadata": {
                        "name": "local-path",
                        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                    },
                    "provisioner": "rancher.io/local-path",
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": "WaitForFirstConsumer",
                },
            ],
        }

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
            subprocess.run(
                [str(crictl), "--timeout", "30s", "rmp", "-af"], env=env, capture_output=True
            )
        if "kube-proxy" in c.running():
            c.stop_process("kube-proxy")
        if "containerd" in c.running():
            c.stop_process("containerd")
        hostclean.kill_shims(self.containerd_dir)
        hostclean.unmount((str(self.dir), str(self.image_store)))
        hostclean.remove_cgroups()
        hostclean.clean_iptables()
        hostclean.remove_network()
        hostclean.restore_host(self.record)
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.owner() == str(self.cluster.dir):
            OWNER.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        return hostclean.leftovers(self.dir, self.image_store, hostclean.last_record(self.record))


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
