from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelfactory_api.runtime import JobIdentity, ReportSpec
from modelfactory_api.trainingjob import ModelRef, TrainingProgress, TrainingResult
from modelfactory_training.report import (
    MERGE_PATCH,
    FileReporter,
    KubernetesReporter,
    LogReporter,
    make_reporter,
    merge_patch_to,
)

pytestmark = pytest.mark.unit

JOB = JobIdentity(namespace="ml", name="iris", uid="u", generation=2)


def result(**kwargs: Any) -> TrainingResult:
    base: dict[str, Any] = {
        "runId": "r1",
        "succeeded": True,
        "model": ModelRef(version=3, uri="s3://b/m/3", digest="sha256:" + "a" * 64),
        "metric": "accuracy",
        "metrics": {"cv_mean": 0.9},
        "bestParams": {"C": 1.0},
    }
    return TrainingResult(**{**base, **kwargs})


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (None, {"a": 1, "b": {"c": None}}),
        ({"a": 1, "m": {"x": 1, "y": 2}}, {"m": {"y": 3}}),
        ({"p": {"n": 5}}, {"p": {"n": [1, 2]}}),
        ({"reason": "Old", "metrics": {"old": 1.0}}, {"reason": None, "metrics": {}}),
    ],
)
def test_merge_patch_turns_old_into_new(old: Any, new: Any) -> None:
    def drop_nulls(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: drop_nulls(x) for k, x in v.items() if x is not None}
        return v

    assert apply_merge_patch(old, merge_patch_to(old, new)) == drop_nulls(new)


def test_file_reporter_writes_the_result_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out" / "result.json"
    reporter = FileReporter(str(path))
    reporter.progress(TrainingProgress(trialsTotal=3))
    assert not path.exists()
    reporter.result(result())
    written = json.loads(path.read_text())
    assert written["runId"] == "r1" and written["model"]["version"] == 3
    assert TrainingResult.model_validate(written) == result()
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


class FakeApi:
    def __init__(self, failures: int = 0, current: Any = None) -> None:
        self.failures = failures
        self.current = current
        self.patches: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def patch_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("apiserver away")
        self.patches.append((args, kwargs))

    def get_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> Any:
        return {"status": {"result": self.current}} if self.current is not None else {}


def test_kubernetes_reporter_merge_patches_status() -> None:
    api = FakeApi(current={"runId": "old", "reason": "X", "metrics": {"stale": 1.0}})
    reporter = KubernetesReporter(JOB, api_factory=lambda: api, sleep=lambda s: None)
    reporter.progress(TrainingProgress(trialsTotal=4, trialsCompleted=1, bestScore=0.5))
    reporter.result(result())
    (progress_args, progress_kwargs), (result_args, _) = api.patches
    assert progress_args[:5] == ("modelfactory.dev", "v1alpha1", "ml", "trainingjobs", "iris")
    assert progress_kwargs["_content_type"] == MERGE_PATCH
    assert progress_kwargs["_request_timeout"] == 10.0
    assert progress_args[5] == {
        "status": {
            "progress": {
                "trialsTotal": 4,
                "trialsCompleted": 1,
                "trialsFailed": 0,
                "trialsSkipped": 0,
                "bestScore": 0.5,
                "rayNodes": 0,
            }
        }
    }
    patch = result_args[5]["status"]["result"]
    assert patch["runId"] == "r1" and patch["metrics"] == {"cv_mean": 0.9, "stale": None}
    assert patch["reason"] is None


def test_kubernetes_reporter_pickles_without_its_connection() -> None:
    """Ray Tune pickles its callbacks; an open API connection must not travel with them."""
    import pickle
    import socket
    import time

    reporter = KubernetesReporter(JOB, api_factory=FakeApi, sleep=time.sleep)
    with socket.socket() as live:
        reporter._api = live  # stands in for a client holding an open socket
        copy = pickle.loads(pickle.dumps(reporter))
    assert copy._api is None and copy.job == JOB


def test_progress_failures_are_not_fatal() -> None:
    api = FakeApi(failures=1)
    reporter = KubernetesReporter(JOB, api_factory=lambda: api, sleep=lambda s: None)
    reporter.progress(TrainingProgress())
    assert api.patches == []


def test_result_is_retried_with_backoff_then_raises() -> None:
    delays: list[float] = []
    api = FakeApi(failures=2)
    reporter = KubernetesReporter(JOB, api_factory=lambda: api, sleep=delays.append, backoff=0.5)
    reporter.result(result())
    assert delays == [0.5, 1.0] and len(api.patches) == 1

    failing = KubernetesReporter(
        JOB, api_factory=lambda: FakeApi(failures=10), sleep=delays.append, attempts=3
    )
    with pytest.raises(ConnectionError):
        failing.result(result())


def test_make_reporter() -> None:
    assert isinstance(make_reporter(ReportSpec(), JOB), LogReporter)
    assert isinstance(make_reporter(ReportSpec(kind="file", path="/tmp/x"), JOB), FileReporter)
    assert isinstance(make_reporter(ReportSpec(kind="kubernetes"), JOB), KubernetesReporter)
    with pytest.raises(ValueError, match=r"needs job.namespace"):
        make_reporter(ReportSpec(kind="kubernetes"), JobIdentity())
