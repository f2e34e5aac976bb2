"""hack/cluster.py's print-only commands: what a user pastes into helm and kubectl."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))
import builds
import cluster
import images

pytestmark = pytest.mark.unit


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache with a helm binary in it: the images' names follow its bytes."""
    monkeypatch.setenv("MF_CACHE_DIR", str(tmp_path))
    helm = builds.binaries()["helm"]
    helm.parent.mkdir(parents=True)
    helm.write_bytes(b"a helm binary")
    return tmp_path


def test_helm_values_name_the_images_images_builds(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cluster.main(["helm-values"]) == 0
    out = capsys.readouterr()
    values = yaml.safe_load(out.out)
    wanted = images.names(builds.binaries()["helm"])
    assert values["image"] == {
        **dict(zip(("repository", "tag"), wanted["operator"].rsplit(":", 1), strict=True)),
        "pullPolicy": "Never",
    }
    assert (
        f"{values['trainingImage']['repository']}:{values['trainingImage']['tag']}"
        == (wanted["training"])
    )
    assert (
        f"{values['servingImage']['repository']}:{values['servingImage']['tag']}"
        == (wanted["serving"])
    )
    # Nothing built in this cache: the command says how to build them.
    assert "hack/cluster.py images" in out.err


def test_helm_values_follow_the_helm_binary(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.main(["helm-values"])
    before = capsys.readouterr().out
    builds.binaries()["helm"].write_bytes(b"another helm binary")
    cluster.main(["helm-values"])
    assert capsys.readouterr().out != before


def test_helm_values_as_set_flags(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster.main(["helm-values", "--format", "set", "--pull-policy", "IfNotPresent"]) == 0
    flags = capsys.readouterr().out.split()
    wanted = images.names(builds.binaries()["helm"])
    repository, tag = wanted["operator"].rsplit(":", 1)
    assert flags[:6] == [
        "--set-string",
        f"image.repository={repository}",
        "--set-string",
        f"image.tag={tag}",
        "--set-string",
        "image.pullPolicy=IfNotPresent",
    ]


def test_tags_that_look_like_numbers_stay_strings() -> None:
    values = cluster.chart_values(
        {"operator": "r/operator:1234", "training": "r/training:1e5", "serving": "r/serving:0x10"},
        "Never",
    )
    parsed = yaml.safe_load(cluster.values_yaml(values))
    assert parsed["image"]["tag"] == "1234"
    assert parsed["trainingImage"]["tag"] == "1e5"


def test_helm_values_without_helm_say_to_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MF_CACHE_DIR", str(tmp_path))
    assert cluster.main(["helm-values"]) == 1
    assert "hack/cluster.py build" in capsys.readouterr().err


def test_pinned_namespaces_run_on_the_real_node() -> None:
    """The annotations the cluster path's namespaces carry (tests/cluster_path/conftest.py)."""
    pins = cluster.PIN_ANNOTATIONS
    assert pins["scheduler.alpha.kubernetes.io/node-selector"] == "kubernetes.io/hostname=mf-node"
    assert json.loads(pins["scheduler.alpha.kubernetes.io/defaultTolerations"]) == [
        {"key": "modelfactory.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_pin_namespace_without_a_cluster_says_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MF_CLUSTER_DIR", str(tmp_path / "none"))
    assert cluster.main(["pin-namespace", "ml-team"]) == 1
    assert "hack/cluster.py up" in capsys.readouterr().err


def test_packages_include_python_venv(capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster.main(["packages"]) == 0
    assert "python3-venv" in capsys.readouterr().out.split()
