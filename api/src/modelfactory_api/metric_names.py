"""The Prometheus metric families a model server exports, named once for the server that writes
them and the operator that reads them.

Names are family names, as a Prometheus text parser reports them: a counter's samples carry
`_total` after it (prometheus_client adds it), a histogram's `_bucket`, `_sum` and `_count`.
"""

from __future__ import annotations

from typing import Final

# HTTP
HTTP_REQUESTS: Final = "modelfactory_http_requests"
HTTP_REQUEST_DURATION: Final = "modelfactory_http_request_duration_seconds"
HTTP_REQUESTS_IN_FLIGHT: Final = "modelfactory_http_requests_in_flight"

# Batching and admission
BATCH_ROWS: Final = "modelfactory_batch_rows"
BATCH_QUEUE_ROWS: Final = "modelfactory_batch_queue_rows"
REQUESTS_REJECTED: Final = "modelfactory_requests_rejected"

# The model
MODEL_LOAD_SECONDS: Final = "modelfactory_model_load_seconds"
MODEL_READY: Final = "modelfactory_model_ready"
MODEL_INFO: Final = "modelfactory_model_info"

# Drift
DRIFT_SAMPLES: Final = "modelfactory_drift_samples"
DRIFT_DROPPED: Final = "modelfactory_drift_dropped"
DRIFT_EVALUATIONS: Final = "modelfactory_drift_evaluations"
DRIFT_SCORE: Final = "modelfactory_drift_score"
DRIFT_FEATURE_DRIFTED: Final = "modelfactory_drift_feature_drifted"
DRIFT_SHARE: Final = "modelfactory_drift_share"
DRIFT_DETECTED: Final = "modelfactory_drift_detected"

# Rollouts: each version's own answers by track, what a stable server routed or mirrored
INFERENCE_REQUESTS: Final = "modelfactory_inference_requests"
INFERENCE_DURATION: Final = "modelfactory_inference_duration_seconds"
ROUTED_REQUESTS: Final = "modelfactory_routed_requests"
ROUTED_DURATION: Final = "modelfactory_routed_duration_seconds"
SHADOW_REQUESTS: Final = "modelfactory_shadow_requests"
SHADOW_DURATION: Final = "modelfactory_shadow_duration_seconds"
SHADOW_ROWS: Final = "modelfactory_shadow_rows"
SHADOW_ABS_ERROR: Final = "modelfactory_shadow_abs_error"
