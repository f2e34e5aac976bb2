import subprocess
import sys
from pathlib import Path

import pytest

from modelfactory_api.runtime import RaySizing, ServingRuntimeConfig, TrainingRuntimeConfig

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_crds_are_generated_from_the_api_types() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen_crds.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr


def test_runtime_configs_round_trip_through_env() -> None:
    cfg = TrainingRuntimeConfig.model_validate(
        {
            "spec": {
                "dataset": {"uri": "sklearn://iris"},
                "model": {"estimator": "sklearn.svm.SVC"},
                "output": {"storageUri": "file:///tmp/x"},
            },
            "runId": "r1",
        }
    )
    assert TrainingRuntimeConfig.from_env(cfg.to_env()) == cfg
    sized = cfg.model_copy(
        update={"ray": RaySizing(numCpus=2, memoryBytes=2**31, objectStoreBytes=2**29)}
    )
    assert TrainingRuntimeConfig.from_env(sized.to_env()) == sized
    env = ServingRuntimeConfig(model_name="m", model_uri="file:///x/1").to_env()
    assert env["MF_MODEL_NAME"] == "m" and "MF_MODEL_DIGEST" not in env
