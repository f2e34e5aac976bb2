"""What `modelfactory-train` and `modelfactory-batch` do around their work: read the
configuration (a file or an environment variable), set up the reporter, turn every failure into
a reported result and an exit code.

Exit codes: 0 the work is done and reported; 2 the input is wrong (retrying cannot help); 1
anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from modelfactory_api.runtime import JobIdentity, ReportSpec
from modelfactory_training import logs
from modelfactory_training.errors import EXIT_OK, EXIT_PERMANENT, EXIT_TRANSIENT, TrainingError
from modelfactory_training.report import LogReporter, make_reporter

Config = TypeVar("Config", bound=BaseModel)


class ConfigError(Exception):
    """The configuration cannot be read; no run id may be known yet."""


@dataclass(frozen=True)
class Entrypoint(Generic[Config]):
    prog: str
    description: str
    config_env: str
    config_type: type[Config]
    plural: str  # the resource whose status a kubernetes reporter patches
    result_type: type[BaseModel]  # a result with runId, succeeded, reason, message
    what: str  # "training", "scoring": the log's words
    # Why a result reported after the work is done may be retried safely.
    retry_note: str

    def parse_args(self, argv: Sequence[str] | None) -> argparse.Namespace:
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        parser.add_argument(
            "--config", help=f"JSON configuration file (default: ${self.config_env})"
        )
        parser.add_argument(
            "--report-file", help="write the result to this file (report kind file)"
        )
        return parser.parse_args(argv)

    def _raw(self, config_path: str | None, env: Mapping[str, str]) -> object:
        if config_path:
            with open(config_path, encoding="utf-8") as fh:
                return json.load(fh)
        if self.config_env in env:
            return json.loads(env[self.config_env])
        raise ConfigError(f"no configuration: pass --config or set {self.config_env}")

    def load_config(
        self, config_path: str | None, report_file: str | None, env: Mapping[str, str]
    ) -> Config:
        try:
            config = self.config_type.model_validate(self._raw(config_path, env))
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

    def _run_id_of(self, config_path: str | None, env: Mapping[str, str]) -> str:
        try:
            raw = self._raw(config_path, env)
            return str(raw.get("runId") or "unknown") if isinstance(raw, dict) else "unknown"
        except Exception:
            return "unknown"

    def failure(self, run_id: str, reason: str, message: str) -> BaseModel:
        return self.result_type(runId=run_id, succeeded=False, reason=reason, message=message)

    def main(
        self,
        argv: Sequence[str] | None,
        env: Mapping[str, str],
        work: Callable[[Config, Any], BaseModel],
        log: logging.Logger,
    ) -> int:
        logs.configure()
        args = self.parse_args(argv)
        try:
            config = self.load_config(args.config, args.report_file, env)
        except ConfigError as exc:
            log.error(
                "configuration rejected", extra={"reason": "InvalidConfig", "error": str(exc)}
            )
            if args.report_file:
                spec = ReportSpec(kind="file", path=args.report_file)
                _report(
                    make_reporter(spec, JobIdentity(), self.plural),
                    self.failure(self._run_id_of(args.config, env), "InvalidConfig", str(exc)),
                    log,
                )
            return EXIT_PERMANENT
        run: Any = config  # TrainingRuntimeConfig or BatchRuntimeConfig: runId, report, job
        run_id = str(run.runId)
        try:
            reporter = make_reporter(run.report, run.job, self.plural)
        except Exception as exc:
            log.error("cannot set up reporting", extra={"error": str(exc)})
            reporter = LogReporter()
        try:
            result = work(config, reporter)
        except TrainingError as exc:
            log.error(f"{self.what} failed", extra={"reason": exc.reason, "error": exc.message})
            _report(reporter, self.failure(run_id, exc.reason, exc.message), log)
            return exc.exit_code
        except Exception as exc:
            log.exception(f"{self.what} failed unexpectedly")
            message = f"{type(exc).__name__}: {exc}"
            _report(reporter, self.failure(run_id, "InternalError", message), log)
            return EXIT_TRANSIENT
        try:
            reporter.result(result)
        except Exception:
            log.exception("cannot report the result (%s)", self.retry_note)
            return EXIT_TRANSIENT
        return EXIT_OK


def _report(reporter: Any, result: BaseModel, log: logging.Logger) -> None:
    try:
        reporter.result(result)
    except Exception:
        log.exception("cannot report the result")
