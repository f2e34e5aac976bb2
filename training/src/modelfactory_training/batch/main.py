"""`modelfactory-batch`: the entrypoint a BatchPrediction's Job pod, RayJob or local process runs.

Exit codes, as `modelfactory-train`'s: 0 the output is committed (manifest written); 2 the input,
the model or the configuration is wrong, retrying cannot help (InvalidConfig, SchemaMismatch,
ProbabilitiesUnavailable, DataNotFound, InvalidData, PredictionFailed, OnnxUnavailable, the
artifact's DigestMismatch, UntrustedType, ..., StorageAccessDenied); 1 anything else
(storage or cluster trouble, a failure to report the result).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from modelfactory_api.batchprediction import BATCHPREDICTION_PLURAL, BatchResult
from modelfactory_api.runtime import ENV_PREFIX, BatchRuntimeConfig, JobIdentity, ReportSpec
from modelfactory_training import logs
from modelfactory_training.errors import EXIT_OK, EXIT_PERMANENT, EXIT_TRANSIENT, TrainingError
from modelfactory_training.report import BatchReporter, LogReporter, make_reporter

log = logging.getLogger("modelfactory_training.batch")

CONFIG_ENV = f"{ENV_PREFIX}BATCH_CONFIG"


class ConfigError(Exception):
    """The configuration cannot be read; no run id may be known yet."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="modelfactory-batch",
        description="Score a dataset with a verified model version on Ray Data.",
    )
    parser.add_argument("--config", help=f"JSON configuration file (default: ${CONFIG_ENV})")
    parser.add_argument("--report-file", help="write the result to this file (report kind file)")
    return parser.parse_args(argv)


def _raw(config_path: str | None, env: Mapping[str, str]) -> object:
    if config_path:
        with open(config_path, encoding="utf-8") as fh:
            return json.load(fh)
    if CONFIG_ENV in env:
        return json.loads(env[CONFIG_ENV])
    raise ConfigError(f"no configuration: pass --config or set {CONFIG_ENV}")


def load_config(
    config_path: str | None, report_file: str | None, env: Mapping[str, str]
) -> BatchRuntimeConfig:
    try:
        config = BatchRuntimeConfig.model_validate(_raw(config_path, env))
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {config_path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"configuration is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        described = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {described}") from exc
    if report_file:
        config = config.model_copy(update={"report": ReportSpec(kind="file", path=report_file)})
    return config


def _run_id_of(config_path: str | None, env: Mapping[str, str]) -> str:
    try:
        raw = _raw(config_path, env)
        return str(raw.get("runId") or "unknown") if isinstance(raw, dict) else "unknown"
    except Exception:
        return "unknown"


def _report(reporter: BatchReporter, result: BatchResult) -> None:
    try:
        reporter.result(result)
    except Exception:
        log.exception("cannot report the result")


def _failure(run_id: str, reason: str, message: str) -> BatchResult:
    return BatchResult(runId=run_id, succeeded=False, reason=reason, message=message)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    logs.configure()
    args = parse_args(argv)
    environ = os.environ if env is None else env
    try:
        config = load_config(args.config, args.report_file, environ)
    except ConfigError as exc:
        log.error("configuration rejected", extra={"reason": "InvalidConfig", "error": str(exc)})
        if args.report_file:
            spec = ReportSpec(kind="file", path=args.report_file)
            _report(
                make_reporter(spec, JobIdentity(), BATCHPREDICTION_PLURAL),
                _failure(_run_id_of(args.config, environ), "InvalidConfig", str(exc)),
            )
        return EXIT_PERMANENT

    reporter: BatchReporter
    try:
        reporter = make_reporter(config.report, config.job, BATCHPREDICTION_PLURAL)
    except Exception as exc:
        log.error("cannot set up reporting", extra={"error": str(exc)})
        reporter = LogReporter()

    from modelfactory_training.batch.run import run_batch

    try:
        result = run_batch(config, reporter)
    except TrainingError as exc:
        log.error("scoring failed", extra={"reason": exc.reason, "error": exc.message})
        _report(reporter, _failure(config.runId, exc.reason, exc.message))
        return exc.exit_code
    except Exception as exc:
        log.exception("scoring failed unexpectedly")
        _report(reporter, _failure(config.runId, "InternalError", f"{type(exc).__name__}: {exc}"))
        return EXIT_TRANSIENT
    try:
        reporter.result(result)
    except Exception:
        # The output is committed: a retry scores again and commits the same rows once.
        log.exception("cannot report the result")
        return EXIT_TRANSIENT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
