"""Settings: the operator's MF_* variables, and CLI flags on top."""

from __future__ import annotations

import pytest

from modelfactory_api.runtime import ServingRuntimeConfig
from modelfactory_serving.settings import Settings, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MF_"):
            monkeypatch.delenv(key)


def test_accepts_the_operator_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ServingRuntimeConfig(
        model_name="churn",
        model_uri="s3://bucket/churn/3",
        model_digest="sha256:" + "a" * 64,
        model_version="3",
        max_batch_size=64,
        max_latency_ms=5.5,
        workers=2,
        host="127.0.0.1",
        port=9000,
    )
    for key, value in cfg.to_env().items():
        monkeypatch.setenv(key, value)
    settings = load_settings([])
    assert settings.runtime_config() == cfg


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ServingRuntimeConfig(model_name="m", model_uri="/x")
    for key, value in cfg.to_env().items():
        monkeypatch.setenv(key, value)
    assert load_settings([]).runtime_config() == cfg


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MF_MODEL_NAME", "m")
    monkeypatch.setenv("MF_MODEL_URI", "/x")
    monkeypatch.setenv("MF_PORT", "1234")
    s = load_settings(["--port", "4321", "--max-batch-size", "16", "--access-log"])
    assert (s.port, s.max_batch_size, s.access_log, s.model_name) == (4321, 16, True, "m")


def test_to_env_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(model_name="m", model_uri="/x", access_log=True, max_rows=7)
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    assert load_settings([]) == s


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MF_MODEL_NAME", "m")
    monkeypatch.setenv("MF_MODEL_URI", "/x")
    monkeypatch.setenv("MF_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValueError, match="max_batch_size"):
        load_settings([])
