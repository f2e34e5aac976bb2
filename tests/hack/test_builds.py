"""hack/builds.py: builds run side by side, a failure stops what has not started, each build's
seconds are reported, and every binary has a build."""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))
import builds

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit


def sleeper(
    name: str,
    seconds: float,
    log: list[str],
    running: list[int],
    peak: list[int],
    lock: threading.Lock,
) -> builds.Build:
    def make(env: dict[str, str]) -> None:
        with lock:
            log.append(name)
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(seconds)
        with lock:
            running[0] -= 1

    return builds.Build(name, lambda: False, make)


def test_builds_run_side_by_side_up_to_the_pool_size_in_their_order() -> None:
    log: list[str] = []
    running, peak, lock = [0], [0], threading.Lock()
    todo = [sleeper(f"b{i}", 0.2, log, running, peak, lock) for i in range(6)]
    started = time.monotonic()
    took = builds.run_builds(todo, {}, jobs=3)
    assert time.monotonic() - started < 1.0  # two rounds of 0.2 s, not six
    assert peak[0] == 3
    assert log[:3] == ["b0", "b1", "b2"]
    assert set(took) == {f"b{i}" for i in range(6)}
    assert all(t >= 0.2 for t in took.values())


def test_a_failure_starts_nothing_more_and_names_every_failed_build() -> None:
    log: list[str] = []
    running, peak, lock = [0], [0], threading.Lock()

    def broken(env: dict[str, str]) -> None:
        raise builds.BuildError("building etcd failed (exit 1)")

    todo = [
        builds.Build("etcd", lambda: False, broken),
        *[sleeper(f"b{i}", 0.01, log, running, peak, lock) for i in range(3)],
    ]
    with pytest.raises(builds.BuildError, match="building etcd failed"):
        builds.run_builds(todo, {}, jobs=1)
    assert log == []


def test_an_unexpected_error_names_its_build() -> None:
    def broken(env: dict[str, str]) -> None:
        raise FileNotFoundError("go.mod")

    with pytest.raises(builds.BuildError, match="building kwok failed: FileNotFoundError"):
        builds.run_builds([builds.Build("kwok", lambda: False, broken)], {}, jobs=2)


def test_timings_list_each_build_longest_first_and_the_total() -> None:
    table = builds.timings({"kwok": 30.0, "kubernetes": 500.0}, 520.0)
    lines = table.splitlines()
    assert "kubernetes" in lines[0] and "500.0s" in lines[0]
    assert "kwok" in lines[1] and "total" in lines[2] and "520.0s" in lines[2]


def test_kubernetes_starts_first_and_every_binary_has_a_build() -> None:
    planned = builds.planned_builds()
    names = [b.name for b in planned]
    assert names[0] == "kubernetes"
    assert len(names) == len(set(names))
    covered = {
        "etcd",
        "kwok",
        "helm",
        "coredns",
        "metrics-server",
        "local-path-provisioner",
        "crictl",
        "kubernetes",
        "minio",
        "gateway-api-crds",
    }
    assert covered | {"kuberay"} == set(names)


@pytest.mark.parametrize(("value", "jobs"), [("", 3), ("1", 1), ("8", 8), ("0", 1), ("x", 3)])
def test_the_pool_size_comes_from_mf_build_jobs(
    monkeypatch: pytest.MonkeyPatch, value: str, jobs: int
) -> None:
    monkeypatch.setenv("MF_BUILD_JOBS", value)
    assert builds.build_jobs() == jobs


def test_the_dockerfile_builds_the_same_helm_as_the_cluster() -> None:
    """The images take the helm `build` made; a Docker build compiles the same version."""
    found = re.search(r"ARG HELM_VERSION=(\S+)", (ROOT / "Dockerfile").read_text())
    assert found and found.group(1) == builds.HELM_VERSION
