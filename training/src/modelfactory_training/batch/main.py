"""`modelfactory-batch`: the entrypoint a BatchPrediction's Job pod, RayJob or local process runs.

Exit codes, as `modelfactory-train`'s: 0 the output is committed (manifest written); 2 the input,
the model or the configuration is wrong, retrying cannot help (InvalidConfig, SchemaMismatch,
ProbabilitiesUnavailable, DataNotFound, InvalidData, PredictionFailed, OnnxUnavailable, the
artifact's DigestMismatch, UntrustedType, ..., StorageAccessDenied); 1 anything else
(storage or cluster trouble, a failure to report the result).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from modelfactory_api.batchprediction import BATCHPREDICTION_PLURAL, BatchResult
from modelfactory_api.runtime import ENV_PREFIX, BatchRuntimeConfig
from modelfactory_training.entrypoint import Entrypoint

log = logging.getLogger("modelfactory_training.batch")

ENTRYPOINT = Entrypoint(
    prog="modelfactory-batch",
    description="Score a dataset with a verified model version on Ray Data.",
    config_env=f"{ENV_PREFIX}BATCH_CONFIG",
    config_type=BatchRuntimeConfig,
    plural=BATCHPREDICTION_PLURAL,
    result_type=BatchResult,
    what="scoring",
    retry_note="the output is committed: a retry scores again and commits the same rows once",
)


def _score(config: BatchRuntimeConfig, reporter: Any) -> BatchResult:
    from modelfactory_training.batch.run import run_batch

    return run_batch(config, reporter)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    return ENTRYPOINT.main(argv, os.environ if env is None else env, _score, log)


if __name__ == "__main__":
    sys.exit(main())
