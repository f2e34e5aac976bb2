#!/usr/bin/env bash
# What measuring drift costs the server: the same server with drift on (mf-rf, mf-lr: the
# artifact has a reference profile, drift is on by default) and off (mf-*-nodrift,
# MF_DRIFT_ENABLED=false), interleaved in one harness run per model, batch 1, concurrency 64.
#
#   bash hack/bench/serving/drift_cost.sh              # rf and lr, 4 rounds
#   ROUNDS=2 CONC=1,64 bash hack/bench/serving/drift_cost.sh
#
# Needs: wrk, train_models.py run for $WORK (any venv with scikit-learn 1.9.1, .venv included),
# .venv installed. While the harness runs, each time the drift-on server has finished a cell its
# GET /v2/models/<name>/drift is read (during the other target's warm-up) and kept in
# results/<tag>-<model>-drift.jsonl: proof that drift was measured (window samples > 0) and
# what it concluded. Keep the machine otherwise idle (check `uptime`, recorded in the results).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BENCH=${BENCH:-$(cd "$ROOT/../shared/bench" && pwd)}
WORK=${WORK:-/tmp/bench-work}
ROUNDS=${ROUNDS:-4}
CONC=${CONC:-64}
BATCHES=${BATCHES:-1}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
TAG=${TAG:-$(date +%Y%m%d-%H%M)-drift}
OUT="$ROOT/hack/bench/serving/results"
mkdir -p "$WORK" "$OUT"
TARGETS="$WORK/targets.modelfactory.json"
sed "s|{root}|$ROOT|g" "$ROOT/hack/bench/serving/targets.modelfactory.json" > "$TARGETS"

"$ROOT/.venv/bin/python" "$ROOT/hack/bench/serving/convert_models.py" --work "$WORK" >/dev/null

# Reads the drift state of the drift-on target after each of its cells; ends with the harness.
watch_drift() {  # $1 results json, $2 target name, $3 url, $4 model, $5 harness pid, $6 output
  python3 - "$@" <<'EOF'
import json, os, pathlib, sys, time, urllib.request
results, target, url, model, pid, out = sys.argv[1:7]
seen, deadline = 0, time.time() + 3 * 3600
while time.time() < deadline and os.path.exists(f"/proc/{pid}"):
    time.sleep(0.3)
    try:
        runs = [r for r in json.loads(pathlib.Path(results).read_text())["runs"] if r["target"] == target]
    except (OSError, ValueError, KeyError):
        continue
    if len(runs) <= seen:
        continue
    seen = len(runs)
    try:
        with urllib.request.urlopen(f"{url}/v2/models/{model}/drift", timeout=5) as r:
            d = json.loads(r.read())
    except OSError as e:
        d = {"error": str(e)}
    rep = d.get("report") or {}
    line = {"after_cell": seen, "at": time.strftime("%H:%M:%S"), "enabled": d.get("enabled"),
            "reason": d.get("reason"), "window_samples": (d.get("window") or {}).get("samples"),
            "dropped": d.get("dropped"), "evaluated_at": d.get("evaluated_at"),
            "report_samples": rep.get("samples"), "drifted": rep.get("drifted"),
            "share": rep.get("share"), "error": d.get("error"),
            "loadavg": open("/proc/loadavg").read().split()[:3]}
    with open(out, "a") as f:
        f.write(json.dumps(line) + "\n")
    print("  drift state:", json.dumps(line), flush=True)
EOF
}

uptime
for model in rf lr; do
  res="$OUT/$TAG-$model.json"
  python3 "$BENCH/bench.py" --interleave --rounds "$ROUNDS" --work "$WORK" --no-inprocess \
    --targets-file "$TARGETS" --only "mf-$model,mf-$model-nodrift" \
    --models "$model" --batches "$BATCHES" --concurrency "$CONC" --duration "$DURATION" --warmup "$WARMUP" \
    --label "drift on vs off, $model" --out "$res" &
  harness=$!
  port=18110; [ "$model" = lr ] && port=18111
  watch_drift "$res" "mf-$model" "http://127.0.0.1:$port" "$model" "$harness" "$OUT/$TAG-$model-drift.jsonl" &
  watcher=$!
  wait "$harness"
  wait "$watcher" || true
  uptime
done
python3 "$BENCH/report.py" "$OUT/$TAG-rf.json" "$OUT/$TAG-lr.json" > "$OUT/$TAG.md"
echo "results: $OUT/$TAG-{rf,lr}.json, drift state: $OUT/$TAG-{rf,lr}-drift.jsonl, table: $OUT/$TAG.md"
