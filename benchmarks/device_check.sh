#!/usr/bin/env bash
# GPU checks in one go (<= 8 minutes, no package index): prints one JSON report on stdout.
#   bash benchmarks/device_check.sh > device_check.json
# Uses the project's virtual environment when there is one (make setup), else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PIP_NO_INDEX=1 PYTHONUNBUFFERED=1
exec timeout "${DEVICE_CHECK_TIMEOUT_S:-540}" "$PY" benchmarks/device_check.py
