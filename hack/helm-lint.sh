#!/usr/bin/env bash
# helm lint --strict every chart, with the helm built by hack/cluster.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(python3 hack/cluster.py bin-path):$PATH"
for chart in charts/*/; do
  values=()
  [ -f "$chart/ci/example-values.yaml" ] && values=(--values "$chart/ci/example-values.yaml")
  helm lint --strict "$chart" "${values[@]}"
done
