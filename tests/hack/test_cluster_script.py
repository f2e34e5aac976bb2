"""hack/cluster.py's failure paths: each one says clearly what is wrong."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Kube

pytestmark = pytest.mark.integration
SCRIPT = str(Path(__file__).resolve().parents[2] / "hack" / "cluster.py")


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_missing_go_toolchain_is_named(tmp_path: Path) -> None:
    env = dict(os.environ, MF_CACHE_DIR=str(tmp_path / "cache"), PATH="/usr/bin/nonexistent")
    res = run("build", env=env)
    assert res.returncode == 1
    assert "Go toolchain is missing" in res.stderr


def test_port_already_taken_is_named(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = dict(os.environ, MF_CLUSTER_DIR=str(tmp_path / "state"), MF_APISERVER_PORT=str(port))
        res = run("up", "--no-kuberay", env=env)
    assert res.returncode == 1
    assert f"port {port}" in res.stderr and "already taken" in res.stderr


def test_half_started_run_is_cleaned_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "pids").mkdir(parents=True)
    leftover = subprocess.Popen(["sleep", "300"], start_new_session=True)
    (state / "pids" / "etcd").write_text(str(leftover.pid))
    env = dict(os.environ, MF_CLUSTER_DIR=str(state))
    status = run("status", env=env)
    assert status.returncode == 1 and '"healthy": false' in status.stdout
    res = run("down", env=env)
    assert res.returncode == 0 and "etcd" in res.stderr
    assert leftover.wait(timeout=15) is not None


def test_status_and_env_without_a_cluster(tmp_path: Path) -> None:
    env = dict(os.environ, MF_CLUSTER_DIR=str(tmp_path / "none"))
    assert run("status", env=env).returncode == 1
    out = run("env", env=env).stdout
    assert "KUBECONFIG=" in out and "PATH=" in out
    assert "nothing" in run("down", env=env).stderr


def test_another_cluster_leaves_the_real_node_alone(kube: Kube, tmp_path: Path) -> None:
    """One real node per machine: a second cluster may neither start one nor stop this one."""
    if not json.loads(run("status", env=dict(os.environ)).stdout).get("node"):
        pytest.skip("the session's cluster runs without its real node")
    env = dict(os.environ, MF_CLUSTER_DIR=str(tmp_path / "other"))
    res = run("up", "--no-kuberay", env=env)
    assert res.returncode == 1 and "the real node of the cluster in" in res.stderr
    run("down", env=env)
    nodes = json.loads(kube.kubectl("get", "node", "mf-node", "-o", "json"))
    ready = [c for c in nodes["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"
    assert kube.kubectl("get", "--raw", "/readyz") == "ok"
