#!/usr/bin/env bash
# Command 1 of the README: set everything up (first run only) and serve the dashboard at http://localhost:5006.
# Extra arguments go to `workbench serve` (e.g. --port 5007, --address 0.0.0.0).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
VENV="${WORKBENCH_VENV:-$ROOT/.venv}"
SHOW=()
if [[ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" || "$(uname)" == "Darwin" ]]; then SHOW=(--show); fi
exec "$VENV/bin/workbench" serve "${SHOW[@]}" "$@"
