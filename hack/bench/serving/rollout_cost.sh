#!/usr/bin/env bash
# What a canary rollout costs the stable server: mf-lr (no rollout) against mf-lr-split (the
# same server sending every 10th request to a canary server, the others answered itself),
# interleaved in one harness run, batch 1. The canary (the same artifact, version label 2) runs
# on port 18119 for the whole run; its share is measured as the client sees it.
#
#   bash hack/bench/serving/rollout_cost.sh            # concurrency 1 and 64, 2 rounds
#
# Needs: wrk, train_models.py run for $WORK, .venv installed. Keep the machine otherwise idle.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BENCH=${BENCH:-$(cd "$ROOT/../shared/bench" && pwd)}
WORK=${WORK:-/tmp/bench-work}
ROUNDS=${ROUNDS:-2}
CONC=${CONC:-1,64}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
TAG=${TAG:-$(date +%Y%m%d-%H%M)-rollout}
OUT="$ROOT/hack/bench/serving/results"
mkdir -p "$WORK" "$OUT"
TARGETS="$WORK/targets.modelfactory.json"
sed "s|{root}|$ROOT|g; s|{work}|$WORK|g" "$ROOT/hack/bench/serving/targets.modelfactory.json" > "$TARGETS"
"$ROOT/.venv/bin/python" "$ROOT/hack/bench/serving/convert_models.py" --work "$WORK" >/dev/null

MF_MODEL_NAME=lr MF_MODEL_URI="$WORK/modelfactory/lr/1" MF_MODEL_VERSION=2 MF_HOST=127.0.0.1 \
  MF_PORT=18119 MF_ROUTE_TRACK=candidate MF_MAX_BATCH_SIZE=64 MF_MAX_LATENCY_MS=2 \
  MF_LOG_LEVEL=warning setsid "$ROOT/.venv/bin/modelfactory-serve" > "$WORK/canary.log" 2>&1 &
canary=$!
trap 'kill -TERM -- -$canary 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -fs http://127.0.0.1:18119/v2/health/ready >/dev/null && break
  sleep 0.5
done

uptime
python3 "$BENCH/bench.py" --interleave --rounds "$ROUNDS" --work "$WORK" --no-inprocess \
  --targets-file "$TARGETS" --only "mf-lr,mf-lr-split" --models lr --batches 1 \
  --concurrency "$CONC" --duration "$DURATION" --warmup "$WARMUP" \
  --label "canary split at 10 % against no rollout, lr" --out "$OUT/$TAG.json"
uptime
echo "canary's own answers: $(curl -fs http://127.0.0.1:18119/metrics | grep '^modelfactory_inference_requests_total' || true)"
python3 "$BENCH/report.py" "$OUT/$TAG.json" > "$OUT/$TAG.md"
echo "results: $OUT/$TAG.json, table: $OUT/$TAG.md"
