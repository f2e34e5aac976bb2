"""Server settings: built once at start-up from MF_* environment variables and CLI flags.

The first block mirrors `modelfactory_api.runtime.ServingRuntimeConfig` field for field (the
operator renders that as MF_<FIELD> variables); the rest are server knobs with defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelfactory_api.runtime import ENV_PREFIX, ServingRuntimeConfig

_RUNTIME_DEFAULTS = ServingRuntimeConfig(model_name="-", model_uri="-")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        protected_namespaces=(),
        cli_kebab_case=True,
        cli_implicit_flags=True,
    )

    # --- ServingRuntimeConfig (the operator's contract) ---
    model_name: str = Field(description="Name the model is served under.")
    model_uri: str = Field(description="URI of the model version directory (fsspec).")
    model_digest: str | None = Field(None, description="Expected sha256:<hex> of the model file.")
    model_version: str | None = Field(
        None, description="Version label reported by the server (default: metadata version)."
    )
    max_batch_size: int = Field(_RUNTIME_DEFAULTS.max_batch_size, ge=1)
    max_latency_ms: float = Field(_RUNTIME_DEFAULTS.max_latency_ms, ge=0)
    max_queue_rows: int = Field(
        _RUNTIME_DEFAULTS.max_queue_rows,
        ge=1,
        description="Rows that may wait for the model (all requests together); a request "
        "that would go past it is refused with 503 and Retry-After.",
    )
    timeout_seconds: float = Field(
        _RUNTIME_DEFAULTS.timeout_seconds,
        gt=0,
        description="Longest an inference request may take, from its first byte to its "
        "answer; past it the answer is 504.",
    )
    workers: int = Field(_RUNTIME_DEFAULTS.workers, ge=1)
    runtime: Literal["auto", "onnx", "sklearn"] = Field(
        _RUNTIME_DEFAULTS.runtime,
        description="auto: ONNX Runtime when the version has a verified ONNX model, else "
        "scikit-learn; onnx: ONNX Runtime or the model fails to load; sklearn.",
    )
    route_track: Literal["stable", "candidate"] = Field(
        _RUNTIME_DEFAULTS.route_track, description="Track label of this server's metrics."
    )
    route_mode: Literal["none", "split", "mirror"] = Field(
        _RUNTIME_DEFAULTS.route_mode,
        description="split: route_weight percent of inference requests are answered by "
        "route_peer; mirror: that share is also sent to route_peer and the answers compared.",
    )
    route_peer: str | None = Field(None, description="Base URL of the other version's server.")
    route_peer_version: str | None = Field(None, description="The other version's label.")
    route_weight: int = Field(_RUNTIME_DEFAULTS.route_weight, ge=0, le=100)
    route_header: str = Field(_RUNTIME_DEFAULTS.route_header, pattern=r"^[a-z0-9-]{1,64}$")
    route_pin_local: str = Field(_RUNTIME_DEFAULTS.route_pin_local)
    route_pin_peer: str = Field(_RUNTIME_DEFAULTS.route_pin_peer)
    route_mirrors_in_flight: int = Field(_RUNTIME_DEFAULTS.route_mirrors_in_flight, ge=1)
    onnx_threads: int = Field(
        1,
        ge=1,
        description="ONNX Runtime threads per run, at most the CPUs this process may use (its "
        "cgroup's CPU limit, else its CPU affinity; never the node's). One by default: a batch "
        "of up to 64 rows runs faster on one thread than split over two, and the event loop "
        "needs the other CPU.",
    )
    drift_enabled: bool = Field(
        _RUNTIME_DEFAULTS.drift_enabled,
        description="Compare live traffic with the artifact's reference profile.",
    )
    drift_window: int = Field(_RUNTIME_DEFAULTS.drift_window, ge=10)
    drift_evaluate_every: int = Field(_RUNTIME_DEFAULTS.drift_evaluate_every, ge=1)
    drift_evaluate_seconds: float = Field(_RUNTIME_DEFAULTS.drift_evaluate_seconds, gt=0)
    drift_min_samples: int = Field(_RUNTIME_DEFAULTS.drift_min_samples, ge=1)
    drift_max_rows_per_second: int = Field(_RUNTIME_DEFAULTS.drift_max_rows_per_second, ge=1)
    drift_psi: float = Field(_RUNTIME_DEFAULTS.drift_psi, ge=0)
    drift_jensen_shannon: float = Field(_RUNTIME_DEFAULTS.drift_jensen_shannon, ge=0, le=1)
    drift_ks_pvalue: float = Field(_RUNTIME_DEFAULTS.drift_ks_pvalue, ge=0, le=1)
    drift_share: float = Field(_RUNTIME_DEFAULTS.drift_share, ge=0, le=1)
    host: str = _RUNTIME_DEFAULTS.host
    port: int = Field(_RUNTIME_DEFAULTS.port, ge=0, le=65535)
    listen_fd: int | None = Field(
        None,
        ge=0,
        description="A listening socket inherited from the process that started the server, "
        "served instead of binding host and port (the local launcher binds it itself, so no "
        "other process can take the port between choosing it and binding it).",
    )

    # --- server knobs ---
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest request body.")
    max_rows: int = Field(10_000, ge=1, description="Most rows one inference request may carry.")
    max_concurrent_requests: int = Field(
        512,
        ge=1,
        description="Inference requests in progress at once (reading, decoding, queued, "
        "predicting); one more is refused with 503 before its body is read. Health, metadata "
        "and metrics routes are never counted or refused.",
    )
    max_string_chars: int = Field(
        8192, ge=1, description="Longest string value (BYTES element, categorical value)."
    )
    decode_inline_bytes: int = Field(
        65536,
        ge=0,
        description="Bodies larger than this are parsed and decoded on a thread, not on the "
        "event loop.",
    )
    predict_mode: Literal["auto", "thread", "inline"] = Field(
        "auto",
        description="Where predict runs: a worker thread (the event loop keeps accepting), "
        "inline on the event loop, or auto (inline when a full batch predicts in under "
        "inline_predict_ms).",
    )
    inline_predict_ms: float = Field(1.0, ge=0)
    direct_inference: bool = Field(
        True,
        description="Serve inference requests straight from the ASGI middleware instead of "
        "through FastAPI's router (same handler and answers, less CPU per request).",
    )
    health_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the health listener: /v2/health/live and /v2/health/ready answered "
        "from a thread of their own, so probes stay fast while the event loop is saturated "
        "(0: none, the default; the chart sets 8081). The main port answers them too. With "
        "several workers, the first owns it.",
    )
    live_stall_seconds: float = Field(
        60.0,
        gt=0,
        description="The health listener's liveness fails once the event loop has not turned "
        "for this long (a wedged server is restarted; a busy one never is).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = Field(False, description="One JSON log line per request.")
    graceful_timeout_s: int = Field(
        30, ge=1, description="After SIGTERM, how long in-flight requests may take."
    )
    drain_seconds: float = Field(
        0.0,
        ge=0,
        description="After SIGTERM, keep serving (but report not ready) this long before "
        "closing the listener, so load balancers stop sending first.",
    )
    timeout_keep_alive_s: int = Field(15, ge=1)
    backlog: int = Field(
        4096, ge=1, description="Listen backlog: connections the kernel holds before accept."
    )

    def runtime_config(self) -> ServingRuntimeConfig:
        return ServingRuntimeConfig.model_validate(
            self.model_dump(include=set(ServingRuntimeConfig.model_fields))
        )

    def to_env(self) -> dict[str, str]:
        """Every setting as MF_* variables (how worker processes get the same settings)."""
        return {
            f"{ENV_PREFIX}{key.upper()}": _env_value(value)
            for key, value in self.model_dump().items()
            if value is not None
        }


def _env_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def load_settings(argv: Sequence[str] | None = None) -> Settings:
    """Environment, overridden by CLI flags (`--model-name x`, `--max-batch-size 64`, ...)."""
    return Settings(  # type: ignore[call-arg]
        _cli_parse_args=list(argv) if argv is not None else [],
        _cli_prog_name="modelfactory-serve",
    )
