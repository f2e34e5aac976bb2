#!/usr/bin/env bash
# Creates .venv (or reuses it) and installs the four components editable plus the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e api -e operator -e serving -e training -r requirements-dev.txt
echo "python environment ready: $(pwd)/.venv"
