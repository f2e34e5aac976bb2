"""Prometheus metrics. With several worker processes, PROMETHEUS_MULTIPROC_DIR is set by main()
before the workers start and /metrics aggregates all of them."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from modelfactory_api import metric_names as names

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def _size_buckets(max_batch_size: int) -> tuple[float, ...]:
    buckets, b = [], 1
    while b < max_batch_size:
        buckets.append(float(b))
        b *= 2
    buckets.append(float(max_batch_size))
    return tuple(buckets)


class Metrics:
    def __init__(self, model_name: str, max_batch_size: int, multiprocess_dir: str | None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.model_name = model_name
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            names.HTTP_REQUESTS,
            "HTTP requests by route and status.",
            ["route", "method", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            names.HTTP_REQUEST_DURATION,
            "HTTP request latency by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            names.HTTP_REQUESTS_IN_FLIGHT,
            "Requests being handled.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.batch_rows = Histogram(
            names.BATCH_ROWS,
            "Rows per predict call (after merging requests).",
            ["model"],
            buckets=_size_buckets(max_batch_size),
            registry=reg,
        ).labels(model_name)
        self.queue_rows = Gauge(
            names.BATCH_QUEUE_ROWS,
            "Rows waiting for the model.",
            ["model"],
            registry=reg,
            multiprocess_mode="livesum",
        ).labels(model_name)
        self.rejected = Counter(
            names.REQUESTS_REJECTED,
            "Inference requests refused or dropped by admission control, by reason: "
            "concurrency / queue_full (503), timeout (504), disconnected (client gone).",
            ["reason"],
            registry=reg,
        )
        self.load_seconds = Gauge(
            names.MODEL_LOAD_SECONDS,
            "Time to load, verify and warm up the model.",
            ["model"],
            registry=reg,
            multiprocess_mode="max",
        ).labels(model_name)
        self.ready = Gauge(
            names.MODEL_READY,
            "1 when the model is loaded and serving.",
            ["model"],
            registry=reg,
            multiprocess_mode="min",
        ).labels(model_name)
        self.info = Gauge(
            names.MODEL_INFO,
            "The served model version (value is always 1).",
            ["model", "version", "digest", "estimator"],
            registry=reg,
            multiprocess_mode="max",
        )
        # Drift (see drift_monitor): counters sum over replicas; gauges carry the version, so
        # replicas of one version agree and a roll shows both.
        self.drift_samples = Counter(
            names.DRIFT_SAMPLES,
            "Rows binned by the drift monitor.",
            ["model", "version"],
            registry=reg,
        )
        self.drift_dropped = Counter(
            names.DRIFT_DROPPED,
            "Rows the drift monitor did not check (its queue was full).",
            ["model"],
            registry=reg,
        ).labels(model_name)
        self.drift_evaluations = Counter(
            names.DRIFT_EVALUATIONS,
            "Drift evaluations of the sliding window.",
            ["model", "version"],
            registry=reg,
        )
        self.drift_score = Gauge(
            names.DRIFT_SCORE,
            "Drift of a feature (or of the predictions) by method: psi, jensen_shannon, ks_pvalue.",
            ["model", "version", "feature", "method"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.drift_feature_drifted = Gauge(
            names.DRIFT_FEATURE_DRIFTED,
            "1 when the feature drifted.",
            ["model", "version", "feature"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.drift_share = Gauge(
            names.DRIFT_SHARE,
            "Share of the features that drifted.",
            ["model", "version"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.drift_detected = Gauge(
            names.DRIFT_DETECTED,
            "1 when the dataset drifted.",
            ["model", "version"],
            registry=reg,
            multiprocess_mode="max",
        )
        # Rollouts: each version's own answers, by track (stable or candidate), which the
        # operator's analysis compares; and what a stable server routed or mirrored.
        self.inference = Counter(
            names.INFERENCE_REQUESTS,
            "Inference requests answered by this server's model, by outcome (ok, client_error, "
            "server_error).",
            ["model", "version", "track", "outcome"],
            registry=reg,
        )
        self.inference_latency = Histogram(
            names.INFERENCE_DURATION,
            "Latency of inference requests answered by this server's model.",
            ["model", "version", "track"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.routed = Counter(
            names.ROUTED_REQUESTS,
            "Inference requests sent to the other version's servers, by outcome (no_answer: "
            "none came, the client got 502; unreachable: answered here instead).",
            ["model", "version", "outcome"],
            registry=reg,
        )
        self.routed_latency = Histogram(
            names.ROUTED_DURATION,
            "Latency of inference requests answered by the other version's servers, as this "
            "server's clients saw it.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.shadow_requests = Counter(
            names.SHADOW_REQUESTS,
            "Requests mirrored to the shadow version, by the shadow's outcome.",
            ["model", "version", "outcome"],
            registry=reg,
        )
        self.shadow_latency = Histogram(
            names.SHADOW_DURATION,
            "Latency of the shadow version's answers to mirrored requests.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.shadow_rows = Counter(
            names.SHADOW_ROWS,
            "Rows of mirrored requests compared with the stable answer (compared), and of them "
            "those whose label agreed (agreeing; classifiers).",
            ["model", "version", "result"],
            registry=reg,
        )
        self.shadow_abs_error = Counter(
            names.SHADOW_ABS_ERROR,
            "Sum over compared rows of |shadow - stable| (regressors).",
            ["model", "version"],
            registry=reg,
        )
        self._inference_children: dict[tuple[str, str, str], Any] = {}
        self._children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(route, method, str(status))
        child.inc()
        lat = self._latency_children.get(route)
        if lat is None:
            lat = self._latency_children[route] = self.latency.labels(route)
        lat.observe(seconds)

    def observe_inference(self, version: str, track: str, outcome: str, seconds: float) -> None:
        key = (version, track, outcome)
        child = self._inference_children.get(key)
        if child is None:
            child = self._inference_children[key] = self.inference.labels(
                self.model_name, version, track, outcome
            )
        child.inc()
        self.inference_latency.labels(self.model_name, version, track).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def multiprocess_dir_from(environ: dict[str, str] | os._Environ[str]) -> str | None:
    return environ.get("PROMETHEUS_MULTIPROC_DIR") or None
