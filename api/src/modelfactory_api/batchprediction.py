"""BatchPrediction: score a dataset with a model version, on Ray Data, with lineage."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from modelfactory_api.base import STORAGE_URI, ApiModel, Condition, cel
from modelfactory_api.modelservice import ModelSource
from modelfactory_api.pod import PodSettings
from modelfactory_api.run import RunPhase
from modelfactory_api.trainingjob import ComputeSpec, ScheduleSpec, TriggerStatus
from modelfactory_api.uris import dot_dot_rule, no_dot_dot

BATCHPREDICTION_PLURAL = "batchpredictions"
BATCHPREDICTION_KIND = "BatchPrediction"
MAX_CARRIED_COLUMNS = 64
ColumnName = Annotated[str, Field(min_length=1, max_length=256)]


class BatchInput(ApiModel):
    """The dataset to score."""

    uri: str = Field(
        description="A file, or a prefix ending in '/' whose files of the format (sorted by "
        "name) are read: s3://, gs://, pvc://<claim>/path, or, with the local launcher only, "
        "file:///path or /path.",
        pattern=STORAGE_URI,
        max_length=2048,
        json_schema_extra=dot_dot_rule("spec.input.uri"),
    )
    format: Literal["csv", "parquet"] = Field("csv", description="csv (with a header) or parquet.")
    carry: list[ColumnName] = Field(
        default_factory=list,
        description="Columns copied from each input row to its output row, such as ids.",
        max_length=MAX_CARRIED_COLUMNS,
    )

    _uri = field_validator("uri")(no_dot_dot)


class BatchOutput(ApiModel):
    """Where the scores go."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.predictions || self.probabilities",
                "spec.output: write predictions, probabilities or both",
            ),
        )
    )

    uri: str = Field(
        description="Directory the output is committed to: data/<runId>/part-*.<format> and "
        "manifest.json, written last (a reader trusts only what the manifest lists). A new run "
        "replaces the previous output. Same schemes as the input.",
        pattern=STORAGE_URI,
        max_length=2048,
        json_schema_extra=dot_dot_rule("spec.output.uri"),
    )
    format: Literal["parquet", "csv"] = Field("parquet", description="parquet or csv.")
    predictions: bool = Field(True, description="Write the prediction of each row (prediction).")
    probabilities: bool = Field(
        False,
        description="Classifiers: write each class's probability (proba_<class>).",
    )

    _uri = field_validator("uri")(no_dot_dot)

    @model_validator(mode="after")
    def _writes_something(self) -> BatchOutput:
        if not (self.predictions or self.probabilities):
            raise ValueError("write predictions, probabilities or both")
        return self


class BatchPredictionSpec(ApiModel):
    """Desired state of a BatchPrediction: one scoring run per generation."""

    model: ModelSource = Field(
        description="The model version: a TrainingJob's promoted version (or the version "
        "pinned), or a URI with its digest."
    )
    input: BatchInput = Field(description="The dataset to score.")
    output: BatchOutput = Field(description="Where the scores go.")
    compute: ComputeSpec = Field(
        default_factory=ComputeSpec,  # type: ignore[arg-type]
        description="Compute for the run: workers 0 scores in one pod (a Job), 1 or more in a "
        "KubeRay RayJob with that many worker pods.",
    )
    runtime: Literal["auto", "onnx", "sklearn"] = Field(
        "auto",
        description="What runs the model, as for a ModelService: auto (the version's verified "
        "ONNX model when it has one), onnx or sklearn.",
    )
    batchSize: int = Field(
        65536,
        description="Rows handed to the model at a time (one Ray Data batch): large batches "
        "spread the per-batch cost of the pipeline over many rows.",
        ge=1,
        le=1_000_000,
    )
    schedule: ScheduleSpec | None = Field(
        None,
        description="Score again on a cron schedule, with a CronJob's semantics as a "
        "TrainingJob's retrain.schedule (time zone, starting deadline, Forbid or Replace); each "
        "run scores with the model version current at its start and replaces the previous "
        "output.",
    )
    image: str | None = Field(
        None,
        description="Image of the run; the operator's training image when unset.",
        max_length=512,
    )
    pod: PodSettings = Field(
        default_factory=PodSettings,  # type: ignore[arg-type]
        description="Settings of the run's pods: image pull secrets, scheduling, "
        "ServiceAccount, extra environment.",
    )

    @field_validator("schedule")
    @classmethod
    def _known_time_zone(cls, schedule: ScheduleSpec | None) -> ScheduleSpec | None:
        if schedule is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(schedule.timeZone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"schedule.timeZone: unknown time zone {schedule.timeZone!r}"
                ) from None
        return schedule


class BatchProgress(ApiModel):
    rowsRead: int = Field(0, description="Input rows read so far.")
    rowsWritten: int = Field(0, description="Output rows written so far.")
    bytesRead: int = Field(0, description="Input bytes read so far (whole files).")
    bytesTotal: int | None = Field(None, description="Size of the input, when known.")
    percent: float | None = Field(None, description="Share of the input bytes read.")
    rowsPerSecond: float | None = Field(None, description="Throughput since the run started.")


class BatchModelRef(ApiModel):
    uri: str = Field(description="URI of the model version directory.")
    digest: str = Field(description="sha256 of its metadata.json.")
    version: int | None = Field(None, description="Version number, when from a TrainingJob.")


class BatchResult(ApiModel):
    """What a finished scoring run reports back (written by the batch runtime)."""

    runId: str = Field(description="Identifier of the run that produced this result.")
    succeeded: bool = Field(description="Whether the output was committed.")
    reason: str | None = Field(None, description="CamelCase reason when the run failed.")
    message: str | None = Field(None, description="Human-readable failure message.")
    manifest: str | None = Field(None, description="URI of the committed output's manifest.")
    rowsRead: int = Field(0, description="Input rows read.")
    rowsWritten: int = Field(0, description="Output rows written.")
    seconds: float | None = Field(None, description="Time from start to commit.")
    drift: dict[str, Any] | None = Field(
        None, description="Drift of the input against the model's reference profile."
    )


class BatchPredictionStatus(ApiModel):
    phase: RunPhase | None = Field(None, description="Pending, Running, Succeeded or Failed.")
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations.")
    observedGeneration: int | None = Field(None, description="Generation last acted upon.")
    runId: str | None = Field(None, description="Identifier of the current run.")
    runGeneration: int | None = Field(None, description="Generation the current run started from.")
    runImage: str | None = Field(None, description="Image of the current run.")
    attempts: int = Field(0, description="Runs started for the current generation.")
    model: BatchModelRef | None = Field(None, description="The model version scored with.")
    startTime: str | None = Field(None, description="When the current run started.")
    completionTime: str | None = Field(None, description="When the current run ended.")
    progress: BatchProgress | None = Field(None, description="Progress of the current run.")
    manifest: str | None = Field(None, description="URI of the committed output's manifest.")
    drifted: bool | None = Field(
        None, description="Whether the input drifted from the model's reference profile."
    )
    result: BatchResult | None = Field(
        None, description="Raw report of the latest run, written by the batch runtime."
    )
    lastTrigger: TriggerStatus | None = Field(
        None, description="The last scheduled time that started a run."
    )
    lastScheduleTime: str | None = Field(
        None, description="The last scheduled time acted upon (run or skipped)."
    )
    releaseRevision: int | None = Field(None, description="Helm release revision.")
    appliedHash: str | None = Field(None, description="Hash of the run configuration applied.")
