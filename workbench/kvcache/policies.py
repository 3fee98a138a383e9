"""KV-cache policies: a scorer plus a selector, described by a small `Policy` value.

Three kinds:

* ``eviction`` (query-agnostic, permanent): a position evicted from a KV head's cache never returns. ``phase``
  "prefill" compresses the context once after prefill and then appends every decode token (kvpress / SnapKV
  semantics: the budget is the compressed context); "decode" keeps the cache at ``budget`` positions at every
  decode step, the current token included (H2O / StreamingLLM / TOVA semantics).
* ``selection`` (query-aware, nothing is lost): at each decode step the query attends to ``budget`` positions
  chosen from the full cache (Quest, TokenSelect, FASA, HISA, the oracle).
* ``full``: the uncompressed cache.

=============  =========  ========  ==========================================================================
name           kind       phase     score (and selector)
=============  =========  ========  ==========================================================================
full           full       -         everything is kept
window         eviction   decode    sliding window: the last ``budget`` positions
recency        eviction   decode    control: score = position through the generic evictor (same as window)
random         eviction   decode    control: a fixed random priority per position (``seed``)
streaming_llm  eviction   decode    ``sinks`` first positions + the most recent ``budget - sinks``
h2o            eviction   decode    accumulated attention (renormalised over the cache) + ``recent`` window
tova           eviction   decode    attention of the latest query
snapkv         eviction   prefill   votes of the last ``window`` prefill queries, pooled (``kernel``, ``pooling``)
pyramidkv      eviction   prefill   SnapKV scores, per-layer budgets falling linearly with depth (``beta``)
adakv          eviction   prefill   SnapKV scores, one budget of H x budget shared by a layer's heads (``floor``)
kvcrush        eviction   prefill   ``base`` policy keeps (1 - ``fraction``); the rest are representatives chosen
                                    by head-behaviour binary signatures
quest          selection  -         pages of ``page`` tokens ranked by a min/max key bound on q.k
tokenselect    selection  -         per-head softmax(q.k) soft votes summed over a layer's heads (shared)
fasa           selection  -         q.k over the ``chunks`` dominant RoPE frequency chunks (calibrated on the window)
hisa           selection  -         two stages: mean-key block filter (``blocks``), then token q.k top-k
oracle         selection  -         control: top-k of the true attention of the current query
=============  =========  ========  ==========================================================================

Budgets are tokens per KV head (int) or a ratio of the context (float in (0, 1]); see `resolve_budget`.

Example::

    make_policy("h2o", recent=16)      # Policy(name='h2o', params={'recent': 16, 'sinks': 0, 'phase': 'decode'})
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.errors import KVCacheError


@dataclass(frozen=True)
class PolicySpec:
    kind: str
    defaults: dict
    description: str
    query_aware: bool = False


_SNAP = {"window": None, "kernel": 5, "pooling": "max"}
SPECS: dict[str, PolicySpec] = {
    "full": PolicySpec("full", {}, "the full cache"),
    "window": PolicySpec("eviction", {"phase": "decode"}, "sliding window of the last budget tokens"),
    "recency": PolicySpec("eviction", {"phase": "decode"}, "control: evict the oldest (generic evictor)"),
    "random": PolicySpec("eviction", {"phase": "decode", "seed": 0}, "control: random priorities"),
    "streaming_llm": PolicySpec("eviction", {"phase": "decode", "sinks": 4}, "attention sinks + recent window"),
    "h2o": PolicySpec("eviction", {"phase": "decode", "recent": None, "sinks": 0},
                      "heavy hitters (accumulated attention) + recent window"),
    "tova": PolicySpec("eviction", {"phase": "decode"}, "evict the lowest attention of the latest query"),
    "snapkv": PolicySpec("eviction", {"phase": "prefill", **_SNAP}, "observation-window votes, pooled"),
    "pyramidkv": PolicySpec("eviction", {"phase": "prefill", **_SNAP, "beta": 20},
                            "SnapKV scores with budgets falling with depth"),
    "adakv": PolicySpec("eviction", {"phase": "prefill", **_SNAP, "floor": 0.2},
                        "SnapKV scores, budget shared across a layer's heads"),
    "kvcrush": PolicySpec("eviction", {"phase": "prefill", **_SNAP, "base": "snapkv", "fraction": 0.25,
                                       "anchor": "mean"},
                          "base policy + representatives by head-behaviour signatures"),
    "quest": PolicySpec("selection", {"page": 16}, "page min/max key bounds", True),
    "tokenselect": PolicySpec("selection", {}, "per-head soft voting over q.k", True),
    "fasa": PolicySpec("selection", {"chunks": 8, "calibration": 8}, "dominant RoPE frequency chunks", True),
    "hisa": PolicySpec("selection", {"block": 32, "blocks": None}, "block filter then token top-k", True),
    "oracle": PolicySpec("selection", {}, "control: top-k by true attention", True),
}
POLICY_NAMES = tuple(SPECS)
EVICTION_PHASES = ("prefill", "decode")
KVCRUSH_BASES = ("snapkv", "h2o", "tova")


@dataclass(frozen=True)
class Policy:
    """A named policy with all its parameters filled in (build it with `make_policy`)."""

    name: str
    params: dict = field(default_factory=dict, hash=False, compare=True)

    @property
    def spec(self) -> PolicySpec:
        return SPECS[self.name]

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def phase(self) -> str | None:
        return self.params.get("phase")

    @property
    def query_aware(self) -> bool:
        return self.spec.query_aware

    def label(self) -> str:
        extra = {k: v for k, v in self.params.items() if SPECS[self.name].defaults.get(k) != v}
        return self.name + (("(" + ", ".join(f"{k}={v}" for k, v in extra.items()) + ")") if extra else "")


def make_policy(name, **params) -> Policy:
    """A `Policy` by name with defaults filled in; unknown names or parameters raise `KVCacheError`."""
    if isinstance(name, Policy):
        if params:
            return make_policy(name.name, **{**name.params, **params})
        return name
    if name not in SPECS:
        raise KVCacheError(f"unknown KV policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
    spec = SPECS[name]
    unknown = set(params) - set(spec.defaults)
    if unknown:
        raise KVCacheError(f"policy {name!r} has no parameter(s) {sorted(unknown)}; it takes "
                           f"{sorted(spec.defaults) or 'none'}")
    full = {**spec.defaults, **params}
    if "phase" in full and full["phase"] not in EVICTION_PHASES:
        raise KVCacheError(f"phase must be 'prefill' or 'decode', got {full['phase']!r}")
    if name in ("snapkv", "pyramidkv", "adakv", "kvcrush") and full["phase"] != "prefill":
        raise KVCacheError(f"{name} scores come from the prefill observation window; it only runs with phase='prefill'")
    if full.get("pooling", "max") not in ("max", "avg", "none"):
        raise KVCacheError(f"pooling must be 'max', 'avg' or 'none', got {full['pooling']!r}")
    if "kernel" in full and (int(full["kernel"]) < 1 or int(full["kernel"]) % 2 == 0):
        raise KVCacheError(f"the pooling kernel must be an odd number >= 1, got {full['kernel']}")
    if name == "kvcrush":
        if full["base"] not in KVCRUSH_BASES:
            raise KVCacheError(f"kvcrush base must be one of {KVCRUSH_BASES}, got {full['base']!r}")
        if not 0.0 < float(full["fraction"]) < 1.0:
            raise KVCacheError(f"kvcrush fraction must be in (0, 1), got {full['fraction']}")
        if full["anchor"] not in ("mean", "random", "alternate"):
            raise KVCacheError(f"kvcrush anchor must be 'mean', 'random' or 'alternate', got {full['anchor']!r}")
    if name == "adakv" and not 0.0 <= float(full["floor"]) <= 1.0:
        raise KVCacheError(f"adakv floor must be in [0, 1], got {full['floor']}")
    for key in ("sinks", "recent", "window", "page", "block", "blocks", "chunks", "calibration", "beta"):
        value = full.get(key)
        if value is not None and (not isinstance(value, int | float) or value < (0 if key == "sinks" else 1)):
            raise KVCacheError(f"{name} parameter {key} must be a positive number, got {value!r}")
    return Policy(name, full)


def resolve_budget(budget, n_prefill: int, n_tokens: int) -> int:
    """Tokens per KV head from ``budget``: an int in [1, n_tokens], or a float ratio in (0, 1] of the context
    (``round(ratio * n_prefill)``, at least 1 or an error)."""
    if isinstance(budget, bool) or not isinstance(budget, int | float):
        raise KVCacheError(f"the budget must be a number of tokens (int) or a ratio (float), got {budget!r}")
    if isinstance(budget, float) and not float(budget).is_integer() or isinstance(budget, float) and budget <= 1.0:
        if not 0.0 < budget <= 1.0:
            raise KVCacheError(f"a budget ratio must be in (0, 1], got {budget}")
        tokens = int(round(budget * n_prefill))
        if tokens < 1:
            raise KVCacheError(f"a budget ratio of {budget} of a {n_prefill}-token context rounds to 0 tokens; "
                               "give a larger ratio or an absolute number of tokens")
        return tokens
    tokens = int(budget)
    if tokens <= 0:
        raise KVCacheError(f"the budget must be at least 1 token, got {budget}")
    if tokens > n_tokens:
        raise KVCacheError(f"a budget of {tokens} tokens is larger than the whole context ({n_tokens} tokens); "
                           f"use at most {n_tokens} (or policy 'full')")
    return tokens


def pyramid_budgets(budget: int, window: int, n_layers: int, beta: float, layers) -> list[int]:
    """PyramidKV's per-layer budgets (KVCache-Factory's rule): linear from ``2(B-w) - (B-w)/beta`` at layer 0 down to
    ``(B-w)/beta`` at the last layer, plus the window; their mean over all layers is ``budget``."""
    base = budget - window
    lo = base / beta
    hi = 2 * base - lo
    step = (hi - lo) / max(1, n_layers - 1)
    return [max(window + 1, int(round(hi - int(layer) * step)) + window) for layer in layers]
