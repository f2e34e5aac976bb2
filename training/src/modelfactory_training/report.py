"""Where a run's progress and result go: a file, the resource's status, or only the log.

A training run reports to its TrainingJob, a batch scoring run to its BatchPrediction
(`plural`); the progress and result models are each resource's own.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from modelfactory_api.runtime import JobIdentity, ReportSpec
from modelfactory_api.trainingjob import (
    GROUP,
    TRAININGJOB_PLURAL,
    VERSION,
    TrainingProgress,
    TrainingResult,
)

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"


class Reporter(Protocol):
    def progress(self, progress: TrainingProgress) -> None: ...

    def result(self, result: TrainingResult) -> None: ...


class BatchReporter(Protocol):
    """A reporter as a batch scoring run uses it (every reporter here is one)."""

    def progress(self, progress: BaseModel) -> None: ...

    def result(self, result: BaseModel) -> None: ...


def result_json(result: BaseModel) -> dict[str, Any]:
    return result.model_dump(mode="json", by_alias=True)


def merge_patch_to(old: Any, new: Any) -> Any:
    """A JSON merge patch (RFC 7386) that turns `old` into exactly `new`.

    Keys that `old` has and `new` lacks are set to null, so a previous run's metrics or params
    do not linger in the status.
    """
    if not isinstance(new, dict):
        return new
    if not isinstance(old, dict):
        return {k: merge_patch_to(None, v) for k, v in new.items()}
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        patch[key] = merge_patch_to(old.get(key), value) if key in old else value
    return patch


class LogReporter:
    def progress(self, progress: BaseModel) -> None:
        log.info("progress", extra={"progress": progress.model_dump(mode="json")})

    def result(self, result: BaseModel) -> None:
        log.info("result", extra={"result": result_json(result)})


class FileReporter(LogReporter):
    """Writes the result as JSON, atomically: a reader sees the old file or the whole new one."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def result(self, result: BaseModel) -> None:
        super().result(result)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(result_json(result), fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _kubernetes_api() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


class KubernetesReporter(LogReporter):
    """Merge-patches the status subresource of the run's own resource: the TrainingJob, or
    the custom resource of kind `plural` (batchpredictions) named in `job`."""

    def __init__(
        self,
        job: JobIdentity,
        api_factory: Callable[[], Any] = _kubernetes_api,
        attempts: int = 5,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 10.0,
        plural: str = TRAININGJOB_PLURAL,
    ) -> None:
        if not job.namespace or not job.name:
            raise ValueError("report kind kubernetes needs job.namespace and job.name")
        self.job = job
        self._api_factory = api_factory
        self._api: Any = None
        self.attempts = attempts
        self.backoff = backoff
        self.sleep = sleep
        self.timeout = timeout
        self.plural = plural

    def __getstate__(self) -> dict[str, Any]:
        # Ray Tune pickles its callbacks, and this reporter with them: a live API connection does
        # not pickle, so a copy connects again when it first reports.
        return {**self.__dict__, "_api": None}

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = self._api_factory()
        return self._api

    def _patch(self, body: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.job.namespace,
            self.plural,
            self.job.name,
            body,
            _content_type=MERGE_PATCH,
            # Progress is sent from Tune's event loop: a hung API server must not stall it.
            _request_timeout=self.timeout,
        )

    def _current_result(self) -> Any:
        try:
            obj = self.api.get_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self.job.namespace,
                self.plural,
                self.job.name,
                _request_timeout=self.timeout,
            )
        except Exception as exc:
            log.warning("cannot read current status", extra={"error": str(exc)})
            return None
        return ((obj or {}).get("status") or {}).get("result")

    def progress(self, progress: BaseModel) -> None:
        super().progress(progress)
        try:
            self._patch({"status": {"progress": progress.model_dump(mode="json")}})
        except Exception as exc:
            # Progress is best effort; the final result is what the operator acts on.
            log.warning("progress report failed", extra={"error": str(exc)})

    def result(self, result: BaseModel) -> None:
        super().result(result)
        new = result_json(result)
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                body = {"status": {"result": merge_patch_to(self._current_result(), new)}}
                self._patch(body)
                return
            except Exception as exc:
                if attempt == self.attempts:
                    raise
                log.warning(
                    "result report failed, retrying",
                    extra={"attempt": attempt, "error": str(exc), "retry_in": delay},
                )
                self.sleep(delay)
                delay *= 2


def make_reporter(
    spec: ReportSpec, job: JobIdentity, plural: str = TRAININGJOB_PLURAL
) -> LogReporter:
    """The reporter `spec` asks for; `plural` is the kind of resource whose status a
    kubernetes reporter patches."""
    if spec.kind == "file":
        if not spec.path:
            raise ValueError("report kind file needs a path")
        return FileReporter(spec.path)
    if spec.kind == "kubernetes":
        return KubernetesReporter(job, plural=plural)
    return LogReporter()
