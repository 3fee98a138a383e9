"""`CaptureRunner`: run a Hugging Face causal LM with the attention computed by the workbench.

It routes every attention layer through one function registered with transformers' attention interface, so the
same code works for any model that uses it (Llama, Mistral, Qwen2, Gemma ... with the default SmolLM2 as the
reference). Two uses, both single teacher-forced forward passes over a batch of one sequence:

* ``capture``: record post-RoPE queries/keys/values and attention summaries (see `KVTrace`);
* ``logits(ids, keep=...)``: run with a per-layer, per-KV-head mask of the cache positions each decode-step query may
  attend to. Because a token's keys and values at layer ``l`` depend only on what it attended to below ``l``, one
  masked pass over the whole sequence equals decoding token by token with that evicted cache.

Tokens, lengths and plain greedy decoding come from the shared runner (`workbench.models.runner`), which the
speculative-decoding lab uses for cached incremental and tree decoding.

Example::

    runner = CaptureRunner()                     # the default SmolLM2-135M-Instruct
    ids = runner.encode("Paris is the capital of")
    runner.logits(ids).shape                     # (6, 49152)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import numpy as np

from workbench.errors import KVCacheError
from workbench.models.runner import MODEL_LOCK
from workbench.models.runner import ModelRunner as BaseRunner

_IMPL = "workbench_kv"
_STATE = threading.local()
_REGISTERED = False


def _register() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface

    AttentionInterface.register(_IMPL, _dispatch)
    _REGISTERED = True


def _dispatch(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    hook = getattr(_STATE, "hook", None)
    if hook is None:
        raise KVCacheError("the workbench attention function was called outside CaptureRunner")
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    return hook(int(module.layer_idx), query, key, value, float(scaling)), None


def masked_attention(query, key, value, scaling: float, allowed=None, chunk: int = 512,
                     on_weights: Callable | None = None):
    """Causal attention for one sequence: ``query`` [1, Q, T, D], ``key``/``value`` [1, H, T, D] (Q = G * H).

    ``allowed`` (optional, bool tensor [H, R, T]) restricts the last R query rows to the marked key positions of
    their KV head. ``on_weights(r0, r1, weights[Q, r1-r0, T])`` sees the softmax weights of each row chunk.
    Returns the attention output as [1, T, Q, D] (the layout transformers expects).
    """
    import torch

    _, n_q, t, d = query.shape
    n_kv = key.shape[1]
    group = n_q // n_kv
    k = key[0].repeat_interleave(group, dim=0).float()
    v = value[0].repeat_interleave(group, dim=0).float()
    q = query[0].float()
    out = torch.empty((n_q, t, d), dtype=torch.float32, device=query.device)
    cols = torch.arange(t, device=query.device)
    first_masked = t - (0 if allowed is None else allowed.shape[1])
    for r0 in range(0, t, chunk):
        r1 = min(t, r0 + chunk)
        logits = torch.matmul(q[:, r0:r1], k.transpose(1, 2)) * scaling
        rows = torch.arange(r0, r1, device=query.device)
        block = cols[None, :] > rows[:, None]
        logits.masked_fill_(block[None], float("-inf"))
        if allowed is not None and r1 > first_masked:
            a0 = max(r0, first_masked)
            sub = allowed[:, a0 - first_masked:r1 - first_masked].repeat_interleave(group, dim=0)
            logits[:, a0 - r0:] = logits[:, a0 - r0:].masked_fill(~sub, float("-inf"))
        w = torch.softmax(logits, dim=-1)
        if on_weights is not None:
            on_weights(r0, r1, w)
        out[:, r0:r1] = torch.matmul(w, v)
    return out.to(query.dtype).transpose(0, 1).unsqueeze(0)


class CaptureRunner(BaseRunner):
    """The shared `workbench.models.runner.ModelRunner` plus the KV lab's hooked attention: capture (see the module
    docstring) and masked teacher-forced passes. Bad input raises `KVCacheError` here.

    ``model``/``tokenizer`` default to the shared SmolLM2-135M-Instruct. Only batch size 1 is supported.
    """

    error = KVCacheError

    # -- forward passes --------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _hooked(self, hook) -> Iterator[None]:
        import torch

        _register()
        called = []

        def counting(*a):
            called.append(1)
            return hook(*a)

        MODEL_LOCK.acquire()
        previous = self.model.config._attn_implementation
        _STATE.hook = counting
        try:
            self.model.set_attn_implementation(_IMPL)
            with torch.no_grad():
                yield
        finally:
            _STATE.hook = None
            self.model.set_attn_implementation(previous)
            MODEL_LOCK.release()
        if not called:
            raise KVCacheError(f"{type(self.model).__name__} does not compute attention through transformers' "
                               "attention interface, so the workbench cannot see or change its cache")

    def _run(self, ids: np.ndarray, hook, last: int | None = None) -> np.ndarray:
        import torch

        self.check_length(len(ids))
        x = torch.as_tensor(np.asarray(ids, dtype=np.int64)[None], device=self.model.device)
        extra = {} if last is None else {"logits_to_keep": int(last)}
        with self._hooked(hook):
            out = self.model(input_ids=x, use_cache=False, **extra)
        return out.logits[0].float().cpu().numpy()

    def logits(self, ids, *, n_prefill: int | None = None, keep: dict | None = None,
               last: int | None = None) -> np.ndarray:
        """Next-token logits (float32 [T, V]) for every position of ``ids`` (only the ``last`` positions when
        given, which skips most of the output-layer cost).

        ``keep`` maps a model layer to a bool array [H, S, T] (S = T - n_prefill): which positions decode step s
        may attend to in each KV head. Layers not in ``keep`` and all prefill rows use the full causal cache.
        """
        import torch

        ids = np.asarray(ids)
        t = len(ids)
        masks = {}
        if keep:
            if n_prefill is None:
                raise KVCacheError("logits(keep=...) needs n_prefill")
            for layer, m in keep.items():
                m = np.asarray(m, dtype=bool)
                if m.shape != (self.n_kv_heads, t - n_prefill, t):
                    raise KVCacheError(f"keep mask of layer {layer} has shape {m.shape}, expected "
                                       f"{(self.n_kv_heads, t - n_prefill, t)}")
                masks[int(layer)] = torch.as_tensor(m, device=self.model.device)

        def hook(layer, q, k, v, scaling):
            return masked_attention(q, k, v, scaling, allowed=masks.get(layer))

        return self._run(ids, hook, last)

    def capture_arrays(self, ids, n_prefill: int, layers, gqa: str, obs_window: int,
                       attn_dtype: str = "float16") -> dict:
        """The raw arrays of a `KVTrace` (see trace.py) for ``ids`` with ``n_prefill`` context tokens; the attention
        arrays in ``attn_dtype``."""

        t = len(ids)
        s = t - n_prefill
        w = min(obs_window, n_prefill)
        index = {int(layer): i for i, layer in enumerate(layers)}
        n_l, h, q, d = len(layers), self.n_kv_heads, self.n_heads, self.head_dim
        g = q // h
        arr = {
            "keys": np.zeros((n_l, h, t, d), np.float16), "values": np.zeros((n_l, h, t, d), np.float16),
            "queries": np.zeros((n_l, q, t, d), np.float16), "attn": np.zeros((n_l, h, s, t), attn_dtype),
            "attn_heads": np.zeros((n_l, q, s + 1, t), attn_dtype),
            "prefill_colsum": np.zeros((n_l, h, n_prefill), np.float32),
            "obs_attn": np.zeros((n_l, h, w, n_prefill), attn_dtype),
            "obs_votes_heads": np.zeros((n_l, q, n_prefill), np.float32),
        }
        scal = []

        def hook(layer, qs, ks, vs, scaling):
            li = index.get(layer)
            if li is None:
                return masked_attention(qs, ks, vs, scaling)
            scal.append(scaling)
            arr["keys"][li] = ks[0].float().cpu().numpy()
            arr["values"][li] = vs[0].float().cpu().numpy()
            arr["queries"][li] = qs[0].float().cpu().numpy()

            def on_weights(r0, r1, wts):
                grouped = wts.view(h, g, r1 - r0, t)
                agg = grouped.mean(1) if gqa == "mean" else grouped.amax(1)
                p0, p1 = r0, min(r1, n_prefill)
                if p1 > p0:
                    arr["prefill_colsum"][li] += agg[:, : p1 - r0, :n_prefill].sum(1).cpu().numpy()
                o0, o1 = max(r0, n_prefill - w), min(r1, n_prefill)
                if o1 > o0:
                    sl = slice(o0 - r0, o1 - r0)
                    arr["obs_attn"][li, :, o0 - (n_prefill - w):o1 - (n_prefill - w)] = (
                        agg[:, sl, :n_prefill].cpu().numpy())
                    arr["obs_votes_heads"][li] += wts[:, sl, :n_prefill].sum(1).cpu().numpy()
                h0 = max(r0, n_prefill - 1)  # the last context query, then every decode query
                if r1 > h0:
                    arr["attn_heads"][li, :, h0 - (n_prefill - 1):r1 - (n_prefill - 1)] = wts[:, h0 - r0:].cpu().numpy()
                d0 = max(r0, n_prefill)
                if r1 > d0:
                    arr["attn"][li, :, d0 - n_prefill:r1 - n_prefill] = agg[:, d0 - r0:].cpu().numpy()

            return masked_attention(qs, ks, vs, scaling, on_weights=on_weights)

        self._run(ids, hook, last=1)
        arr["scaling"] = scal[0] if scal else self.head_dim ** -0.5
        return arr


def default_capture_runner() -> CaptureRunner:
    """One shared capture runner over the shared default model."""
    if not hasattr(default_capture_runner, "_runner"):
        default_capture_runner._runner = CaptureRunner()
    return default_capture_runner._runner
