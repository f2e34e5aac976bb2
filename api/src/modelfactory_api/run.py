"""What every kind that starts runs (TrainingJob, BatchPrediction) shares: how a run's process
ends, and the phases and condition reasons its status shows (KubeRay's JobDeploymentStatus and
JobFailedReason are the model: a closed set, typed, the same for every kind)."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ExitCode(IntEnum):
    """How a run's process ends. The Job's podFailurePolicy and the local launcher read the
    same numbers: PERMANENT fails the run at once (bad input: a retry fails the same way)."""

    OK = 0
    TRANSIENT = 1
    PERMANENT = 2


class RunPhase(StrEnum):
    """status.phase of a kind that starts runs, derived from its conditions."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class RunReason(StrEnum):
    """Reasons of a run's conditions that the operator itself decides. A run's workload reports
    reasons of its own (status.result.reason: e.g. InvalidSpec, StorageAccessDenied), which the
    conditions carry as they come."""

    INVALID_SPEC = "InvalidSpec"
    RAYJOB_CRD_MISSING = "RayJobCRDMissing"
    NO_FAILURE = "NoFailure"
    NO_RESULT = "NoResult"
    LAUNCHING = "Launching"
    PENDING = "Pending"
    SUSPENDED = "Suspended"
    NOT_SUSPENDED = "NotSuspended"
    PROCESS_FAILED = "ProcessFailed"
    # Per kind: what its run does while it runs, and how it ends well.
    TRAINING = "Training"
    TRAINING_SUCCEEDED = "TrainingSucceeded"
    TRAINING_FAILED = "TrainingFailed"
    SCORING = "Scoring"
    SCORED = "Scored"
    SCORING_FAILED = "ScoringFailed"
    # Ready
    MODEL_AVAILABLE = "ModelAvailable"
    NO_MODEL_YET = "NoModelYet"
    OUTPUT_COMMITTED = "OutputCommitted"
    NO_OUTPUT_YET = "NoOutputYet"
    RESOLVING_MODEL = "ResolvingModel"
