#!/usr/bin/env bash
# Model Factory's server against the anchors, in the same harness run (one run per model: our
# server serves one model per process, as in a ModelService pod).
#
#   bash hack/bench/serving/run.sh                 # rf and lr, batch 1, concurrency 1 and 64, 2 rounds
#   ROUNDS=1 CONC=1,8,64 BATCHES=1,32 bash hack/bench/serving/run.sh
#
# Needs: ../shared/bench/setup_envs.sh done, train_models.py run for $WORK, .venv installed.
# Keep the machine otherwise idle (check `uptime`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BENCH=${BENCH:-$(cd "$ROOT/../shared/bench" && pwd)}
WORK=${WORK:-/tmp/bench-work}
ROUNDS=${ROUNDS:-2}
CONC=${CONC:-1,64}
BATCHES=${BATCHES:-1}
TAG=${TAG:-$(date +%Y%m%d-%H%M)}
OUT="$ROOT/hack/bench/serving/results"
# The targets name this checkout's server as {root}: rendered here for the harness.
mkdir -p "$WORK"
TARGETS="$WORK/targets.modelfactory.json"
sed "s|{root}|$ROOT|g" "$ROOT/hack/bench/serving/targets.modelfactory.json" > "$TARGETS"
RF_TARGETS=${RF_TARGETS:-kserve-quiet,mlserver-batch,baseline-raw-v2,mf-rf,mf-rf-sklearn}
LR_TARGETS=${LR_TARGETS:-kserve-quiet,mlserver-pw0,baseline-raw-v2,mf-lr,mf-lr-sklearn}
mkdir -p "$OUT"

"$ROOT/.venv/bin/python" "$ROOT/hack/bench/serving/convert_models.py" --work "$WORK"
uptime
for model in rf lr; do
  only=$RF_TARGETS; [ "$model" = lr ] && only=$LR_TARGETS
  python3 "$BENCH/bench.py" --interleave --rounds "$ROUNDS" --work "$WORK" \
    --targets-file "$BENCH/targets.anchors.json" --targets-file "$TARGETS" \
    --only "$only" --models "$model" --batches "$BATCHES" --concurrency "$CONC" \
    --label "modelfactory vs anchors, $model" --out "$OUT/$TAG-$model.json"
done
python3 "$BENCH/report.py" "$OUT/$TAG-rf.json" "$OUT/$TAG-lr.json" > "$OUT/$TAG.md"
echo "results: $OUT/$TAG-{rf,lr}.json  table: $OUT/$TAG.md"
