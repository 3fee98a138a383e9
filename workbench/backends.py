"""Which backend computes: the Numba kernels on the CPU, or torch (on a CUDA GPU when there is one).

One rule for every lab that has both (KV-cache replay, MoE routing): ``backend="numba"`` always takes the Numba
kernels, ``"torch"`` the torch implementation (on CUDA when available, else the CPU), and ``"auto"`` torch only
when a CUDA GPU is present. Both give the same result; see each lab's torch module for the exact contract.

>>> use_torch("numba"), use_torch("auto") == cuda_available()
(False, True)
"""

from __future__ import annotations

import ctypes.util
import functools
import os
import sys
from typing import Literal

from workbench.errors import ConfigurationError

Backend = Literal["auto", "numba", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "numba", "torch")


@functools.cache
def cuda_available() -> bool:
    """torch sees a CUDA GPU. Without an NVIDIA driver on the machine this is False without importing torch
    (seconds), so the Numba path never waits for it."""
    if "torch" not in sys.modules and not (os.path.exists("/proc/driver/nvidia/version")
                                           or ctypes.util.find_library("cuda")):
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def use_torch(backend: str, error: type[Exception] = ConfigurationError) -> bool:
    """Whether ``backend`` (one of `BACKENDS`) means the torch implementation; ``error`` for anything else."""
    if backend not in BACKENDS:
        raise error(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    return backend == "torch" or (backend == "auto" and cuda_available())


def torch_device(device=None):
    """``device`` as a ``torch.device``; by default CUDA when available, else the CPU."""
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if cuda_available() else "cpu")
