#!/usr/bin/env bash
# Command 2 of the README: set everything up (first run only, Chromium included) and run the whole test suite:
# ruff, then pytest over every tier except `slow` (unit, notebooks, ui; gpu tests skip without CUDA).
# Extra arguments go to pytest (e.g. -m "not ui", -k overview, -x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" --tests
VENV="${WORKBENCH_VENV:-$ROOT/.venv}"
cd "$ROOT"
"$VENV/bin/ruff" check .
exec "$VENV/bin/python" -m pytest "$@"
