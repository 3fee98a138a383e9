"""`RoutingTrace`: router logits of a batch of tokens through every MoE layer of a model, with what each token is.

``L`` MoE layers, ``T`` tokens (several sequences concatenated), ``E`` experts:

============  ================  ===========================================================================
field         shape / type      meaning
============  ================  ===========================================================================
logits        float32 [L, T, E] router logits (before softmax/sigmoid)
token_ids     int32 [T]         vocabulary ids
positions     int32 [T]         position of each token inside its sequence
sequence_ids  int32 [T]         which sequence each token belongs to
tags          list[str] [T]     a label per token (domain, language ...); "" when unknown
tokens        list[str] or None the token strings, when known
meta          dict              JSON-able facts: model name, layer numbers, corpus ...
bias          float32 [L, E]    per-layer selection bias of the model's gate (DeepSeek-V3's
              or None           ``e_score_correction_bias``), None when the router has none
============  ================  ===========================================================================

`RoutingTrace.router_params` gives the keyword arguments that replay layer ``i`` with the model's own router
(``meta["router_params"]`` plus that layer's ``bias``). Files written before ``bias`` existed load with
``bias=None``.

Example::

    tr = synthetic_trace(n_layers=2, n_tokens=64, n_experts=8, seed=0)
    tr.logits.shape, tr.n_sequences             # (2, 64, 8), 4
    tr.save("moe.safetensors"); RoutingTrace.load("moe.safetensors")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.errors import RoutingError
from workbench.saving import atomic_path, refuse_existing

FORMAT = "workbench-routingtrace-1"
_ARRAYS = ("logits", "token_ids", "positions", "sequence_ids")


def _int_array(name: str, value, n: int) -> np.ndarray:
    a = np.asarray(value)
    if a.shape != (n,):
        raise RoutingError(f"{name} must have one entry per token ({n}), got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise RoutingError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
        raise RoutingError(f"{name} do not fit in int32")
    return np.ascontiguousarray(a, dtype=np.int32)


@dataclass
class RoutingTrace:
    """Router logits of ``T`` tokens through ``L`` MoE layers (see the module docstring for the fields)."""

    logits: np.ndarray
    token_ids: np.ndarray
    positions: np.ndarray
    sequence_ids: np.ndarray
    tags: list = field(default_factory=list)
    tokens: list | None = None
    meta: dict = field(default_factory=dict)
    bias: np.ndarray | None = None

    def __post_init__(self):
        x = np.asarray(self.logits)
        if x.ndim != 3:
            raise RoutingError(f"logits must be 3-D [layers, tokens, experts], got shape {x.shape}")
        if 0 in x.shape:
            raise RoutingError(f"logits have an empty axis {x.shape}; a trace needs >= 1 layer, token and expert")
        if not np.issubdtype(x.dtype, np.number):
            raise RoutingError(f"logits must be numeric, got dtype {x.dtype}")
        with np.errstate(over="ignore"):  # values beyond float32 become inf, reported just below
            self.logits = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(self.logits).all():
            raise RoutingError("logits contain NaN or infinite values (after conversion to float32)")
        n = self.logits.shape[1]
        self.token_ids = _int_array("token_ids", self.token_ids, n)
        self.positions = _int_array("positions", self.positions, n)
        self.sequence_ids = _int_array("sequence_ids", self.sequence_ids, n)
        if not self.tags:
            self.tags = [""] * n
        self.tags = [str(t) for t in self.tags]
        if len(self.tags) != n:
            raise RoutingError(f"tags must have one label per token ({n}), got {len(self.tags)}")
        if self.tokens is not None:
            self.tokens = [str(t) for t in self.tokens]
            if len(self.tokens) != n:
                raise RoutingError(f"tokens must have one string per token ({n}), got {len(self.tokens)}")
        if not isinstance(self.meta, dict):
            raise RoutingError(f"meta must be a dict, got {type(self.meta).__name__}")
        if self.bias is None and "bias" in self.meta:  # tiny-MoE traces saved before the field held their bias
            self.meta = dict(self.meta)
            self.bias = self.meta.pop("bias")
        if self.bias is not None:
            b = np.asarray(self.bias)
            if b.shape != (self.n_layers, self.n_experts):
                raise RoutingError(f"bias must have one value per layer and expert "
                                   f"({self.n_layers}, {self.n_experts}), got shape {b.shape}")
            if not np.issubdtype(b.dtype, np.number) or not np.isfinite(b).all():
                raise RoutingError("bias must hold finite numbers")
            self.bias = np.ascontiguousarray(b, dtype=np.float32)

    @property
    def n_layers(self) -> int:
        return int(self.logits.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.logits.shape[1])

    @property
    def n_experts(self) -> int:
        return int(self.logits.shape[2])

    @property
    def n_sequences(self) -> int:
        return int(np.unique(self.sequence_ids).size)

    def layer(self, index: int) -> np.ndarray:
        """float32 [T, E]: the router logits of layer ``index`` (an index into this trace's layers)."""
        if not -self.n_layers <= int(index) < self.n_layers:
            raise RoutingError(f"layer {index} is out of range; this trace has {self.n_layers} layers")
        return self.logits[int(index)]

    def router_params(self, index: int) -> dict:
        """Keyword arguments replaying layer ``index`` with the model's own router: ``meta["router_params"]``
        plus, when the trace has one, that layer's ``bias`` (float64 [E]).
        ``route(tr.layer(i), tr.meta["router"], **tr.router_params(i))``."""
        self.layer(index)  # the range check
        params = dict(self.meta.get("router_params") or {})
        if self.bias is not None:
            params["bias"] = self.bias[int(index)].astype(np.float64)
        return params

    def select(self, tokens) -> RoutingTrace:
        """A new trace of some tokens, in the given order: ``tokens`` is a bool mask [T] or token indices.
        ``tr.select(np.isin(tr.sequence_ids, [0, 5]))`` keeps two sequences; meta is shared (copied)."""
        idx = np.asarray(tokens)
        if idx.dtype == bool:
            if idx.shape != (self.n_tokens,):
                raise RoutingError(f"a token mask must have one entry per token ({self.n_tokens}), got {idx.shape}")
            idx = np.flatnonzero(idx)
        elif not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1:
            raise RoutingError("select takes a bool mask or a 1-D array of token indices")
        if idx.size == 0:
            raise RoutingError("select would leave no token")
        if idx.min() < -self.n_tokens or idx.max() >= self.n_tokens:
            raise RoutingError(f"token index out of range for a trace of {self.n_tokens} tokens")
        return RoutingTrace(logits=self.logits[:, idx], token_ids=self.token_ids[idx], positions=self.positions[idx],
                            sequence_ids=self.sequence_ids[idx], tags=[self.tags[i] for i in idx],
                            tokens=None if self.tokens is None else [self.tokens[i] for i in idx],
                            meta=dict(self.meta), bias=self.bias)

    def save(self, path, *, overwrite: bool = False) -> Path:
        """Write one safetensors file (arrays; tags, tokens and meta as JSON metadata). Refuses to replace an
        existing file unless ``overwrite``; the old file survives a failed write."""
        from safetensors.numpy import save_file

        path = refuse_existing(path, overwrite=overwrite, error=RoutingError)
        try:
            meta_json = json.dumps(self.meta)
        except (TypeError, ValueError) as exc:
            raise RoutingError(f"meta must be JSON-serialisable to be saved: {exc}") from exc
        header = {"format": FORMAT, "tags": json.dumps(self.tags), "meta": meta_json,
                  "tokens": json.dumps(self.tokens)}
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        if self.bias is not None:
            arrays["bias"] = self.bias
        with atomic_path(path, overwrite=overwrite, error=RoutingError) as tmp:
            save_file(arrays, str(tmp), metadata=header)
        return path

    @classmethod
    def load(cls, path) -> RoutingTrace:
        """Read a trace written by `save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise RoutingError(f"no routing trace file at {path}")
        try:
            with safe_open(str(path), framework="numpy") as f:
                header = f.metadata() or {}
                if header.get("format") != FORMAT:
                    raise RoutingError(f"{path} is not a workbench routing trace (no {FORMAT!r} metadata)")
                arrays = {k: f.get_tensor(k) for k in _ARRAYS}
                if "bias" in f.keys():  # absent from files of traces without a gate bias (and older files)
                    arrays["bias"] = f.get_tensor("bias")
            text = {k: json.loads(header[k]) for k in ("tags", "meta", "tokens")}
        except RoutingError:
            raise
        except Exception as exc:  # safetensors / json raise their own types for corrupt or truncated files
            raise RoutingError(f"could not read the routing trace {path}: {exc}") from exc
        return cls(**arrays, **text)

    def __repr__(self) -> str:
        tags = sorted(set(self.tags) - {""})
        return (f"RoutingTrace({self.n_layers} layers x {self.n_tokens} tokens x {self.n_experts} experts, "
                f"{self.n_sequences} sequences, tags {tags[:6]}{' ...' if len(tags) > 6 else ''}, "
                f"model={self.meta.get('model', '?')!r})")


def synthetic_trace(*, n_layers: int = 2, n_tokens: int = 256, n_experts: int = 8, n_sequences: int = 4,
                    skew: float = 1.0, seed: int = 0) -> RoutingTrace:
    """A random trace for demos and tests: ``n_sequences`` equal-length sequences, each tagged ``domain{s % 2}``
    whose tokens lean towards a domain's favourite experts by ``skew`` (0 = no preference).

    ``synthetic_trace(n_tokens=8, n_sequences=2).positions -> [0, 1, 2, 3, 0, 1, 2, 3]``.
    """
    if n_tokens < 1 or n_layers < 1 or n_experts < 1 or not 1 <= n_sequences <= n_tokens:
        raise RoutingError("synthetic_trace needs n_layers, n_tokens, n_experts >= 1 and 1 <= n_sequences <= n_tokens")
    rng = np.random.default_rng(seed)
    seq = np.repeat(np.arange(n_sequences), -(-n_tokens // n_sequences))[:n_tokens]
    starts = np.searchsorted(seq, seq)
    positions = np.arange(n_tokens) - starts
    domain = seq % 2
    prefer = rng.normal(size=(2, n_experts)) * skew
    logits = rng.normal(size=(n_layers, n_tokens, n_experts)) + prefer[domain][None]
    return RoutingTrace(logits=logits.astype(np.float32), token_ids=rng.integers(0, 1000, n_tokens),
                        positions=positions, sequence_ids=seq, tags=[f"domain{d}" for d in domain],
                        meta={"model": "synthetic", "seed": seed, "skew": skew})
