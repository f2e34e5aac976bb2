#!/usr/bin/env bash
# This checkout's server against a previous build's, in ONE interleaved run of the shared harness
# (the only fair comparison on a shared, noisy machine: both builds see the same noise).
#
#   bash hack/bench/serving/compare_builds.sh main
#   ROUNDS=1 CONC=64 bash hack/bench/serving/compare_builds.sh main
#   MODELS=lr bash hack/bench/serving/compare_builds.sh <commit>
#
# The previous build is a `git worktree` of <git-ref> at a temporary path; both builds run with
# the same venv (this checkout's .venv), each with PYTHONPATH pointing at its own src dirs, as
# targets mf-<model> (this checkout) and mf-<model>-prev. Needs what run.sh needs: wrk
# (../shared/bench/setup_envs.sh) and the harness's models (train_models.py --work $WORK).
# Prints the harness's table per model; BENCH_REF makes the previous build the reference of
# the summary's relative throughput.
set -euo pipefail
REF=${1:?usage: compare_builds.sh <git-ref>}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BENCH=${BENCH:-$(cd "$ROOT/../shared/bench" && pwd)}
WORK=${WORK:-/tmp/bench-work}
ROUNDS=${ROUNDS:-2}
CONC=${CONC:-1,64}
BATCHES=${BATCHES:-1}
MODELS=${MODELS:-rf,lr}
TAG=${TAG:-$(date +%Y%m%d-%H%M)-vs-$(echo "$REF" | tr '/' '-')}
OUT="$ROOT/hack/bench/serving/results"
PREV=$(mktemp -d /tmp/mf-prev-XXXXXX)

command -v wrk >/dev/null || { echo "wrk is missing: run ../shared/bench/setup_envs.sh" >&2; exit 1; }
[ -f "$WORK/models/rf.joblib" ] || "$ROOT/.venv/bin/python" "$BENCH/train_models.py" --work "$WORK"

cleanup() { git -C "$ROOT" worktree remove --force "$PREV" >/dev/null 2>&1 || rm -rf "$PREV"; }
trap cleanup EXIT
git -C "$ROOT" worktree add --detach --quiet "$PREV" "$REF"
echo "previous build: $REF = $(git -C "$PREV" rev-parse --short HEAD); this build: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo ' + uncommitted changes')"

# Each build serves artifacts written by its own converter (metadata.json gains fields the
# other build may refuse): this one's under $WORK/modelfactory, the previous one's under
# $WORK/prev/modelfactory (same fitted models).
PYTHONPATH="$ROOT/api/src:$ROOT/artifacts/src:$ROOT/serving/src:$ROOT/training/src" \
  "$ROOT/.venv/bin/python" "$ROOT/hack/bench/serving/convert_models.py" --work "$WORK" >/dev/null
mkdir -p "$WORK/prev"
ln -sfn "$WORK/models" "$WORK/prev/models"
PYTHONPATH="$PREV/api/src:$PREV/artifacts/src:$PREV/serving/src:$PREV/training/src" \
  "$ROOT/.venv/bin/python" "$PREV/hack/bench/serving/convert_models.py" --work "$WORK/prev" \
  >/dev/null

# Both builds' targets, from targets.modelfactory.json: PYTHONPATH names whose code runs.
TARGETS="$WORK/targets.compare.json"
"$ROOT/.venv/bin/python" - "$ROOT" "$PREV" "$TARGETS" <<'EOF'
import json, sys
root, prev, out = sys.argv[1:]
doc = json.loads(open(f"{root}/hack/bench/serving/targets.modelfactory.json").read()
                 .replace("{root}", root))
targets = []
for t in doc["targets"]:
    if t["name"] not in ("mf-rf", "mf-lr"):
        continue
    for suffix, src, port_shift in (("", root, 0), ("-prev", prev, 20)):
        c = json.loads(json.dumps(t).replace("{work}/modelfactory/",
                                             "{work}/prev/modelfactory/" if suffix else
                                             "{work}/modelfactory/"))
        c["name"] = t["name"] + suffix
        port = int(c["env"]["MF_PORT"]) + port_shift
        c["env"]["MF_PORT"] = str(port)
        c["url"] = f"http://127.0.0.1:{port}"
        c["env"]["PYTHONPATH"] = f"{src}/api/src:{src}/artifacts/src:{src}/serving/src"
        c["notes"] = f"{t['notes']}; code from {src}"
        targets.append(c)
json.dump({"targets": targets}, open(out, "w"), indent=2)
EOF

mkdir -p "$OUT"
uptime
files=()
for model in ${MODELS//,/ }; do
  python3 "$BENCH/bench.py" --interleave --rounds "$ROUNDS" --work "$WORK" --no-anchors \
    --targets-file "$TARGETS" --only "mf-$model,mf-$model-prev" --models "$model" \
    --batches "$BATCHES" --concurrency "$CONC" --no-inprocess \
    --label "modelfactory $(git -C "$ROOT" rev-parse --short HEAD) vs $REF, $model" \
    --out "$OUT/$TAG-$model.json"
  BENCH_REF="mf-$model-prev" python3 "$BENCH/report.py" "$OUT/$TAG-$model.json" \
    > "$OUT/$TAG-$model.md"
  cat "$OUT/$TAG-$model.md"
  files+=("$OUT/$TAG-$model.json")
done
uptime
echo "results: ${files[*]}"
