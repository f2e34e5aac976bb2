"""hack/s3server.py: a real MinIO that speaks S3 to s3fs as the images do, conditional writes
included, and a CLI that starts, reports and stops it without leaving a process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import s3fs

from tests.conftest import ROOT, s3server_module

pytestmark = pytest.mark.integration
SCRIPT = [sys.executable, str(ROOT / "hack" / "s3server.py")]


def test_s3fs_reaches_it_through_aws_endpoint_url(s3: Any, s3_env: dict[str, str]) -> None:
    # No endpoint_url argument: botocore takes AWS_ENDPOINT_URL from the environment, as pods
    # given it through spec.pod.env do.
    fs = s3fs.S3FileSystem()
    fs.pipe_file(f"{s3.bucket}/hack/hello.txt", b"hello")
    assert fs.cat_file(f"{s3.bucket}/hack/hello.txt") == b"hello"
    assert s3_env["AWS_ENDPOINT_URL"] == s3.endpoint


def test_exclusive_create_is_a_conditional_write(s3: Any, s3_env: dict[str, str]) -> None:
    """fsspec mode "xb" is PutObject with If-None-Match: *, which MinIO honours: the second
    create fails and the first one's content stays."""
    fs = s3fs.S3FileSystem()
    path = f"{s3.bucket}/hack/claim/_CLAIM"
    with fs.open(path, "xb") as fh:
        fh.write(b"first")
    with pytest.raises(OSError) as err, fs.open(path, "xb") as fh:
        fh.write(b"second")
    response = getattr(err.value.__cause__, "response", {})
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert fs.cat_file(path) == b"first"


def test_wrong_credentials_are_refused(
    s3: Any, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    s3fs.S3FileSystem.clear_instance_cache()
    with pytest.raises(PermissionError):
        s3fs.S3FileSystem().ls(s3.bucket)


def test_cli_up_status_down_leaves_nothing(tmp_path: Path) -> None:
    mod = s3server_module()
    env = dict(os.environ, MF_S3_DIR=str(tmp_path / "state"))
    port = str(mod.free_port())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SCRIPT, *args], env=env, capture_output=True, text=True, timeout=120
        )

    assert cli("status").returncode == 1
    try:
        up = cli("up", "--port", port)
        assert up.returncode == 0, up.stderr
        status = cli("status")
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["listen"] == "0.0.0.0" and info["port"] == int(port)
        assert info["endpoint"] == f"http://127.0.0.1:{port}"
        assert info["node_endpoint"] == f"http://{mod.NODE_ADDRESS}:{port}"
        assert oct((tmp_path / "state" / "s3server.json").stat().st_mode & 0o777) == "0o600"
        assert mod.live(info["endpoint"])
        lines = cli("env").stdout
        assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in lines
        # `up` again reuses the running one.
        again = cli("up", "--port", port)
        assert again.returncode == 0 and "already running" in again.stderr
        assert f"pid {info['pid']}" in "\n".join(mod.leftovers())
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    assert not mod.pid_alive(info["pid"])
    assert f"pid {info['pid']}" not in "\n".join(mod.leftovers())
    assert not (tmp_path / "state").exists()


def test_cluster_down_stops_its_clusters_s3_server(tmp_path: Path) -> None:
    """`hack/cluster.py down` stops the S3 server kept beside that cluster's state
    (MF_CLUSTER_DIR), so CI's tear-down leaves no MinIO running."""
    mod = s3server_module()
    env = {k: v for k, v in os.environ.items() if k != "MF_S3_DIR"}
    env["MF_CLUSTER_DIR"] = str(tmp_path / "cluster")
    up = subprocess.run(
        [*SCRIPT, "up", "--port", str(mod.free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr
    info = json.loads((tmp_path / "cluster" / "s3server" / "s3server.json").read_text())
    try:
        down = subprocess.run(
            [sys.executable, str(ROOT / "hack" / "cluster.py"), "down"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert down.returncode == 0, down.stderr
        assert "stopped the S3 server" in down.stderr
        assert not mod.pid_alive(info["pid"])
    finally:
        mod.stop_pid(info["pid"])
