"""BatchPrediction decisions, dict in, dict out: the run it renders and the status it reaches."""

from __future__ import annotations

from typing import Any

import pytest

from modelfactory_api.runtime import BatchRuntimeConfig
from modelfactory_operator.logic import batchprediction as bp
from modelfactory_operator.logic import validate
from modelfactory_operator.logic.modelservice import ResolvedModel
from modelfactory_operator.logic.plans import RunObservation

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "c" * 64
SPEC: dict[str, Any] = {
    "model": {"trainingJob": "churn"},
    "input": {"uri": "pvc://data/customers/", "format": "csv", "carry": ["customer_id"]},
    "output": {"uri": "pvc://data/scores/nightly", "probabilities": True},
}
BODY: dict[str, Any] = {
    "apiVersion": "modelfactory.dev/v1alpha1",
    "kind": "BatchPrediction",
    "metadata": {"name": "nightly", "namespace": "ml", "uid": "u-3", "generation": 1},
    "spec": SPEC,
}
MODEL = ResolvedModel(uri="pvc://models/churn/4", digest=DIGEST, version=4)


def plan(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> Any:
    parsed = validate.batchprediction_spec(spec or SPEC)
    return bp.render({**BODY, "status": status or {}}, parsed, MODEL, "img/training:1")


def decide(status: dict[str, Any], obs: RunObservation, p: Any = None) -> Any:
    p = p or plan(status=status)
    return bp.decide(1, status, p, None, None, MODEL, obs, True, "2026-12-02T00:00:00Z")


def test_render_runs_the_batch_entrypoint_with_workload_paths() -> None:
    p = plan()
    values = p.chart_values
    assert values["command"] == ["modelfactory-batch"] and p.entrypoint == "modelfactory-batch"
    assert values["statusResource"] == "batchpredictions/status"
    assert values["labels"]["app.kubernetes.io/component"] == "batch"
    assert values["owner"]["kind"] == "BatchPrediction" and p.release == "bp-nightly"
    assert values["mode"] == "job" and p.plural == "batchpredictions"
    config = BatchRuntimeConfig.from_env(values["env"])
    assert config.modelUri == "file:///mnt/pvc/models/churn/4" and config.modelVersion == 4
    assert config.input.uri == "file:///mnt/pvc/data/customers/"
    assert config.output.uri == "file:///mnt/pvc/data/scores/nightly"
    assert config.input.carry == ["customer_id"] and config.output.probabilities
    assert config.job.name == "nightly" and config.runId == p.run_id
    claims = {v["persistentVolumeClaim"]["claimName"] for v in values["volumes"]}
    assert claims == {"data", "models"}
    # Workers make it a RayJob, as for a TrainingJob.
    ray = plan({**SPEC, "compute": {"workers": 2}})
    assert ray.mode == "rayjob" and ray.chart_values["workers"] == 2


def test_a_run_id_per_spec_and_the_model_kept_for_the_run() -> None:
    assert plan().run_id == plan().run_id
    other = plan({**SPEC, "batchSize": 100})
    assert other.run_id != plan().run_id
    started = {
        "runId": plan().run_id,
        "model": {"uri": "pvc://models/churn/3", "digest": DIGEST, "version": 3},
    }
    kept = bp.run_model(started, plan().run_id, MODEL)
    assert kept.version == 3
    assert bp.run_model(started, other.run_id, MODEL).version == 4


def test_lifecycle_launch_run_succeed() -> None:
    d = decide({}, RunObservation("absent"))
    assert d.launch and d.status["phase"] == "Pending"
    assert d.status["model"]["version"] == 4
    status = {**d.status, "appliedHash": plan().hash}
    d = decide(status, RunObservation("running", start_time="t0", attempts=1))
    assert not d.launch and d.status["phase"] == "Running"
    status = {
        **d.status,
        "progress": {"rowsRead": 10, "rowsWritten": 10, "bytesTotal": 100, "percent": 10.0},
        "result": {
            "runId": plan().run_id,
            "succeeded": True,
            "rowsRead": 100,
            "rowsWritten": 100,
            "seconds": 2.0,
            "manifest": "pvc://data/scores/nightly/manifest.json",
            "drift": {"drifted": False},
        },
    }
    d = decide(status, RunObservation("succeeded", completion_time="t1", attempts=1))
    assert d.status["phase"] == "Succeeded" and not d.launch
    assert d.status["manifest"].endswith("manifest.json") and d.status["drifted"] is False
    assert d.status["progress"]["rowsWritten"] == 100 and d.status["progress"]["percent"] == 100
    assert ("Normal", "Scored") in [(e[0], e[1]) for e in d.events]
    # Ready once its output is committed, as every resource says when it is ready.
    ready = next(c for c in d.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "OutputCommitted"
    assert ("Normal", "OutputCommitted") in [(e[0], e[1]) for e in d.events]


def test_ready_is_false_until_output_and_names_a_failure() -> None:
    d = decide({}, RunObservation("absent"))
    ready = next(c for c in d.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "NoOutputYet"
    failed = decide(
        {**d.status, "appliedHash": plan().hash},
        RunObservation("failed", reason="DeadlineExceeded", message="too slow"),
    )
    ready = next(c for c in failed.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "DeadlineExceeded")


def test_a_schema_mismatch_fails_with_the_runtimes_message() -> None:
    status = {
        "runId": plan().run_id,
        "appliedHash": plan().hash,
        "result": {
            "runId": plan().run_id,
            "succeeded": False,
            "reason": "SchemaMismatch",
            "message": "input a.csv lacks feature column(s) 'tenure'",
        },
    }
    d = decide(status, RunObservation("failed", attempts=1))
    assert d.status["phase"] == "Failed"
    failed = next(c for c in d.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "SchemaMismatch" and "'tenure'" in failed["message"]


def test_a_model_not_found_waits_and_a_bad_spec_fails_naming_the_field() -> None:
    d = bp.decide(
        1,
        {},
        None,
        None,
        ("NoModelYet", "TrainingJob 'churn' has not produced a model yet"),
        None,
        RunObservation("absent"),
        True,
        "t",
    )
    assert d.status["phase"] == "Pending" and not d.launch
    with pytest.raises(validate.SpecError, match=r"spec\.input\.uri"):
        validate.batchprediction_spec({**SPEC, "input": {"uri": "/tmp/local.csv"}})
    with pytest.raises(validate.SpecError, match="predictions, probabilities or both"):
        validate.batchprediction_spec({**SPEC, "output": {"uri": "s3://b/o", "predictions": False}})
    with pytest.raises(validate.SpecError, match="carry"):
        validate.batchprediction_spec(
            {**SPEC, "input": {"uri": "s3://b/i.csv", "carry": ["x"] * 65}}
        )
    d = bp.decide(
        1, {}, None, "spec.input.uri: bad", None, None, RunObservation("absent"), True, "t"
    )
    assert d.status["phase"] == "Failed"


def test_a_schedule_starts_a_new_run_at_each_due_time() -> None:
    import datetime as dt

    spec = validate.batchprediction_spec({**SPEC, "schedule": {"cron": "0 3 * * *"}})
    created = "2026-12-01T12:00:00Z"
    quiet = bp.schedule(spec, {}, created, dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.UTC))
    assert quiet.fire is None and quiet.recheck == pytest.approx(3600)
    due = bp.schedule(
        spec, {"phase": "Succeeded"}, created, dt.datetime(2026, 12, 2, 3, 0, 5, tzinfo=dt.UTC)
    )
    assert due.fire == {
        "kind": "schedule",
        "id": "schedule-2026-12-02T03:00:00Z",
        "time": "2026-12-02T03:00:00Z",
    }
    assert [e[1] for e in due.events] == ["ScheduledRun"] and "scoring" in due.events[0][2]
    first = bp.run_id(BODY, spec)
    again = bp.run_id({**BODY, "status": {"lastTrigger": due.fire}}, spec)
    assert again != first
    # A run still going at the next time: skipped (concurrencyPolicy Forbid).
    busy = bp.schedule(
        spec,
        {"phase": "Running", "runId": again, "lastScheduleTime": "2026-12-02T03:00:00Z"},
        created,
        dt.datetime(2026, 12, 3, 3, 0, 5, tzinfo=dt.UTC),
    )
    assert busy.fire is None and [e[1] for e in busy.events] == ["ScheduleSkipped"]
    with pytest.raises(validate.SpecError, match=r"spec\.schedule\.cron"):
        validate.batchprediction_spec({**SPEC, "schedule": {"cron": "61 * * * *"}})
    with pytest.raises(validate.SpecError, match="unknown time zone"):
        validate.batchprediction_spec(
            {**SPEC, "schedule": {"cron": "0 3 * * *", "timeZone": "Mars/Olympus"}}
        )
