from pathlib import Path
from typing import Any

import pytest

from modelfactory_operator.handlers.reconciler import Reconciler
from modelfactory_operator.logic import modelservice as ms
from modelfactory_operator.logic import storage, validate
from modelfactory_operator.logic import trainingjob as tj
from modelfactory_operator.logic.plans import RunObservation
from modelfactory_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

BODY: dict[str, Any] = {
    "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1},
    "spec": {
        "dataset": {"uri": "pvc://data/iris.csv", "target": "species"},
        "model": {"estimator": "sklearn.svm.SVC"},
        "output": {"storageUri": "pvc://models/iris"},
    },
}


def test_uris_round_trip_between_status_and_workload() -> None:
    pod = storage.to_workload("pvc://models/iris/3", "/mnt/pvc")
    assert pod == "file:///mnt/pvc/models/iris/3"
    assert storage.from_workload(pod, "/mnt/pvc") == "pvc://models/iris/3"
    assert storage.to_workload("s3://b/k", "/mnt/pvc") == "s3://b/k"
    assert storage.from_workload("file:///elsewhere/1", "/mnt/pvc") == "file:///elsewhere/1"


def test_training_mounts_every_claim_and_reads_files() -> None:
    spec = validate.trainingjob_spec(BODY["spec"])
    plan = tj.render(BODY, spec, "img:1")
    assert plan.runtime.spec.dataset.uri == "file:///mnt/pvc/data/iris.csv"
    assert plan.runtime.spec.output.storageUri == "file:///mnt/pvc/models/iris"
    assert [v["persistentVolumeClaim"]["claimName"] for v in plan.chart_values["volumes"]] == [
        "data",
        "models",
    ]
    assert plan.chart_values["volumeMounts"][1]["mountPath"] == "/mnt/pvc/models"
    # The status keeps the portable form.
    result = {
        "runId": plan.run_id,
        "succeeded": True,
        "metric": "accuracy",
        "metrics": {"test_accuracy": 1.0},
        "model": {
            "version": 1,
            "uri": "file:///mnt/pvc/models/iris/1",
            "digest": "sha256:" + "a" * 64,
        },
    }
    d = tj.decide(1, {"result": result}, plan, None, RunObservation("succeeded"), True, "t")
    assert d.status["model"]["uri"] == "pvc://models/iris/1"


def test_serving_mounts_the_models_claim_read_only() -> None:
    spec = validate.modelservice_spec({"model": {"trainingJob": "iris"}})
    model = ms.ResolvedModel(uri="pvc://models/iris/1", digest="sha256:" + "a" * 64, version=1)
    plan = ms.render({**BODY, "kind": "ModelService"}, spec, model, "img:1")
    assert plan.runtime.model_uri == "file:///mnt/pvc/models/iris/1"
    assert plan.chart_values["volumes"] == [
        {"name": "pvc-0", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}
    ]


def test_the_local_launcher_maps_claims_to_directories(tmp_path: Path) -> None:
    """The examples' pvc:// storage works under the local launcher: each claim is a directory
    <local state dir>/pvc/<claim>, and the status keeps the pvc:// form."""

    class Local:
        name = "local"

    settings = OperatorSettings(launcher="local", local_state_dir=tmp_path)
    root = Reconciler(settings, Local()).mount_root  # type: ignore[arg-type]
    assert root == str(tmp_path / "pvc")
    spec = validate.trainingjob_spec(BODY["spec"], launcher="local")
    plan = tj.render(BODY, spec, "img:1", mount_root=root)
    assert plan.runtime.spec.output.storageUri == f"file://{tmp_path}/pvc/models/iris"
    assert storage.from_workload(f"file://{tmp_path}/pvc/models/iris/1", root) == (
        "pvc://models/iris/1"
    )


@pytest.mark.parametrize(
    "uri", ["pvc://c/../../etc", "pvc://c/a/%2E%2e/b", "/data/..", "s3://b/../x"]
)
def test_workload_uris_never_step_out(uri: str) -> None:
    with pytest.raises(ValueError, match=r"spec\.output\.storageUri must not contain '\.\.'"):
        storage.to_workload(uri, "/mnt/pvc", "spec.output.storageUri")


def test_dots_inside_names_are_fine() -> None:
    assert (
        storage.to_workload("pvc://c/a..b/v.1/..x", "/mnt/pvc") == "file:///mnt/pvc/c/a..b/v.1/..x"
    )


@pytest.mark.parametrize(
    "model",
    [
        {"trainingJob": "iris"},
        {"trainingJob": "iris", "version": 2},
    ],
)
def test_a_status_uri_with_dot_dot_is_not_served(model: dict[str, Any]) -> None:
    from modelfactory_api.modelservice import ModelServiceSpec

    ref = {"version": 2, "uri": "pvc://models/iris/../../etc", "digest": "sha256:" + "a" * 64}
    trainingjob = {"status": {"model": ref, "history": [ref]}}
    got = ms.resolve_model(ModelServiceSpec.model_validate({"model": model}), trainingjob)
    assert isinstance(got, ms.Unresolved) and got.reason == "InvalidModelUri"
    assert "status." in got.message and "'..'" in got.message
