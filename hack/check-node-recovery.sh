#!/usr/bin/env bash
# A node left half up by a killed run: every process of the cluster is SIGKILLed while a pod runs
# on the real node; `up` must clean the leftovers and come up again, and `down` must leave nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 hack/cluster.py up --no-kuberay
eval "$(python3 hack/cluster.py env)"
base=$(python3 hack/cluster.py status | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"]["base"])')
python3 hack/cluster.py pin-namespace recovery
kubectl run sleeper -n recovery --image="$base" --image-pull-policy=Never --command -- sleep 600
kubectl wait pod/sleeper -n recovery --for=condition=Ready --timeout=120s
state=$(python3 hack/cluster.py status | python3 -c 'import json,sys; print(json.load(sys.stdin)["state_dir"])')
echo "killing every process of the cluster: $(ls "$state/pids" | tr '\n' ' ')"
for f in "$state"/pids/*; do kill -9 "$(cat "$f")" 2>/dev/null || true; done
sleep 2
python3 hack/cluster.py up --no-kuberay
kubectl wait node/mf-node --for=condition=Ready --timeout=120s
python3 hack/cluster.py down
python3 hack/cluster.py leftovers
