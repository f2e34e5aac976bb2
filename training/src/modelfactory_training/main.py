"""`modelfactory-train`: the entrypoint the Job pod, the RayJob and the local launcher run.

Exit codes: 0 a model version exists for this run; 2 the input is wrong (retrying cannot help);
1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from modelfactory_api.runtime import ENV_PREFIX, JobIdentity, ReportSpec, TrainingRuntimeConfig
from modelfactory_api.trainingjob import TrainingResult
from modelfactory_training import logs
from modelfactory_training.errors import EXIT_OK, EXIT_PERMANENT, EXIT_TRANSIENT, TrainingError
from modelfactory_training.report import LogReporter, Reporter, make_reporter

log = logging.getLogger("modelfactory_training")

CONFIG_ENV = f"{ENV_PREFIX}TRAINING_CONFIG"


class ConfigError(Exception):
    """The configuration cannot be read; no run id may be known yet."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="modelfactory-train",
        description="Train a scikit-learn model with a Ray Tune search and write a model version.",
    )
    parser.add_argument("--config", help=f"JSON configuration file (default: ${CONFIG_ENV})")
    parser.add_argument("--report-file", help="write the result to this file (report kind file)")
    return parser.parse_args(argv)


def load_config(
    config_path: str | None, report_file: str | None, env: Mapping[str, str]
) -> TrainingRuntimeConfig:
    try:
        if config_path:
            with open(config_path, encoding="utf-8") as fh:
                raw = json.load(fh)
        elif CONFIG_ENV in env:
            raw = json.loads(env[CONFIG_ENV])
        else:
            raise ConfigError(f"no configuration: pass --config or set {CONFIG_ENV}")
        config = TrainingRuntimeConfig.model_validate(raw)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {config_path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"configuration is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_describe(exc)}") from exc
    if report_file:
        config = config.model_copy(update={"report": ReportSpec(kind="file", path=report_file)})
    return config


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )


def _run_id_of(config_path: str | None, env: Mapping[str, str]) -> str:
    """The run id from a configuration that did not validate, if it has one."""
    try:
        if config_path:
            with open(config_path, encoding="utf-8") as fh:
                raw = json.load(fh)
        else:
            raw = json.loads(env.get(CONFIG_ENV, "{}"))
        return str(raw.get("runId") or "unknown")
    except Exception:
        return "unknown"


def _report(reporter: Reporter, result: TrainingResult) -> None:
    try:
        reporter.result(result)
    except Exception:
        log.exception("cannot report the result")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    logs.configure()
    args = parse_args(argv)
    environ = os.environ if env is None else env
    try:
        config = load_config(args.config, args.report_file, environ)
    except ConfigError as exc:
        log.error("configuration rejected", extra={"reason": "InvalidConfig", "error": str(exc)})
        if args.report_file:
            failed = TrainingResult(
                runId=_run_id_of(args.config, environ),
                succeeded=False,
                reason="InvalidConfig",
                message=str(exc),
            )
            _report(
                make_reporter(ReportSpec(kind="file", path=args.report_file), JobIdentity()), failed
            )
        return EXIT_PERMANENT

    try:
        reporter = make_reporter(config.report, config.job)
    except Exception as exc:
        log.error("cannot set up reporting", extra={"error": str(exc)})
        reporter = LogReporter()

    from modelfactory_training.train import train

    try:
        result = train(config, reporter)
    except TrainingError as exc:
        log.error("training failed", extra={"reason": exc.reason, "error": exc.message})
        _report(reporter, _failure(config.runId, exc.reason, exc.message))
        return exc.exit_code
    except Exception as exc:
        log.exception("training failed unexpectedly")
        _report(reporter, _failure(config.runId, "InternalError", f"{type(exc).__name__}: {exc}"))
        return EXIT_TRANSIENT
    try:
        reporter.result(result)
    except Exception:
        # The version is written and idempotent by run id: a retry reports it without training.
        log.exception("cannot report the result")
        return EXIT_TRANSIENT
    return EXIT_OK


def _failure(run_id: str, reason: str, message: str) -> TrainingResult:
    return TrainingResult(runId=run_id, succeeded=False, reason=reason, message=message)


if __name__ == "__main__":
    sys.exit(main())
