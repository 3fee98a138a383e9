"""`KVTrace`: what one forward pass of a causal LM leaves behind for KV-cache studies.

A trace covers ``T`` tokens: the first ``n_prefill`` are the context (prefill) and the remaining ``S = T - n_prefill``
are decode steps (teacher-forced: step ``s`` is the query at position ``n_prefill + s``). Arrays (``L`` captured
layers, ``H`` KV heads, ``Q`` query heads, ``D`` head dim, ``W`` observation window):

================  =====================  =======  =====================================================
field             shape                  dtype    meaning
================  =====================  =======  =====================================================
keys, values      [L, H, T, D]           float16  post-RoPE keys and values as stored in the cache
queries           [L, Q, T, D]           float16  post-RoPE queries of every query head
attn              [L, H, S, T]           A        attention of each decode step over all positions (zero
                                                  beyond the query), query heads aggregated onto their KV
                                                  head by ``gqa`` ("mean" or "max")
attn_heads        [L, Q, S + 1, T]       A        the same per query head, for the last context query (row
                                                  0) and every decode step (rows 1..S): what TOVA's
                                                  layer-wide rule renormalises head by head
prefill_colsum    [L, H, n_prefill]      float32  attention each context token received from all prefill
                                                  queries (H2O's accumulated score), aggregated like attn
obs_attn          [L, H, W, n_prefill]   A        attention of the last W prefill queries (SnapKV window)
obs_votes_heads   [L, Q, n_prefill]      float32  per query head, attention summed over those W queries
================  =====================  =======  =====================================================

``A`` is the capture's ``attn_dtype``: float16 by default (half the memory; near-tied selections can flip against a
float32 reference, about 1 set in 50 at a 50% budget), or float32 for exact comparisons with float32 code.
Traces saved before ``attn_heads`` existed load with ``attn_heads=None``; only the layer-wide TOVA needs it.

Example::

    tr = capture("The cat sat on the mat. " * 20, decode_steps=16)
    tr.n_tokens, tr.n_steps, tr.keys.shape      # (121, 16, (30, 3, 121, 64))
    tr.save("cat.safetensors"); KVTrace.load("cat.safetensors")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.errors import KVCacheError, TraceMismatchError
from workbench.saving import atomic_path, refuse_existing

_ARRAYS = ("token_ids", "layers", "keys", "values", "queries", "attn", "prefill_colsum", "obs_attn", "obs_votes_heads")
_OPTIONAL = ("attn_heads",)
_FORMATS = ("workbench-kvtrace-1", "workbench-kvtrace-2")  # 2 added attn_heads


def model_signature(model) -> dict:
    """What identifies a model for trace compatibility: architecture, layer/head counts, head dim, vocabulary size
    and the name it was loaded from."""
    c = model.config
    heads = int(c.num_attention_heads)
    return {
        "name": str(getattr(c, "_name_or_path", "") or getattr(c, "name_or_path", "")),
        "architecture": type(model).__name__,
        "n_layers": int(c.num_hidden_layers),
        "n_heads": heads,
        "n_kv_heads": int(getattr(c, "num_key_value_heads", None) or heads),
        "head_dim": int(getattr(c, "head_dim", None) or c.hidden_size // heads),
        "vocab_size": int(c.vocab_size),
    }


@dataclass
class KVTrace:
    """Keys, values, queries and attention of one text through one model (see the module docstring for shapes)."""

    text: str
    tokens: list[str]
    token_ids: np.ndarray
    n_prefill: int
    layers: np.ndarray
    gqa: str
    keys: np.ndarray
    values: np.ndarray
    queries: np.ndarray
    attn: np.ndarray
    prefill_colsum: np.ndarray
    obs_attn: np.ndarray
    obs_votes_heads: np.ndarray
    attn_heads: np.ndarray | None = None
    model: dict = field(default_factory=dict)
    scaling: float = 0.125
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def cached(self, key, compute):
        """``compute()``, computed once per ``key`` (hashable) and kept on the trace: the float32 copies (`f32`),
        per-layer statistics such as the keys' scatter matrix FASA calibrates on, and the torch path's device
        copies. Replays read the same layers again and again, whatever the policy or budget."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def f32(self, name: str, index: int) -> np.ndarray:
        """``getattr(self, name)[index]`` as float32, cached (`cached`)."""
        return self.cached(("f32", name, int(index)),
                           lambda: np.ascontiguousarray(getattr(self, name)[index], dtype=np.float32))

    @property
    def n_tokens(self) -> int:
        return int(self.token_ids.shape[0])

    @property
    def n_steps(self) -> int:
        return self.n_tokens - self.n_prefill

    @property
    def n_layers(self) -> int:
        return int(self.layers.shape[0])

    @property
    def n_kv_heads(self) -> int:
        return int(self.keys.shape[1])

    @property
    def n_query_heads(self) -> int:
        return int(self.queries.shape[1])

    @property
    def head_dim(self) -> int:
        return int(self.keys.shape[3])

    @property
    def group_size(self) -> int:
        return self.n_query_heads // self.n_kv_heads

    @property
    def obs_window(self) -> int:
        return int(self.obs_attn.shape[2])

    def layer_index(self, model_layer: int) -> int:
        """Index into the trace's arrays of model layer ``model_layer``."""
        hits = np.nonzero(self.layers == model_layer)[0]
        if hits.size == 0:
            raise KVCacheError(f"layer {model_layer} was not captured; this trace has layers {self.layers.tolist()}")
        return int(hits[0])

    @property
    def attn_dtype(self) -> str:
        """"float16" or "float32": how the attention arrays are stored (`capture`'s ``attn_dtype``)."""
        return str(self.attn.dtype)

    def nbytes(self) -> int:
        return int(sum(getattr(self, k).nbytes for k in _ARRAYS + _OPTIONAL if getattr(self, k) is not None))

    def check_model(self, model) -> None:
        """Raise `TraceMismatchError` unless ``model`` has the signature this trace was captured with."""
        sig = model_signature(model)
        keys = ("architecture", "n_layers", "n_heads", "n_kv_heads", "head_dim", "vocab_size")
        diff = {k: (self.model.get(k), sig[k]) for k in keys if self.model.get(k) != sig[k]}
        if diff:
            raise TraceMismatchError(
                f"this trace was captured from {self.model.get('name') or 'another model'!r} and does not fit "
                f"{sig['name']!r}: " + ", ".join(f"{k} {a} != {b}" for k, (a, b) in diff.items())
                + "; capture the text again with this model"
            )

    def save(self, path, *, overwrite: bool = False) -> Path:
        """Write the trace as one safetensors file (arrays + JSON metadata). Refuses to replace an existing file
        unless ``overwrite``; the old file survives a failed write."""
        from safetensors.numpy import save_file

        path = refuse_existing(path, overwrite=overwrite, error=KVCacheError)
        meta = {"text": self.text, "tokens": json.dumps(self.tokens), "n_prefill": str(self.n_prefill),
                "gqa": self.gqa, "model": json.dumps(self.model), "scaling": repr(float(self.scaling)),
                "format": _FORMATS[-1]}
        names = _ARRAYS + tuple(k for k in _OPTIONAL if getattr(self, k) is not None)
        with atomic_path(path, overwrite=overwrite, error=KVCacheError) as tmp:
            save_file({k: np.ascontiguousarray(getattr(self, k)) for k in names}, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path) -> KVTrace:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise KVCacheError(f"no trace file at {path}")
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                if meta.get("format") not in _FORMATS:
                    raise KVCacheError(f"{path} is not a workbench KV trace (no 'workbench-kvtrace' format metadata)")
                arrays = {k: f.get_tensor(k) for k in _ARRAYS}
                arrays.update({k: f.get_tensor(k) for k in _OPTIONAL if k in f.keys()})
        except KVCacheError:
            raise
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise KVCacheError(f"could not read the trace {path}: {exc}") from exc
        return cls(text=meta["text"], tokens=json.loads(meta["tokens"]), n_prefill=int(meta["n_prefill"]),
                   gqa=meta["gqa"], model=json.loads(meta["model"]), scaling=float(meta["scaling"]), **arrays)

    def __repr__(self) -> str:
        return (f"KVTrace({self.n_tokens} tokens = {self.n_prefill} prefill + {self.n_steps} decode steps, "
                f"{self.n_layers} layers x {self.n_kv_heads} KV heads ({self.n_query_heads} query heads, gqa={self.gqa}), "
                f"{self.nbytes() / 1e6:.1f} MB, model={self.model.get('name', '?')!r})")


def check_same_trace(trace: KVTrace, other: KVTrace) -> None:
    if trace.model != other.model or not np.array_equal(trace.token_ids, other.token_ids):
        raise TraceMismatchError("the two traces come from different texts or models")
