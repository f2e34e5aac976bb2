"""The object-storage examples are valid resources that give every storage-touching pod the
credentials the way they say (a Secret through envFrom, or a ServiceAccount)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfactory_api.modelservice import ModelServiceSpec
from modelfactory_api.trainingjob import TrainingJobSpec
from tests.conftest import Kube

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


@pytest.mark.unit
@pytest.mark.parametrize("name", ["object-storage-aws.yaml", "object-storage-gcp.yaml"])
def test_examples_validate_and_pass_credentials(name: str) -> None:
    found = docs(name)
    service_accounts = {d["metadata"]["name"]: d for d in found if d["kind"] == "ServiceAccount"}
    secrets = {d["metadata"]["name"] for d in found if d["kind"] == "Secret"}
    workloads = [d for d in found if d["kind"] in ("TrainingJob", "ModelService")]
    assert workloads
    for doc in workloads:
        model = TrainingJobSpec if doc["kind"] == "TrainingJob" else ModelServiceSpec
        spec = model.model_validate(doc["spec"])
        pod = spec.pod
        via_secret = [e.secretRef.name for e in pod.envFrom if e.secretRef]
        assert via_secret or pod.serviceAccountName, doc["metadata"]["name"]
        assert set(via_secret) <= secrets
        if pod.serviceAccountName:
            annotations = service_accounts[pod.serviceAccountName]["metadata"]["annotations"]
            assert {"eks.amazonaws.com/role-arn", "iam.gke.io/gcp-service-account"} & set(
                annotations
            )
        if doc["kind"] == "TrainingJob":
            scheme = "s3://" if "aws" in name else "gs://"
            assert doc["spec"]["dataset"]["uri"].startswith(scheme)
            assert doc["spec"]["output"]["storageUri"].startswith(scheme)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["object-storage-aws.yaml", "object-storage-gcp.yaml"])
def test_examples_pass_the_api_servers_validation(crds: Kube, namespace: str, name: str) -> None:
    """The CRDs' schemas and CEL rules accept them (server-side dry run: nothing is created)."""
    out = crds.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(EXAMPLES / name))
    assert out.count("(server dry run)") == len(docs(name)), out
