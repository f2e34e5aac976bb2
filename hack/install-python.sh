#!/usr/bin/env bash
# Creates .venv (or reuses it) and installs the four components editable plus the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e api -e artifacts -e operator -e "serving[s3,gcs]" -e "training[s3,gcs]" \
  -r requirements-dev.txt
# KServe's Python client pins versions that clash with the workspace's, so the test that uses it
# runs it from a virtualenv of its own.
if [ ! -x .venv-kserve/bin/python ] || ! .venv-kserve/bin/python -c "import kserve" 2>/dev/null; then
  "$PY" -m venv .venv-kserve
  .venv-kserve/bin/python -m pip install --quiet --upgrade pip
  .venv-kserve/bin/python -m pip install --quiet "kserve==0.21.0"
fi
echo "python environment ready: $(pwd)/.venv"
