"""`capture`: run a text through a causal LM and keep what KV-cache policies need (a `KVTrace`).

Example::

    from workbench.kvcache import capture
    tr = capture(open("notes.txt").read(), decode_steps=64)          # default SmolLM2, all 30 layers
    tr = capture(text, layers=[0, 15, 29], gqa="max", generate=32)  # 32 greedy tokens become the decode steps
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.errors import KVCacheError
from workbench.kvcache.capture_runner import CaptureRunner, default_capture_runner
from workbench.kvcache.trace import KVTrace, model_signature


def runner_for(model=None, tokenizer=None) -> CaptureRunner:
    if isinstance(model, CaptureRunner):
        return model
    return default_capture_runner() if model is None else CaptureRunner(model, tokenizer)


def split_prefill(n_tokens: int, decode_steps: int | None, prefill: int | None) -> int:
    """Number of prefill tokens for a text of ``n_tokens`` given either ``decode_steps`` or ``prefill``."""
    if prefill is not None:
        n_pre = int(prefill)
    else:
        steps = 32 if decode_steps is None else int(decode_steps)
        if steps < 1:
            raise KVCacheError(f"decode_steps must be >= 1, got {steps}")
        n_pre = n_tokens - steps
    if not 1 <= n_pre < n_tokens:
        raise KVCacheError(
            f"the text has {n_tokens} tokens, too few for {n_tokens - n_pre} decode steps after a non-empty "
            "context; give a longer text or fewer decode steps")
    return n_pre


def capture(text: str, model=None, *, tokenizer=None, layers: Sequence[int] | None = None,
            decode_steps: int | None = None, prefill: int | None = None, generate: int = 0, gqa: str = "mean",
            obs_window: int = 64, attn_dtype: str = "float16") -> KVTrace:
    """Capture a `KVTrace` of ``text`` through ``model`` (default SmolLM2-135M-Instruct; or a `CaptureRunner`).

    The last ``decode_steps`` tokens (default 32) are decode steps, or give ``prefill`` (number of context tokens).
    ``generate=N`` first appends N greedily generated tokens and makes them the decode steps. ``gqa`` aggregates
    the query heads of a group onto their KV head ("mean" or "max"). ``layers`` (model layer indices, default all)
    limits what is stored. ``obs_window`` is how many final prefill queries are kept for SnapKV-style votes.
    ``attn_dtype`` ("float16" or "float32") stores the attention arrays (``attn``, ``attn_heads``, ``obs_attn``):
    float32 doubles their memory and makes selections comparable exactly with float32 reference code.
    """
    if gqa not in ("mean", "max"):
        raise KVCacheError(f"gqa must be 'mean' or 'max', got {gqa!r}")
    if obs_window < 1:
        raise KVCacheError(f"obs_window must be >= 1, got {obs_window}")
    if attn_dtype not in ("float16", "float32"):
        raise KVCacheError(f"attn_dtype must be 'float16' or 'float32', got {attn_dtype!r}")
    runner = runner_for(model, tokenizer)
    ids = runner.encode(text)
    if generate:
        if generate < 1:
            raise KVCacheError(f"generate must be >= 0, got {generate}")
        n_pre = len(ids)
        ids = runner.greedy(ids, int(generate))
    else:
        n_pre = split_prefill(len(ids), decode_steps, prefill)
    return capture_ids(ids, n_pre, runner, layers=layers, gqa=gqa, obs_window=obs_window, text=text,
                       attn_dtype=attn_dtype)


def capture_ids(ids, n_prefill: int, model=None, *, tokenizer=None, layers: Sequence[int] | None = None,
                gqa: str = "mean", obs_window: int = 64, text: str | None = None,
                attn_dtype: str = "float16") -> KVTrace:
    """`capture` for token ids you already have (int [T]); the first ``n_prefill`` are the context."""
    if attn_dtype not in ("float16", "float32"):
        raise KVCacheError(f"attn_dtype must be 'float16' or 'float32', got {attn_dtype!r}")
    runner = runner_for(model, tokenizer)
    ids = np.asarray(ids, dtype=np.int64)
    runner.check_length(len(ids))
    if not 1 <= n_prefill < len(ids):
        raise KVCacheError(f"n_prefill must be in [1, {len(ids) - 1}] for {len(ids)} tokens, got {n_prefill}")
    if gqa not in ("mean", "max"):
        raise KVCacheError(f"gqa must be 'mean' or 'max', got {gqa!r}")
    layer_list = list(range(runner.n_layers)) if layers is None else sorted({int(x) for x in layers})
    if not layer_list or any(not 0 <= x < runner.n_layers for x in layer_list):
        raise KVCacheError(f"layers must be model layers in 0..{runner.n_layers - 1}, got {list(layers or [])}")
    arrays = runner.capture_arrays(ids, int(n_prefill), layer_list, gqa, obs_window, attn_dtype)
    scaling = float(arrays.pop("scaling"))
    tokens = runner.token_strings(ids)
    return KVTrace(text="".join(tokens) if text is None else text, tokens=tokens, token_ids=ids.astype(np.int32),
                   n_prefill=int(n_prefill), layers=np.asarray(layer_list, np.int32), gqa=gqa,
                   model=model_signature(runner.model), scaling=scaling, **arrays)
