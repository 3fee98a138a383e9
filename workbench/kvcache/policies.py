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
tova           eviction   decode    attention of the latest query, averaged over all the layer's query heads and
                                    shared by its KV heads (``heads="layer"``; ``"per_kv_head"``: each KV head
                                    ranks by its own query group)
snapkv         eviction   prefill   votes of the last ``window`` prefill queries, pooled (``kernel``, ``pooling``:
                                    the official 64, 5, "avg")
pyramidkv      eviction   prefill   SnapKV scores, per-layer budgets falling linearly with depth (``beta``)
adakv          eviction   prefill   SnapKV scores, one budget of H x budget shared by a layer's heads (``floor``:
                                    the fraction of a head's share it keeps whatever the others score)
kvcrush        eviction   prefill   ``base`` policy keeps (1 - ``fraction``); the rest are representatives chosen
                                    by head-behaviour binary signatures
quest          selection  -         pages of ``page`` tokens ranked by a min/max key bound on q.k
tokenselect    selection  -         per-head softmax(q.k) soft votes summed over a layer's heads (shared)
fasa           selection  -         q.k over the ``chunks`` dominant RoPE frequency chunks (calibrated on the window)
hisa           selection  -         two stages: mean-key block filter (``blocks``), then token q.k top-k
oracle         selection  -         control: top-k of the true attention of the current query
=============  =========  ========  ==========================================================================

Budgets are tokens per KV head (int) or a ratio of the context (float in (0, 1]); see `resolve_budget`.

Which official code each policy follows, and where we differ on purpose, is `SPECS[name].official` and
`SPECS[name].differences` (shown by `describe_policy(name)`); tests/workbench/kvcache/test_official.py transcribes
the official scoring in numpy and checks our kept sets against it on a real SmolLM2 trace. Conventions shared by all:

* the budget counts the current token (a decode query attends to ``budget`` positions, itself included);
* ties go to the oldest position (the official code breaks them by ``torch.topk``'s order);
* GQA: a KV head's score aggregates its query group with the trace's ``gqa`` ("mean" is kvpress's rule) unless a
  policy says otherwise (layer-wide TOVA and TokenSelect average over every query head of the layer);
* attention is stored as float16 unless captured with ``attn_dtype="float32"``: near-tied selections can flip
  against float32 official code (about 1 set in 50 at a 50% budget).

Example::

    make_policy("h2o", recent=16)      # Policy(name='h2o', params={'recent': 16, 'sinks': 0, 'phase': 'decode'})
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workbench.errors import KVCacheError


@dataclass(frozen=True)
class PolicySpec:
    kind: str
    defaults: dict
    description: str
    query_aware: bool = False
    official: str = ""       # the official implementation followed: repository and file (or why there is none)
    differences: str = ""    # conventions where we deliberately differ from it


_SNAP = {"window": None, "kernel": 5, "pooling": "avg"}  # SnapKV's snapkv_utils.py: window 64, kernel 5, avgpool
_SNAP_OFFICIAL = "FasterDecoding/SnapKV snapkv/monkeypatch/snapkv_utils.py (SnapKVCluster.update_kv)"
_SNAP_DIFF = ("window: 64 (the official default) capped by the captured observation window and the context; when "
              "the budget is not larger than that, budget // 2 (the official code asserts capacity > window). "
              "GQA: the official code scores every query head (MHA); we aggregate a group with the trace's gqa "
              "(mean, as kvpress's SnapKVPress). Pooling is applied to the aggregated votes (equal to pooling per "
              "query head and then averaging, for average pooling).")
SPECS: dict[str, PolicySpec] = {
    "full": PolicySpec("full", {}, "the full cache", official="control: no eviction"),
    "window": PolicySpec("eviction", {"phase": "decode"}, "sliding window of the last budget tokens",
                         official="control: StreamingLLM without sinks"),
    "recency": PolicySpec("eviction", {"phase": "decode"}, "control: evict the oldest (generic evictor)",
                          official="control"),
    "random": PolicySpec("eviction", {"phase": "decode", "seed": 0}, "control: random priorities",
                         official="control"),
    "streaming_llm": PolicySpec("eviction", {"phase": "decode", "sinks": 4}, "attention sinks + recent window",
                                official="mit-han-lab/streaming-llm streaming_llm/kv_cache.py (StartRecentKVCache)",
                                differences="budget = start_size + recent_size, the current token included"),
    "h2o": PolicySpec("eviction", {"phase": "decode", "recent": None, "sinks": 0},
                      "heavy hitters (accumulated attention) + recent window",
                      official="FMInference/H2O h2o_hf/utils_real_drop/modify_llama.py (H2OKVCache_LayerWise)",
                      differences=("per KV head with the group aggregated by gqa (the official code is MHA); the "
                                   "recent window defaults to budget // 2 (heavy = recent, the official ratios); "
                                   "evicts one position per step as the official real-drop cache does")),
    "tova": PolicySpec("eviction", {"phase": "decode", "heads": "layer"},
                       "evict the lowest attention of the latest query",
                       official="schwartz-lab-NLP/TOVA src/tova_cache.py (TOVACache.reduce); kvpress TOVAPress",
                       differences=("budget = cache_size + 1 (the official cache holds cache_size positions between "
                                    "steps and the query sees them plus itself); heads='per_kv_head' is our variant "
                                    "(each KV head ranks by its own query group, renormalised over the group)")),
    "snapkv": PolicySpec("eviction", {"phase": "prefill", **_SNAP}, "observation-window votes, pooled",
                         official=_SNAP_OFFICIAL, differences=_SNAP_DIFF),
    "pyramidkv": PolicySpec("eviction", {"phase": "prefill", **_SNAP, "beta": 20},
                            "SnapKV scores with budgets falling with depth",
                            official="Zefan-Cai/KVCache-Factory pyramidkv/pyramidkv_utils.py (PyramidKVCluster)",
                            differences="the SnapKV conventions above; budgets rounded to whole tokens, at least "
                                        "window + 1"),
    "adakv": PolicySpec("eviction", {"phase": "prefill", **_SNAP, "floor": 0.2},
                        "SnapKV scores, budget shared across a layer's heads",
                        official="FFY0/AdaKV adaptive_snapkv/monkeypatch/snapkv_utils.py (AdaptiveSnapKVCluster)",
                        differences="head capacities exactly as the official rule (round(c_h (1 - floor) + "
                                    "int(share floor)), c_h = head h's entries among the layer's top H x share "
                                    "scores); window, kernel and pooling default to SnapKV's official 64 / 5 / avg "
                                    "(AdaKV's cluster defaults to 32 / 7 / max); the SnapKV GQA convention"),
    "kvcrush": PolicySpec("eviction", {"phase": "prefill", **_SNAP, "base": "snapkv", "fraction": 0.25,
                                       "anchor": "mean"},
                          "base policy + representatives by head-behaviour signatures",
                          official="paper only (KVCrush): no public reference code",
                          differences="anchor and grouping as the paper describes them; the base policy's own "
                                      "conventions"),
    "quest": PolicySpec("selection", {"page": 16}, "page min/max key bounds", True,
                        official="mit-han-lab/Quest evaluation/quest_attention.py (sign-based page bound, "
                                 "local_heavy_hitter_mask)",
                        differences="the same page bound, sum_d max(q_d min_d, q_d max_d); but the official code "
                                    "selects per query head, ranks the partial last page too, takes at least 3 "
                                    "pages and leaves layers 0-1 dense, while we select per KV head (the bound is "
                                    "the max over its query group: a cache is per KV head), rank complete pages "
                                    "only and always keep the partial last page (the current token), in every "
                                    "layer. Not transcribed in test_official.py: its per-query-head sets do not fit "
                                    "a per-KV-head cache"),
    "tokenselect": PolicySpec("selection", {}, "per-head soft voting over q.k", True,
                              official="paper (TokenSelect): per-head softmax votes summed",
                              differences="one selection shared by the layer's KV heads, as the paper's kernel"),
    "fasa": PolicySpec("selection", {"chunks": 8, "calibration": 8}, "dominant RoPE frequency chunks", True,
                       official="paper (FASA): dominant RoPE frequency chunks",
                       differences="chunks calibrated on the last context queries of the trace"),
    "hisa": PolicySpec("selection", {"block": 32, "blocks": None}, "block filter then token top-k", True,
                       official="paper (HISA): mean-key block filter, then token top-k",
                       differences="blocks defaults to ceil(2 budget / block)"),
    "oracle": PolicySpec("selection", {}, "control: top-k by true attention", True, official="control"),
}
POLICY_NAMES = tuple(SPECS)
EVICTION_PHASES = ("prefill", "decode")
TOVA_HEADS = ("layer", "per_kv_head")
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
    if name == "tova" and full["heads"] not in TOVA_HEADS:
        raise KVCacheError(f"tova heads must be one of {TOVA_HEADS}, got {full['heads']!r}")
    if name == "adakv" and not 0.0 <= float(full["floor"]) <= 1.0:
        raise KVCacheError(f"adakv floor must be in [0, 1], got {full['floor']}")
    for key in ("sinks", "recent", "window", "page", "block", "blocks", "chunks", "calibration", "beta"):
        value = full.get(key)
        if value is not None and (not isinstance(value, int | float) or value < (0 if key == "sinks" else 1)):
            raise KVCacheError(f"{name} parameter {key} must be a positive number, got {value!r}")
    return Policy(name, full)


def describe_policy(name) -> str:
    """What ``name`` does, the official code it follows and where we differ (one paragraph)."""
    spec = make_policy(name).spec
    text = f"{make_policy(name).name}: {spec.description}. Follows: {spec.official or 'n/a'}."
    return text + (f" Differs: {spec.differences.rstrip('.')}." if spec.differences else "")


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


def pyramid_budgets(budget: int, window: int, n_layers: int, beta: float, layers, n_prefill: int) -> list[int]:
    """PyramidKV's per-layer budgets, KVCache-Factory's integer rule (``PyramidKVCluster.update_kv``): with
    ``base = budget - window``, a context shorter than ``2 * base`` keeps ``budget`` in every layer (plain SnapKV);
    otherwise ``lo = base // beta``, ``hi = 2 * base - lo`` (when ``hi >= n_prefill - window``: ``hi = n_prefill -
    window`` and ``lo = 2 * base - hi``), ``step = (hi - lo) // (n_layers - 1)``, and layer ``l`` keeps
    ``hi - l * step`` context positions plus the window (never fewer than the window, never more than the
    context). Their mean over the layers
    is ``budget`` up to the integer steps (at most ``(n_layers - 1) / 2`` above).

    >>> pyramid_budgets(64, 8, 30, 20, [0, 29], 1000)
    [118, 31]
    """
    base = int(budget) - int(window)
    if int(n_prefill) < 2 * base:
        return [int(budget) for _ in layers]
    lo = int(base // beta)
    hi = 2 * base - lo
    if hi >= n_prefill - window:
        hi = int(n_prefill) - int(window)
        lo = 2 * base - hi
    step = (hi - lo) // max(1, int(n_layers) - 1)
    # (a window larger than base can make the step negative: budgets past the context then keep everything, as
    # the official code does; they are reported as the context)
    return [min(max(0, hi - int(layer) * step) + int(window), int(n_prefill)) for layer in layers]


SNAPKV_WINDOW = 64  # the official default (SnapKV's snapkv_utils.py, kvpress, PyramidKV)


def default_window(budget: int, obs_window: int, n_prefill: int) -> int:
    """The SnapKV-family observation window when none is given: the official 64, capped by the captured window and
    the context; a budget not larger than that gets ``budget // 2`` (at least 1), since the official code needs
    a capacity larger than the window."""
    window = min(SNAPKV_WINDOW, int(obs_window), int(n_prefill))
    return window if window < budget else max(1, budget // 2)


def check_window(trace, policy: Policy, budget: int) -> int:
    """The SnapKV-family observation window of ``policy`` on ``trace`` (a `KVTrace`) at ``budget`` tokens: its
    ``window`` parameter checked against the context, the captured window and the budget, or `default_window`."""
    window = policy.params.get("window")
    if window is None:
        return default_window(budget, trace.obs_window, trace.n_prefill)
    window = int(window)
    if window > trace.n_prefill:
        raise KVCacheError(f"{policy.name} window {window} is larger than the context ({trace.n_prefill} tokens)")
    if window > trace.obs_window:
        raise KVCacheError(f"{policy.name} window {window} is larger than the captured observation window "
                           f"({trace.obs_window}); capture again with obs_window={window}")
    if window >= budget:
        raise KVCacheError(f"{policy.name} window {window} leaves no room in a budget of {budget} tokens; "
                           "give a larger budget or a smaller window")
    return window


def adakv_capacities(scores: np.ndarray, share: int, floor_ratio: float) -> np.ndarray:
    """AdaKV's per-head capacities (``AdaptiveSnapKVCluster.update_kv``): ``c_h`` = how many of the layer's best
    ``H x share`` (head, position) scores are head ``h``'s, then ``round(c_h (1 - floor_ratio) + int(share x
    floor_ratio))`` (round half to even, as torch.round). ``scores`` [H, P] -> int64 [H]."""
    h, p = scores.shape
    top = np.argsort(-scores.ravel(), kind="stable")[: h * share]
    counts = np.bincount(top // p, minlength=h)
    return np.minimum(np.round(counts * (1.0 - floor_ratio) + int(share * floor_ratio)).astype(np.int64), p)
