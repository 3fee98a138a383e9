"""Shared fixtures and tier handling.

Tiers (pytest markers): unit (default), ``notebooks``, ``ui``, ``gpu`` (skipped without CUDA), ``slow`` (excluded
by default; run with ``-m slow``), ``model`` (needs the default SmolLM2 model, which the set-up installs).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium"))


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none is available here")
    has_cuda = _cuda_available()
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def default_model():
    """The shared (model, tokenizer) for SmolLM2-135M-Instruct, loaded once per test session."""
    from workbench.models import shared_default_model

    return shared_default_model()


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}; scripts/setup.sh --tests installs it (apt-get install chromium).")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


KV_TEXT_SLICE = slice(5000, 6600)


@pytest.fixture(scope="session")
def kv_text() -> str:
    """About 350 tokens of real English prose (Pride and Prejudice) for KV-cache tests."""
    from workbench.data import load_corpus

    return load_corpus("prose_en").paths[0].read_text(encoding="utf-8")[KV_TEXT_SLICE]


@pytest.fixture(scope="session")
def kv_trace(kv_text, default_model):
    """A real SmolLM2 KVTrace of ``kv_text``: all 30 layers, the last 24 tokens as decode steps (~1 s)."""
    from workbench.kvcache import capture

    return capture(kv_text, decode_steps=24)
