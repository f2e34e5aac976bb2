"""`modelfactory-train`: the entrypoint the Job pod, the RayJob and the local launcher run.

Exit codes: 0 a model version exists for this run; 2 the input is wrong (retrying cannot help);
1 anything else.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from modelfactory_api.runtime import ENV_PREFIX, TrainingRuntimeConfig
from modelfactory_api.trainingjob import TRAININGJOB_PLURAL, TrainingResult
from modelfactory_training.entrypoint import Entrypoint

log = logging.getLogger("modelfactory_training")

ENTRYPOINT = Entrypoint(
    prog="modelfactory-train",
    description="Train a scikit-learn model with a Ray Tune search and write a model version.",
    config_env=f"{ENV_PREFIX}TRAINING_CONFIG",
    config_type=TrainingRuntimeConfig,
    plural=TRAININGJOB_PLURAL,
    result_type=TrainingResult,
    what="training",
    retry_note="the version is written and idempotent by run id: a retry reports it "
    "without training",
)


def _train(config: TrainingRuntimeConfig, reporter: Any) -> TrainingResult:
    from modelfactory_training.train import train

    return train(config, reporter)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    return ENTRYPOINT.main(argv, os.environ if env is None else env, _train, log)


if __name__ == "__main__":
    sys.exit(main())
