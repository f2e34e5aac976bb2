"""A ModelService pointed at a hostile artifact: the operator (local launcher) starts the server,
the server refuses the model and stays not ready, and the ModelService's Ready condition says
which type was refused."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kube, eventually, install_crds
from tests.operator.conftest import OperatorProcess, condition
from tests.serving.hostile import HOSTILE, write_hostile

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local_operator(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    install_crds(kube)
    namespace = f"hostile-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    root = tmp_path_factory.mktemp("hostile-operator")
    operator = OperatorProcess(
        kube,
        root,
        ["--namespace", namespace, "--launcher", "local"],
        {"MF_LOCAL_STATE_DIR": str(root / "local")},
    )
    operator.start()
    yield namespace
    operator.stop()
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def modelservice(name: str, uri: str, digest: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": name},
        "spec": {"model": {"uri": f"file://{uri}", "digest": digest}},
    }


def test_every_hostile_artifact_is_refused_and_the_status_says_why(
    kube: Kube, local_operator: str, tmp_path: Path
) -> None:
    namespace = local_operator
    expected = {}
    for label in sorted(HOSTILE):
        art, type_name = write_hostile(tmp_path / label / "1", label)
        kube.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input_text=json.dumps(modelservice(label, art.uri, art.digest)),
        )
        expected[label] = type_name

    def reported(label: str) -> dict[str, Any] | None:
        ms = kube.kubectl_json("get", "msvc", label, "-n", namespace)
        ready = condition(ms, "Ready") or {}
        return ready if "UntrustedType" in (ready.get("message") or "") else None

    for label, type_name in expected.items():
        ready = eventually(
            lambda label=label: reported(label),
            timeout=60,  # type: ignore[misc]
            what=f"{label}: Ready condition naming the refused type",
        )
        assert ready["status"] == "False" and type_name in ready["message"], ready
        ms = kube.kubectl_json("get", "msvc", label, "-n", namespace)
        assert ms["status"]["readyReplicas"] == 0
        assert type_name in (condition(ms, "Available") or {}).get("message", "")
