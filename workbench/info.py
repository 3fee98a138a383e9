"""What this installation is: versions, numba threading layer, CUDA, the default model and its cache.

>>> report = environment_report()
>>> sorted(report)[:3]
['cache', 'cuda', 'model']
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any

from workbench.paths import cache_dir

_PACKAGES = ("numpy", "numba", "torch", "transformers", "gguf", "safetensors", "panel", "bokeh",
             "tokenizers", "tiktoken", "sentencepiece")


def package_versions() -> dict[str, str | None]:
    """Installed version of each package the workbench uses (``None`` when absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("token-workbench", *_PACKAGES):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def numba_threading_layer() -> str:
    """The threading layer numba actually uses here (found by running a tiny parallel kernel)."""
    import numba
    import numpy as np

    @numba.njit(parallel=True, cache=False)
    def _touch(x):
        for i in numba.prange(x.shape[0]):
            x[i] += 1.0
        return x

    _touch(np.zeros(4))
    try:
        return numba.threading_layer()
    except ValueError:
        return "none (no parallel region ran)"


def cuda_report() -> dict[str, Any]:
    """CUDA availability as torch and numba see it."""
    out: dict[str, Any] = {}
    try:
        import torch

        out["torch"] = bool(torch.cuda.is_available())
        if out["torch"]:
            out["device"] = torch.cuda.get_device_name(0)
    except ImportError:
        out["torch"] = None
    try:
        from numba import cuda

        out["numba"] = bool(cuda.is_available())
    except Exception:  # numba.cuda raises assorted errors when no driver is present
        out["numba"] = False
    return out


def model_report() -> dict[str, Any]:
    """Whether the default model and its converted cache are present, and where."""
    from workbench.errors import ModelNotFoundError
    from workbench.models.loading import (
        DEFAULT_MODEL_INSTALL,
        DEFAULT_MODEL_NAME,
        converted_cache_path,
        default_gguf_path,
    )

    out: dict[str, Any] = {"name": DEFAULT_MODEL_NAME}
    try:
        gguf = default_gguf_path()
    except ModelNotFoundError:
        out.update(installed=False, install=DEFAULT_MODEL_INSTALL)
        return out
    folder = converted_cache_path(gguf)
    out.update(
        installed=True,
        gguf=str(gguf),
        gguf_mb=round(gguf.stat().st_size / 2**20, 1),
        converted=(folder / "model.safetensors").is_file(),
        converted_path=str(folder),
    )
    return out


def environment_report() -> dict[str, Any]:
    """Everything ``workbench info`` prints, as a dict."""
    return {
        "python": sys.executable,
        "platform": platform.platform(),
        "versions": package_versions(),
        "numba_threading_layer": numba_threading_layer(),
        "cuda": cuda_report(),
        "model": model_report(),
        "cache": str(cache_dir()),
    }
