"""TrainingJob: what to train, how to search, where the artifact goes.

These models are the one source of truth for the TrainingJob schema: the CRD in `crds/` is
generated from them (`hack/gen_crds.py`) and the training runtime validates its input with them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from modelfactory_api.base import (
    CPU_QUANTITY,
    MEMORY_QUANTITY,
    STORAGE_URI,
    ApiModel,
    Condition,
    cel,
)
from modelfactory_api.pod import PodSettings
from modelfactory_api.run import RunPhase
from modelfactory_api.uris import dot_dot_rule, no_dot_dot

GROUP = "modelfactory.dev"
VERSION = "v1alpha1"
TRAININGJOB_PLURAL = "trainingjobs"
TRAININGJOB_KIND = "TrainingJob"

# Bundled scikit-learn datasets that need no download.
TOY_DATASETS = ("iris", "wine", "breast_cancer", "diabetes", "digits")


class DatasetSpec(ApiModel):
    """Where the training data is and how to read it."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.uri.startsWith('sklearn://') || has(self.target)",
                "spec.dataset.target is required unless dataset.uri is a sklearn:// dataset",
            ),
            (
                "!self.uri.startsWith('sklearn://') || self.uri.substring(10) in "
                + str(list(TOY_DATASETS)).replace("'", '"'),
                "spec.dataset.uri: unknown bundled dataset; use one of sklearn://"
                + ", sklearn://".join(TOY_DATASETS),
            ),
        )
    )

    uri: str = Field(
        description=(
            "Where the data is: s3://bucket/key.parquet, gs://..., a file on a "
            "PersistentVolumeClaim (pvc://<claim>/path/data.csv, mounted for you), a bundled "
            "scikit-learn dataset (sklearn://iris, wine, breast_cancer, diabetes, digits), or, "
            "with the local launcher only, a local file (file:///path/data.csv or /path/data.csv)."
        ),
        min_length=1,
        max_length=2048,
        pattern=r"^(sklearn://[a-z_]+|file://.+|s3://.+|gs://.+|pvc://[a-z0-9][-a-z0-9.]*/.+|/.+)$",
        json_schema_extra=dot_dot_rule("spec.dataset.uri"),
    )
    format: Literal["auto", "csv", "parquet"] = Field(
        "auto", description="File format; auto picks it from the file extension."
    )
    target: str | None = Field(
        None,
        description="Name of the column to predict. Required except for sklearn:// datasets.",
        max_length=256,
    )
    features: list[str] | None = Field(
        None,
        description="Columns to train on; all columns but the target when unset.",
        max_length=10000,
    )
    testSize: float = Field(
        0.2, description="Fraction of rows held out to score the best model.", gt=0.0, lt=1.0
    )
    seed: int = Field(0, description="Seed for the train/test split and random search.", ge=0)

    _uri = field_validator("uri")(no_dot_dot)


class ModelSpec(ApiModel):
    """Which scikit-learn estimator to train."""

    estimator: str = Field(
        description=(
            "Import path of a scikit-learn estimator, e.g. sklearn.ensemble.RandomForestClassifier."
        ),
        pattern=r"^sklearn(\.[A-Za-z_][A-Za-z0-9_]*)+$",
        max_length=256,
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Fixed constructor arguments of the estimator (searched ones go in tuning).",
    )
    preprocessing: bool = Field(
        True,
        description=(
            "Put automatic preprocessing in front of the estimator: impute missing values, "
            "scale numeric columns, one-hot encode categorical ones."
        ),
    )
    maxCategories: int = Field(
        20,
        description=(
            "With preprocessing: one-hot columns per categorical feature at most. Its most "
            "frequent categories get a column each and the rarer ones (and unseen ones) share "
            "the last, so a column with thousands of levels stays a few columns wide."
        ),
        ge=2,
        le=1000,
    )


class SearchDimension(ApiModel):
    """One hyper-parameter's range: either a list of values or a numeric interval."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            # `values` holds any JSON, which CEL cannot type; the operator checks values vs range.
            ("has(self.low) == has(self.high)", "a range needs both low and high"),
            (
                "!has(self.low) || !has(self.high) || self.low <= self.high",
                "low must not exceed high",
            ),
            ("!self.log || !has(self.low) || self.low > 0.0", "log ranges need low > 0"),
        )
    )

    values: list[Any] | None = Field(
        None, description="Candidate values (grid and random search).", min_length=1
    )
    low: float | None = Field(None, description="Lower bound of a numeric range (random search).")
    high: float | None = Field(None, description="Upper bound of a numeric range (random search).")
    type: Literal["float", "int"] = Field("float", description="Type of a numeric range.")
    log: bool = Field(False, description="Sample a numeric range on a log scale.")

    @model_validator(mode="after")
    def _values_or_range(self) -> SearchDimension:
        if (self.values is None) == (self.low is None or self.high is None):
            raise ValueError("set either values or both low and high")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError("low must not exceed high")
        if self.log and self.low is not None and self.low <= 0:
            raise ValueError("log ranges need low > 0")
        return self


# Every scikit-learn scorer is greater-is-better (error scorers are negated:
# neg_mean_squared_error), so the scorer fixes the direction and the search always maximizes.
DIRECTION_REASON = (
    "scikit-learn scorers are all greater-is-better (errors are negated, e.g. "
    "neg_mean_squared_error), so the search maximizes the metric; remove direction or set it to "
    "maximize"
)


class TuningSpec(ApiModel):
    """How to search hyper-parameters."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.direction) || self.direction == 'maximize'",
                f"spec.tuning.direction: {DIRECTION_REASON}",
            ),
        )
    )

    metric: str | None = Field(
        None,
        description=(
            "scikit-learn scorer name (accuracy, f1_macro, roc_auc, r2, "
            "neg_mean_squared_error, ...); accuracy for classifiers and r2 for regressors when "
            "unset."
        ),
        max_length=64,
    )
    direction: Literal["maximize", "minimize"] = Field(
        "maximize",
        description=(
            "Derived from the metric: every scikit-learn scorer is greater-is-better (errors "
            "are negated, e.g. neg_mean_squared_error), so the search maximizes; minimize is "
            "rejected."
        ),
    )
    algorithm: Literal["grid", "random"] = Field("random", description="Search algorithm.")
    trials: int = Field(
        10,
        description="Number of configurations to try (random search; grid tries every one).",
        ge=1,
        le=10000,
    )
    parallelTrials: int | None = Field(
        None,
        description="Trials run at once; all available CPUs when unset.",
        ge=1,
        le=1000,
    )
    cvFolds: int = Field(5, description="Cross-validation folds per trial.", ge=2, le=20)
    searchSpace: dict[str, SearchDimension] = Field(
        default_factory=dict,
        description="Hyper-parameters to search, by estimator parameter name.",
    )
    timeBudgetSeconds: int | None = Field(
        None,
        description=(
            "Wall-clock budget of the search, in seconds: when it is spent no further trial "
            "starts, running ones stop, and the best configuration finished so far is refitted "
            "and written (the result counts the trials that did not run). Keep it well below "
            "activeDeadlineSeconds: reading the data and the refit take time too."
        ),
        ge=1,
        le=30 * 24 * 3600,
    )

    @field_validator("direction")
    @classmethod
    def _greater_is_better(cls, direction: str) -> str:
        if direction != "maximize":
            raise ValueError(DIRECTION_REASON)
        return direction


class ComputeSpec(ApiModel):
    """How much compute the training gets."""

    workers: int = Field(
        0,
        description=(
            "Ray worker pods beside the head. 0 runs everything in one pod (a Job); 1 or more "
            "runs a KubeRay RayJob."
        ),
        ge=0,
        le=100,
    )
    cpu: str = Field(
        "1",
        description=(
            "CPU request per pod (Kubernetes quantity); Ray counts it rounded up to whole CPUs."
        ),
        pattern=CPU_QUANTITY,
        max_length=16,
    )
    memory: str = Field(
        "2Gi",
        description=(
            "Memory request and limit per pod (Kubernetes quantity); Ray's object store takes 30% "
            "of it."
        ),
        pattern=MEMORY_QUANTITY,
        max_length=16,
    )


class OutputSpec(ApiModel):
    """Where model versions are written."""

    storageUri: str = Field(
        description=(
            "Base URI of the model store; version N goes to <storageUri>/<N>/. s3://, gs://, "
            "pvc://<claim>/path (shared by training and serving pods), or, with the local "
            "launcher only, file:///path or /path (a pod's own filesystem is lost when it ends)."
        ),
        pattern=STORAGE_URI,
        max_length=2048,
        json_schema_extra=dot_dot_rule("spec.output.storageUri"),
    )

    _storage_uri = field_validator("storageUri")(no_dot_dot)


class TrainingSpec(ApiModel):
    """The part of a TrainingJob that the training runtime reads."""

    dataset: DatasetSpec = Field(description="Training data.")
    model: ModelSpec = Field(description="Estimator to train.")
    tuning: TuningSpec = Field(
        default_factory=TuningSpec,  # type: ignore[arg-type]
        description="Hyper-parameter search.",
    )
    compute: ComputeSpec = Field(
        default_factory=ComputeSpec,  # type: ignore[arg-type]
        description="Compute for the training.",
    )
    output: OutputSpec = Field(description="Where the model artifact goes.")


CRON_FIELDS = r"^\s*\S+(\s+\S+){4}\s*$"
TRIGGERS = ("spec", "manual", "schedule", "drift")
Trigger = Literal["spec", "manual", "schedule", "drift"]


class ScheduleSpec(ApiModel):
    """Retrain on a cron schedule, with the semantics of a Kubernetes CronJob."""

    cron: str = Field(
        description="Five-field cron expression (minute hour day-of-month month day-of-week), "
        "e.g. '0 3 * * *' for every day at 03:00.",
        pattern=CRON_FIELDS,
        max_length=200,
    )
    timeZone: str = Field(
        "UTC",
        description="IANA time zone the schedule is read in, e.g. Europe/Paris.",
        max_length=64,
        pattern=r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$",
    )
    startingDeadlineSeconds: int | None = Field(
        None,
        description="A scheduled time missed by more than this (the operator was down) is "
        "skipped rather than run late. Missed times never pile up: at most one run starts for "
        "all the times missed.",
        ge=1,
    )
    concurrencyPolicy: Literal["Forbid", "Replace"] = Field(
        "Forbid",
        description="When a run is still going at a scheduled time: Forbid skips that time, "
        "Replace stops the run and starts a new one.",
    )


class DriftTriggerSpec(ApiModel):
    modelService: str = Field(
        description="ModelService in the same namespace whose DataDrift condition triggers a "
        "retraining run.",
        max_length=253,
    )
    forSeconds: int = Field(
        300,
        description="How long DataDrift must have been True before a run starts.",
        ge=0,
        le=30 * 86_400,
    )


class RetrainSpec(ApiModel):
    schedule: ScheduleSpec | None = Field(None, description="Retrain on a schedule.")
    onDrift: DriftTriggerSpec | None = Field(
        None, description="Retrain when a ModelService sees its traffic drift."
    )
    minIntervalSeconds: int = Field(
        600,
        description="Least time between the starts of two runs a schedule or drift triggers "
        "(spec changes and manual retrains are not held back).",
        ge=0,
        le=30 * 86_400,
    )


class PromotionSpec(ApiModel):
    metric: str | None = Field(
        None,
        description="Metric the gate compares (a scikit-learn scorer name); the tuning "
        "metric when unset.",
        max_length=100,
    )
    minImprovement: float = Field(
        0.0,
        description="How much better than the promoted version a new version must score on "
        "the same fresh held-out data to be promoted (in the metric's units; 0 promotes a tie).",
        ge=0,
    )
    auto: bool = Field(
        True,
        description="Promote a version that passes the gate. When false every new version waits "
        "as Candidate until a person promotes it with the modelfactory.dev/promote annotation.",
    )


class TrainingJobSpec(TrainingSpec):
    """Desired state of a TrainingJob."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.output.storageUri == oldSelf.output.storageUri",
                "spec.output.storageUri is immutable: a TrainingJob keeps its versions together",
            ),
            (
                "!has(self.tuning) || !has(self.tuning.timeBudgetSeconds) || "
                "!has(self.activeDeadlineSeconds) || "
                "self.tuning.timeBudgetSeconds < self.activeDeadlineSeconds",
                "spec.tuning.timeBudgetSeconds must be less than spec.activeDeadlineSeconds: the "
                "run still reads the data and refits the best model after the search",
            ),
        )
    )

    image: str | None = Field(
        None, description="Training image; the operator's default when unset.", max_length=512
    )
    backoffLimit: int = Field(
        1, description="Retries of a failed training run before the job fails.", ge=0, le=20
    )
    activeDeadlineSeconds: int | None = Field(
        None, description="Wall-clock limit of one training run, in seconds.", ge=1
    )
    ttlSecondsAfterFinished: int | None = Field(
        None,
        description="Delete the finished run's pods this many seconds after it ends.",
        ge=0,
    )
    suspend: bool = Field(False, description="Do not start (or stop) the training run.")
    retrain: RetrainSpec | None = Field(
        None, description="When to train a new version without a spec change."
    )
    promotion: PromotionSpec = Field(
        default_factory=PromotionSpec,  # type: ignore[arg-type]
        description="Which new versions reach the ModelServices that follow this TrainingJob.",
    )

    @field_validator("retrain")
    @classmethod
    def _known_time_zone(cls, retrain: RetrainSpec | None) -> RetrainSpec | None:
        if retrain is not None and retrain.schedule is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(retrain.schedule.timeZone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"retrain.schedule.timeZone: unknown time zone {retrain.schedule.timeZone!r}"
                ) from None
        return retrain

    @model_validator(mode="after")
    def _budget_within_deadline(self) -> TrainingJobSpec:
        budget, deadline = self.tuning.timeBudgetSeconds, self.activeDeadlineSeconds
        if budget is not None and deadline is not None and budget >= deadline:
            raise ValueError(
                "tuning.timeBudgetSeconds must be less than activeDeadlineSeconds: the run still "
                "reads the data and refits the best model after the search"
            )
        return self

    pod: PodSettings = Field(
        default_factory=PodSettings,  # type: ignore[arg-type]
        description=(
            "Settings of the training pods (the Job's pod, or the Ray head, workers and "
            "submitter): image pull secrets, scheduling, ServiceAccount, extra environment."
        ),
    )


class ModelRef(ApiModel):
    """A model version in the artifact store."""

    version: int = Field(description="Model version, increasing per TrainingJob.", ge=1)
    uri: str = Field(description="URI of the version's directory.")
    digest: str = Field(
        description="sha256:<hex> of the version's metadata.json (which records the model "
        "file's sha256)."
    )


class ModelVersion(ModelRef):
    """A version in the TrainingJob's history, with what made it and what the gate decided."""

    phase: Literal["Candidate", "Promoted", "Rejected", "Retired"] | None = Field(
        None,
        description="Candidate (waiting for a decision), Promoted (served by followers), "
        "Rejected (the gate or a person kept it out), Retired (promoted once, since replaced).",
    )
    trigger: Trigger | None = Field(
        None, description="Why it was trained: spec, manual, schedule or drift."
    )
    dataDigest: str | None = Field(None, description="Digest of the training data it read.")
    metric: str | None = Field(None, description="Metric of the gate's comparison.")
    score: float | None = Field(None, description="Its score on the run's held-out data.")
    baselineVersion: int | None = Field(
        None, description="The promoted version it was compared with."
    )
    baselineScore: float | None = Field(
        None, description="That version's score on the same held-out data."
    )
    decidedBy: str | None = Field(
        None, description="gate, or the annotation a person set to decide."
    )
    message: str | None = Field(None, description="Why the gate decided as it did.")
    trainedAt: str | None = Field(None, description="When the run that made it finished.")


class BaselineScore(ApiModel):
    """The promoted version scored by a new run on that run's held-out data."""

    version: int = Field(description="The promoted version.", ge=1)
    score: float | None = Field(None, description="Its score; none when it could not be scored.")
    message: str | None = Field(None, description="Why it could not be scored.")


class TriggerStatus(ApiModel):
    kind: Trigger = Field(description="schedule or drift (manual and spec need no record).")
    id: str = Field(description="Identifies the trigger; part of the run id it starts.")
    time: str = Field(description="The scheduled time, or when drift fired it (RFC 3339).")


class PromotionStatus(ApiModel):
    version: int | None = Field(None, description="The promoted version.")
    decidedBy: str | None = Field(
        None, description="gate, or the annotation a person set to promote it."
    )
    time: str | None = Field(None, description="When it was promoted.")
    annotation: str | None = Field(
        None, description="The value of modelfactory.dev/promote last acted upon."
    )


class TrainingProgress(ApiModel):
    trialsTotal: int = Field(0, description="Trials planned.")
    trialsCompleted: int = Field(0, description="Trials finished successfully.")
    trialsFailed: int = Field(0, description="Trials that raised an error.")
    trialsSkipped: int = Field(
        0, description="Trials not run (or stopped) because tuning.timeBudgetSeconds ran out."
    )
    bestScore: float | None = Field(None, description="Best cross-validated score so far.")
    rayNodes: int = Field(
        0, description="Ray nodes (pods, in a RayJob) the finished trials' folds ran on."
    )


class TrainingResult(ApiModel):
    """What one finished training run reports back (written by the training runtime)."""

    runId: str = Field(description="Identifier of the run that produced this result.")
    succeeded: bool = Field(description="Whether the run produced a model.")
    reason: str | None = Field(None, description="CamelCase reason when the run failed.")
    message: str | None = Field(None, description="Human-readable failure message.")
    model: ModelRef | None = Field(None, description="The model version written.")
    metric: str | None = Field(None, description="Name of the search metric.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Scores of the best model.")
    bestParams: dict[str, Any] = Field(default_factory=dict, description="Chosen hyper-parameters.")
    trigger: Trigger | None = Field(None, description="Why the run was started.")
    dataDigest: str | None = Field(
        None, description="sha256 over the bytes (or object versions) of the data read."
    )
    score: float | None = Field(
        None, description="The new version's score on the held-out data, by the gate's metric."
    )
    baseline: BaselineScore | None = Field(
        None, description="The promoted version scored on the same held-out data."
    )
    progress: TrainingProgress = Field(
        default_factory=TrainingProgress,  # type: ignore[arg-type]
        description="Trial counts.",
    )


class TrainingJobStatus(ApiModel):
    phase: RunPhase | None = Field(
        None, description="Pending, Running, Succeeded, Failed or Suspended."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations.")
    observedGeneration: int | None = Field(None, description="Generation last acted upon.")
    attempts: int = Field(0, description="Training runs started for the current generation.")
    startTime: str | None = Field(None, description="When the current run started.")
    completionTime: str | None = Field(None, description="When the current run ended.")
    progress: TrainingProgress | None = Field(None, description="Trial counts of the current run.")
    bestParams: dict[str, Any] | None = Field(None, description="Chosen hyper-parameters.")
    metric: str | None = Field(None, description="Name of the search metric.")
    metrics: dict[str, float] | None = Field(None, description="Scores of the latest model.")
    model: ModelRef | None = Field(
        None, description="The promoted version: what following ModelServices serve."
    )
    latestVersion: int | None = Field(None, description="Newest version trained.")
    promotedVersion: int | None = Field(None, description="Version currently promoted.")
    lastTrigger: TriggerStatus | None = Field(
        None, description="The last schedule or drift trigger that started a run."
    )
    lastScheduleTime: str | None = Field(
        None, description="The last scheduled time acted upon (run or skipped)."
    )
    promotion: PromotionStatus | None = Field(None, description="The last promotion decision.")
    runTrigger: Trigger | None = Field(None, description="Why the current run was started.")
    runInputs: dict[str, str] | None = Field(
        None, description="What the current run was started from (spec hash, trigger tokens)."
    )
    runBaseline: ModelRef | None = Field(
        None, description="The promoted version the current run compares its new version with."
    )
    history: list[ModelVersion] = Field(
        default_factory=list, description="Recent good model versions, newest last."
    )
    runId: str | None = Field(None, description="Identifier of the current training run.")
    runImage: str | None = Field(
        None, description="Image of the current run, kept for its whole life."
    )
    runGeneration: int | None = Field(None, description="Generation the current run started from.")
    score: float | None = Field(None, description="Held-out score of the latest model.")
    result: TrainingResult | None = Field(
        None, description="Raw report of the latest run, written by the training runtime."
    )
    releaseRevision: int | None = Field(None, description="Helm release revision.")
    appliedHash: str | None = Field(None, description="Hash of the run configuration applied.")
