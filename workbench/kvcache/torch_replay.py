"""Torch implementation of every KV policy's kept mask: the CUDA path of `replay` and the benchmark's anchor.

(Being written: see `replay_kept`.)
"""

from __future__ import annotations


def replay_kept(trace, policy, budget: int, layer_indices, *, seed: int = 0, device=None):
    """Kept mask bool [L, H, S, T] (numpy), per-layer budgets int64 [L] and the number of protected sinks, for
    ``policy`` (a filled-in `Policy`) at ``budget`` tokens over the trace layers ``layer_indices``; identical to
    the numba path. ``device`` defaults to CUDA when available, else CPU."""
    raise NotImplementedError("the torch backend is being written")
