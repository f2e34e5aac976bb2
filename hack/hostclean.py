"""What the real node leaves on this machine outside its own folders, and how `down` removes it.

Standard library only, like hack/node.py, which starts the node. Everything the node makes
outside its folder is named after it or recorded before it starts, so `down` (and an `up` after
a killed run) can remove it: processes by the folder they run from, mounts under the node's
folders and pod network namespaces, the kubepods cgroups, KUBE-* and CNI-* iptables chains, the
CNI bridge and the node's address, the sysctls it changed and the folders the kubelet and
containerd create.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from hostprocs import run

NODE_IP = "10.250.0.1"
# The node's own address sits on the loopback interface (a kubelet refuses 127.0.0.0/8, not
# the interface): it needs no kernel module, and nothing outside this machine can reach it.
NODE_IFACE = "lo"
BRIDGE = "mf-cni0"
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
# Chains of kube-proxy, the kubelet and the CNI plugins.
CHAIN_PREFIXES = ("KUBE-", "CNI-")


def remember_host(record: Path) -> None:
    """What the machine looked like before the node: `restore_host` puts it back."""
    if record.exists():
        return
    found = {
        "sysctls": {k: read_sysctl(k) for k in SYSCTLS},
        "dirs": {d: os.path.lexists(d) for d in FOREIGN_DIRS},
    }
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(found))


def restore_host(record: Path) -> None:
    """Put back the sysctls and remove the folders the node made; `.last` keeps the record for
    `leftovers`."""
    try:
        found = json.loads(record.read_text())
    except (OSError, ValueError):
        return
    for key, value in found.get("sysctls", {}).items():
        if value is not None:
            write_sysctl(key, value)
    for d, existed in found.get("dirs", {}).items():
        if not existed and os.path.lexists(d):
            shutil.rmtree(d, ignore_errors=True)
    record.replace(last_record_path(record))


def last_record_path(record: Path) -> Path:
    return record.with_suffix(".last")


def last_record(record: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(last_record_path(record).read_text()))
    except (OSError, ValueError):
        return {}


def kill_shims(containerd_dir: Path) -> None:
    """containerd-shims of the node's containerd outlive it; they hold the containers."""
    for pid, cmdline in processes(str(containerd_dir)):
        if "containerd-shim" in cmdline:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
    time.sleep(0.5)


def unmount(node_dirs: tuple[str, ...]) -> None:
    """Every mount under the node's folders, the pod network namespaces and the kubelet's."""
    roots = (
        *node_dirs,
        "/run/netns/cni-",
        "/run/containerd/io.containerd",
        "/var/lib/kubelet/pods",
    )
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


def remove_network() -> None:
    """The CNI bridge and the node's address."""
    run(["ip", "link", "del", BRIDGE], check=False)
    run(["ip", "addr", "del", f"{NODE_IP}/32", "dev", NODE_IFACE], check=False)


def leftovers(node_dir: Path, image_store: Path, found: dict[str, Any]) -> list[str]:
    """What a node left on this machine: empty after a clean `down`."""
    left = []
    needle = str(node_dir.parent)
    left += [
        f"process {pid}: {cmdline[:120]}"
        for pid, cmdline in processes(needle)
        if "leftovers" not in cmdline
    ]
    left += [
        f"mount {m}"
        for m in mountpoints()
        if m.startswith((needle, str(image_store), "/run/netns/cni-"))
    ]
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = run([tool, "-w", "-t", table, "-S"], check=False).splitlines()
            left += [
                f"{tool} -t {table} {r}"
                for r in rules
                if r.startswith("-N ") and r.split()[1].startswith(CHAIN_PREFIXES)
            ]
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
    orphans = {
        int(pid)
        for top in tops
        for procs in top.rglob("cgroup.procs")
        for pid in procs.read_text().split()
        if pid.isdigit()
    }
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
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            rules = run([tool, "-w", "-t", table, "-S"], check=False).splitlines()
            for rule in rules:
                parts = shlex.split(rule)
                if len(parts) < 2 or parts[0] != "-A":
                    continue
                if parts[1].startswith(CHAIN_PREFIXES):
                    continue  # flushed below
                if any(p.startswith(CHAIN_PREFIXES) for p in parts[2:]):
                    run([tool, "-w", "-t", table, "-D", *parts[1:]], check=False)
            chains = [
                r.split()[1]
                for r in rules
                if r.startswith("-N ") and r.split()[1].startswith(CHAIN_PREFIXES)
            ]
            for chain in chains:
                run([tool, "-w", "-t", table, "-F", chain], check=False)
            for chain in chains:
                run([tool, "-w", "-t", table, "-X", chain], check=False)
