"""Shared fixtures: the real local control plane (hack/cluster.py) and per-test namespaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = [sys.executable, str(ROOT / "hack" / "cluster.py")]


@dataclass
class Kube:
    """A running control plane: its kubeconfig and the binaries built for it."""

    kubeconfig: str
    bin_path: str

    @property
    def env(self) -> dict[str, str]:
        return dict(
            os.environ, KUBECONFIG=self.kubeconfig, PATH=f"{self.bin_path}:{os.environ['PATH']}"
        )

    def run(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            list(args), input=input_text, capture_output=True, text=True, env=self.env
        )
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        return self.run("kubectl", *args, input_text=input_text, check=check).stdout

    def kubectl_json(self, *args: str) -> dict:  # type: ignore[type-arg]
        return json.loads(self.kubectl(*args, "-o", "json"))

    def wait_established(self, *crds: str) -> None:
        """`kubectl wait --for=condition=Established` fails at once on a CRD without conditions
        (as right after it is created); the cluster script polls instead."""
        res = subprocess.run(
            [*CLUSTER, "wait-crds", *crds], capture_output=True, text=True, env=self.env
        )
        if res.returncode != 0:
            raise AssertionError(res.stderr)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, check=check)


def cluster_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLUSTER, *args], capture_output=True, text=True)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """Bring the control plane up once per session, or reuse one that already runs."""
    started_here = False
    # MF_NO_NODE=1: the control plane with kwok's fake nodes only (no root, no images); the
    # cluster tests then fail saying so.
    no_node = os.environ.get("MF_NO_NODE") == "1"
    status = cluster_cli("status")
    if status.returncode != 0 or not (no_node or json.loads(status.stdout).get("node")):
        up = cluster_cli("up", *(["--no-node"] if no_node else []))
        if up.returncode != 0:
            pytest.fail(f"the local control plane did not come up:\n{up.stderr}", pytrace=False)
        started_here = True
    state = json.loads(cluster_cli("status").stdout)
    bin_path = cluster_cli("bin-path").stdout.strip()
    yield Kube(kubeconfig=state["kubeconfig"], bin_path=bin_path)
    if started_here and os.environ.get("MF_KEEP_CLUSTER") != "1":
        cluster_cli("down")


def s3server_module() -> Any:
    """hack/s3server.py (standard library only), imported by path."""
    sys.path.insert(0, str(ROOT / "hack"))
    try:
        import s3server
    finally:
        sys.path.pop(0)
    return s3server


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real S3-compatible server (MinIO, hack/s3server.py) on a free port of 127.0.0.1 with a
    fresh bucket, for the session. Built first when the cache lacks it: never skipped, a failed
    build fails the tests that need it."""
    mod = s3server_module()
    try:
        server = mod.start(tmp_path_factory.mktemp("s3server"), bucket="mf-tests")
    except mod.S3ServerError as exc:
        pytest.fail(f"the S3 server (MinIO) did not start:\n{exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The AWS_* variables that reach the S3 server, set in this process (and so in the
    processes it starts); s3fs' cached clients are dropped before and after."""
    import s3fs

    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    env = s3.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    yield env
    s3fs.S3FileSystem.clear_instance_cache()


def install_crds(kube: Kube) -> None:
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kube.wait_established("trainingjobs.modelfactory.dev", "modelservices.modelfactory.dev")


@pytest.fixture(scope="session")
def crds(kube: Kube) -> Kube:
    """The control plane with Model Factory's CRDs installed."""
    install_crds(kube)
    return kube


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    base = request.node.name.lower().replace("_", "-")
    name = "t-" + "".join(c for c in base if c.isalnum() or c == "-")[:40].strip("-")
    name = f"{name}-{uuid.uuid4().hex[:5]}"
    kube.kubectl("create", "namespace", name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if kube.kubectl("get", "serviceaccount", "default", "-n", name, check=False):
            break
        time.sleep(0.3)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def eventually(
    check: Callable[[], Any], timeout: float = 60, interval: float = 0.5, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


LAYERS = ("unit", "integration", "e2e", "cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one layer, so `-m` selections never miss one silently."""
    unmarked = [i.nodeid for i in items if sum(1 for m in LAYERS if i.get_closest_marker(m)) != 1]
    if unmarked:
        raise pytest.UsageError(
            "tests without exactly one of the markers "
            f"{', '.join(LAYERS)}: {', '.join(unmarked[:10])}"
        )
