"""One scoring run, from configuration to committed output and result.

Order matters: load and verify the model, check the output options against it, list and check
the input — all before Ray starts or any row is scored — then score, streaming, writing parts
and binning drift as blocks arrive, and commit.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelfactory_api.batchprediction import BatchProgress, BatchResult
from modelfactory_api.runtime import BatchRuntimeConfig
from modelfactory_api.timestamps import rfc3339
from modelfactory_artifacts.batch_manifest import (
    PREDICTION_COLUMN,
    BatchManifest,
    ManifestInput,
    ManifestModel,
    ManifestOutput,
    ManifestRows,
    OutputFile,
    manifest_uri,
)
from modelfactory_training.batch import inputs as input_files
from modelfactory_training.batch import score
from modelfactory_training.batch.drift import BatchDrift, summary
from modelfactory_training.batch.model import BatchModel, load_model
from modelfactory_training.batch.output import OutputStore
from modelfactory_training.errors import SpecError, TrainingError, TransientError
from modelfactory_training.report import BatchReporter

log = logging.getLogger("modelfactory_training.batch")

PROGRESS_SECONDS = 5.0


def code_versions(runtime: str) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    dists = {
        "modelfactory": "modelfactory-training",
        "ray": "ray",
        "scikit-learn": "scikit-learn",
        "pyarrow": "pyarrow",
    }
    if runtime == "onnx":
        dists["onnxruntime"] = "onnxruntime"
    for key, dist in dists.items():
        try:
            versions[key] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


class Progress:
    """Throttled progress: at most one report every PROGRESS_SECONDS."""

    def __init__(
        self,
        reporter: BatchReporter,
        inputs: input_files.InputSet,
        clock: Callable[[], float] = time.monotonic,
        every: float = PROGRESS_SECONDS,
    ) -> None:
        self.reporter = reporter
        self.inputs = inputs
        self.clock = clock
        self.every = every
        self.started = clock()
        self.last = self.started
        self.rows_read = 0
        self.file = 0  # index of the file being read
        self.rows_in_file = 0

    def bytes_read(self) -> int:
        files = self.inputs.files
        done = sum(f.size for f in files[: self.file])
        if self.file >= len(files):
            return done
        current = files[self.file]
        if current.rows:
            share = min(self.rows_in_file / current.rows, 0.99)
            return done + int(current.size * share)
        return done

    def add(self, rows: int, file_index: int | None) -> None:
        self.rows_read += rows
        if file_index is not None and file_index > self.file:
            self.file = file_index
            self.rows_in_file = 0
        self.rows_in_file += rows

    def snapshot(self, rows_written: int, finished: bool = False) -> BatchProgress:
        total = self.inputs.bytes_total
        done = total if finished else self.bytes_read()
        seconds = max(self.clock() - self.started, 1e-9)
        return BatchProgress(
            rowsRead=self.rows_read,
            rowsWritten=rows_written,
            bytesRead=done,
            bytesTotal=total,
            percent=round(100.0 * done / total, 2) if total else None,
            rowsPerSecond=round(self.rows_read / seconds, 1),
        )

    def maybe_report(self, rows_written: int) -> None:
        now = self.clock()
        if now - self.last < self.every:
            return
        self.last = now
        try:
            self.reporter.progress(self.snapshot(rows_written))
        except Exception as exc:
            log.warning("progress report failed", extra={"error": str(exc)})


def _file_index(table: pa.Table) -> int | None:
    if score.FILE_COLUMN not in table.column_names or not table.num_rows:
        return None
    value = pc.max(table.column(score.FILE_COLUMN)).as_py()
    return None if value is None or value < 0 else int(value)


def _feature_values(table: pa.Table, model: BatchModel, names: list[str]) -> dict[str, Any]:
    kinds = {f.name: f.kind for f in model.features}
    values: dict[str, Any] = {}
    for name in names:
        column = table.column(name)
        if kinds.get(name) == "numeric":
            values[name] = np.asarray(pc.cast(column, pa.float64()).to_numpy(), dtype=np.float64)
        else:
            values[name] = column.to_pandas().to_numpy()
    return values


def _scoring_failure(
    exc: BaseException, inputs: input_files.InputSet, columns: list[str]
) -> TrainingError:
    """A failure out of the pipeline as the run's reason: the model's own (an input it cannot
    predict), a bad CSV value past the schema check's sample, or transient trouble."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TrainingError):
            return current
        current = getattr(current, "cause", None) or current.__cause__
    text = str(exc)
    if inputs.format == "csv" and ("Failed to read CSV" in text or "CSV" in text):
        found = input_files.diagnose_csv(inputs, columns)
        if found is not None:
            return found
    if "PredictionFailed" in text:
        line = next((ln for ln in text.splitlines() if "PredictionFailed" in ln), text)
        return SpecError("PredictionFailed", line.strip()[-2000:])
    last = [ln for ln in text.splitlines() if ln.strip()]
    return TransientError("ScoringFailed", (last[-1] if last else type(exc).__name__)[-2000:])


def run_batch(config: BatchRuntimeConfig, reporter: BatchReporter) -> BatchResult:
    started_at, started = rfc3339(), time.monotonic()
    want_proba = config.output.probabilities
    loaded = load_model(config.modelUri, config.modelDigest, config.runtime)
    model = BatchModel(loaded, config.runtime)
    if want_proba and not model.has_proba:
        raise SpecError(
            "ProbabilitiesUnavailable",
            f"output.probabilities: model {config.modelUri} is a {loaded.metadata.task} "
            f"{loaded.metadata.estimator} and gives no class probabilities; set "
            "output.probabilities to false",
        )
    carry = list(config.input.carry)
    clash = [c for c in carry if c == PREDICTION_COLUMN or c in model.probability_columns]
    if clash:
        raise SpecError(
            "SchemaMismatch",
            f"input.carry: column(s) {', '.join(map(repr, clash))} would clash with the output's",
        )
    inputs = input_files.list_inputs(config.input)
    input_files.check_schema(inputs, model.features, carry)
    log.info(
        "input checked",
        extra={
            "files": len(inputs.files),
            "bytes": inputs.bytes_total,
            "runtime": model.runtime,
            "model": config.modelUri,
        },
    )
    written = [
        *carry,
        *([PREDICTION_COLUMN] if config.output.predictions else []),
        *(model.probability_columns if want_proba else []),
    ]
    profile = loaded.metadata.profile
    drift = BatchDrift(profile) if profile is not None and profile.features else None
    drift_names = [n for n in (drift.features if drift else []) if n in model.feature_names]
    if drift is not None and len(drift_names) != len(drift.features):
        drift = None  # a profile of other features than the model's: nothing to compare

    output = OutputStore(config.output.uri, config.runId, config.output.format)
    output.begin()
    progress = Progress(reporter, inputs)
    read_columns = list(dict.fromkeys([*model.feature_names, *carry]))
    from modelfactory_training.cluster import ray_session

    try:
        with ray_session(config.ray) as cluster:
            ds = score.build(
                inputs,
                model,
                config.modelUri,
                config.modelDigest,
                config.runtime,
                carry,
                want_proba,
                config.batchSize,
                cluster.cpus,
            )
            try:
                for table in score.stream(ds):
                    rows = table.num_rows
                    if not rows:
                        continue
                    progress.add(rows, _file_index(table))
                    if drift is not None:
                        predictions = table.column(PREDICTION_COLUMN).to_numpy(zero_copy_only=False)
                        drift.add(_feature_values(table, model, drift_names), predictions, rows)
                    output.write(table.select(written))
                    progress.maybe_report(output.rows_written)
            except TrainingError:
                raise
            except Exception as exc:
                raise _scoring_failure(exc, inputs, read_columns) from exc
    except BaseException:
        output.abort()
        raise

    rows_read = progress.rows_read
    report = drift.evaluate() if drift is not None else None
    result_drift = summary(report) if report is not None else None

    def manifest_for(folder: str, files: list[OutputFile]) -> BatchManifest:
        finished_at = rfc3339()
        return BatchManifest(
            runId=config.runId,
            model=ManifestModel(
                uri=config.modelUri, digest=loaded.digest, version=config.modelVersion
            ),
            runtime=model.runtime,
            input=ManifestInput(
                uri=config.input.uri,
                format=config.input.format,
                carry=carry,
                files=[f.entry() for f in inputs.files],
            ),
            output=ManifestOutput(
                uri=config.output.uri,
                format=config.output.format,
                folder=folder,
                columns=written,
                files=files,
            ),
            rows=ManifestRows(read=rows_read, written=sum(f.rows for f in files)),
            startedAt=started_at,
            finishedAt=finished_at,
            seconds=round(time.monotonic() - started, 3),
            code=code_versions(model.runtime),
            drift=None if report is None else report.as_dict(),
        )

    manifest = output.commit(manifest_for)
    try:
        reporter.progress(progress.snapshot(manifest.rows.written, finished=True))
    except Exception as exc:
        log.warning("progress report failed", extra={"error": str(exc)})
    log.info(
        "output committed",
        extra={
            "manifest": manifest_uri(config.output.uri),
            "rows": manifest.rows.written,
            "seconds": manifest.seconds,
            "rows_per_second": round(rows_read / max(manifest.seconds, 1e-9), 1),
        },
    )
    return BatchResult(
        runId=config.runId,
        succeeded=True,
        manifest=manifest_uri(config.output.uri),
        rowsRead=rows_read,
        rowsWritten=manifest.rows.written,
        seconds=manifest.seconds,
        drift=result_drift,
    )
