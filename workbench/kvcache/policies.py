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

Each policy is a small `Policy` subclass below (`SnapKV`, `H2O`, ...; kvpress's presses are the model): its
`PolicySpec` (parameters, defaults, official code), `check` (its parameters, once, when it is built) and `plan`
(what it scores and how it selects on a trace at a budget, refusing parameters that leave no room in the budget).
`replay` runs the resulting `Plan` on the numba kernels or in torch (`torch_replay`): adding a policy is one class
here, plus an executor routine in both backends when it needs a new kernel (`policy_base.SELECTORS`).

Example::

    make_policy("h2o", recent=16)      # H2O(phase='decode', recent=16, sinks=0); also H2O(recent=16)
"""
from __future__ import annotations

from workbench.errors import KVCacheError
from workbench.kvcache.policy_base import Plan, Policy, PolicySpec, check_window, pyramid_budgets

TOVA_HEADS = ("layer", "per_kv_head")
KVCRUSH_BASES = ("snapkv", "h2o", "tova")
KVCRUSH_ANCHORS = ("mean", "random", "alternate")
POOLINGS = ("max", "avg", "none")

_SNAP = {"window": None, "kernel": 5, "pooling": "avg"}  # SnapKV's snapkv_utils.py: window 64, kernel 5, avgpool
_SNAP_OFFICIAL = "FasterDecoding/SnapKV snapkv/monkeypatch/snapkv_utils.py (SnapKVCluster.update_kv)"
_SNAP_DIFF = ("window: 64 (the official default) capped by the captured observation window and the context; when "
              "the budget is not larger than that, budget // 2 (the official code asserts capacity > window). "
              "GQA: the official code scores every query head (MHA); we aggregate a group with the trace's gqa "
              "(mean, as kvpress's SnapKVPress). Pooling is applied to the aggregated votes (equal to pooling per "
              "query head and then averaging, for average pooling).")


def _evict(policy: Policy, budget: int, layers, score: str = "position", update: str = "static", **fields) -> Plan:
    """A plan for the generic evictor: every position starts from ``score``, changed at each decode step by
    ``update``; the lowest-scored unprotected positions go, at every decode step or once after prefill."""
    return policy._plan("evict", budget, layers, score=score, update=update, decode=policy.phase == "decode",
                        **fields)


# -- controls and decode-phase eviction --------------------------------------------------------------------------
class Full(Policy):
    name = "full"
    spec = PolicySpec("full", {}, "the full cache", official="control: no eviction")

    def plan(self, trace, budget, layers):
        return self._plan("full", trace.n_tokens, layers)


class Window(Policy):
    name = "window"
    spec = PolicySpec("eviction", {"phase": "decode"}, "sliding window of the last budget tokens",
                      official="control: StreamingLLM without sinks")

    def plan(self, trace, budget, layers):  # in the prefill phase: the evictor by position, as recency
        return self._plan("window", budget, layers) if self.phase == "decode" else _evict(self, budget, layers)


class Recency(Policy):
    name = "recency"
    spec = PolicySpec("eviction", {"phase": "decode"}, "control: evict the oldest (generic evictor)",
                      official="control")

    def plan(self, trace, budget, layers):
        return _evict(self, budget, layers)


class Random(Policy):
    name = "random"
    spec = PolicySpec("eviction", {"phase": "decode", "seed": 0}, "control: random priorities", official="control")

    def plan(self, trace, budget, layers):  # the seed is the replay's (one generator per layer)
        return _evict(self, budget, layers, score="random")


class StreamingLLM(Policy):
    name = "streaming_llm"
    spec = PolicySpec("eviction", {"phase": "decode", "sinks": 4}, "attention sinks + recent window",
                      official="mit-han-lab/streaming-llm streaming_llm/kv_cache.py (StartRecentKVCache)",
                      differences="budget = start_size + recent_size, the current token included")

    def plan(self, trace, budget, layers):
        sinks = int(self.params["sinks"])
        if budget <= sinks:
            raise KVCacheError(f"streaming_llm keeps {sinks} sinks; the budget ({budget}) must be larger")
        return _evict(self, budget, layers, sinks=sinks)


class H2O(Policy):
    name = "h2o"
    spec = PolicySpec("eviction", {"phase": "decode", "recent": None, "sinks": 0},
                      "heavy hitters (accumulated attention) + recent window",
                      official="FMInference/H2O h2o_hf/utils_real_drop/modify_llama.py (H2OKVCache_LayerWise)",
                      differences=("per KV head with the group aggregated by gqa (the official code is MHA); the "
                                   "recent window defaults to budget // 2 (heavy = recent, the official ratios); "
                                   "evicts one position per step as the official real-drop cache does"))

    def plan(self, trace, budget, layers):
        sinks = int(self.params["sinks"])
        recent = int(self.params["recent"]) if self.params["recent"] is not None else max(1, budget // 2)
        if sinks + recent > budget:
            raise KVCacheError(f"h2o protects {sinks} sinks + {recent} recent tokens, more than the budget "
                               f"{budget}")
        return _evict(self, budget, layers, score="h2o", update="accumulate", sinks=sinks, recent=recent)


class TOVA(Policy):
    name = "tova"
    spec = PolicySpec("eviction", {"phase": "decode", "heads": "layer"},
                      "evict the lowest attention of the latest query",
                      official="schwartz-lab-NLP/TOVA src/tova_cache.py (TOVACache.reduce); kvpress TOVAPress",
                      differences=("budget = cache_size + 1 (the official cache holds cache_size positions between "
                                   "steps and the query sees them plus itself); heads='per_kv_head' is our variant "
                                   "(each KV head ranks by its own query group, renormalised over the group)"))

    def check(self):
        if self.params["heads"] not in TOVA_HEADS:
            raise KVCacheError(f"tova heads must be one of {TOVA_HEADS}, got {self.params['heads']!r}")

    def plan(self, trace, budget, layers):
        if self.params["heads"] == "per_kv_head":
            return _evict(self, budget, layers, score="tova", update="last_query")
        if self.phase == "decode":  # one cache per layer, ranked by the mean over all its query heads
            return self._plan("tova_layer", budget, layers)
        return _evict(self, budget, layers, score="tova_layer")  # one ranking shared by the layer's heads


# -- the SnapKV family: prefill-phase compression by observation-window votes ------------------------------------
class _SnapFamily(Policy):
    """Scores from the votes of the last ``window`` prefill queries, pooled (`scores.snapkv_scores`)."""

    def check(self):
        prm = self.params
        if prm["phase"] != "prefill":
            raise KVCacheError(f"{self.name} scores come from the prefill observation window; it only runs with "
                               "phase='prefill'")
        if prm["pooling"] not in POOLINGS:
            raise KVCacheError(f"pooling must be 'max', 'avg' or 'none', got {prm['pooling']!r}")
        if int(prm["kernel"]) < 1 or int(prm["kernel"]) % 2 == 0:
            raise KVCacheError(f"the pooling kernel must be an odd number >= 1, got {prm['kernel']}")

    def _snap(self, trace, budget) -> tuple[int, dict]:
        """The observation window on ``trace`` at ``budget`` (`check_window`) and the pooling settings."""
        return check_window(trace, self, budget), {"kernel": int(self.params["kernel"]),
                                                    "pooling": self.params["pooling"]}


class SnapKV(_SnapFamily):
    name = "snapkv"
    spec = PolicySpec("eviction", {"phase": "prefill", **_SNAP}, "observation-window votes, pooled",
                      official=_SNAP_OFFICIAL, differences=_SNAP_DIFF)

    def plan(self, trace, budget, layers):
        window, args = self._snap(trace, budget)
        return _evict(self, budget, layers, score="snapkv", recent=window, window=window, args=args)


class PyramidKV(_SnapFamily):
    name = "pyramidkv"
    spec = PolicySpec("eviction", {"phase": "prefill", **_SNAP, "beta": 20},
                      "SnapKV scores with budgets falling with depth",
                      official="Zefan-Cai/KVCache-Factory pyramidkv/pyramidkv_utils.py (PyramidKVCluster)",
                      differences="the SnapKV conventions above; budgets rounded to whole tokens, at least "
                                  "window + 1")

    def plan(self, trace, budget, layers):
        window, args = self._snap(trace, budget)
        budgets = pyramid_budgets(budget, window, int(trace.model.get("n_layers", trace.n_layers)),
                                  float(self.params["beta"]), layers, trace.n_prefill)
        return _evict(self, budget, layers, score="snapkv", recent=window, window=window, args=args,
                      layer_budgets=budgets)


class AdaKV(_SnapFamily):
    name = "adakv"
    spec = PolicySpec("eviction", {"phase": "prefill", **_SNAP, "floor": 0.2},
                      "SnapKV scores, budget shared across a layer's heads",
                      official="FFY0/AdaKV adaptive_snapkv/monkeypatch/snapkv_utils.py (AdaptiveSnapKVCluster)",
                      differences="head capacities exactly as the official rule (round(c_h (1 - floor) + "
                                  "int(share floor)), c_h = head h's entries among the layer's top H x share "
                                  "scores); window, kernel and pooling default to SnapKV's official 64 / 5 / avg "
                                  "(AdaKV's cluster defaults to 32 / 7 / max); the SnapKV GQA convention")

    def check(self):
        super().check()
        if not 0.0 <= float(self.params["floor"]) <= 1.0:
            raise KVCacheError(f"adakv floor must be in [0, 1], got {self.params['floor']}")

    def plan(self, trace, budget, layers):  # per-head capacities: `adakv_capacities`
        window, args = self._snap(trace, budget)
        return self._plan("adakv", budget, layers, score="snapkv", window=window,
                          args={**args, "floor": float(self.params["floor"])})


class KVCrush(_SnapFamily):
    name = "kvcrush"
    spec = PolicySpec("eviction", {"phase": "prefill", **_SNAP, "base": "snapkv", "fraction": 0.25,
                                   "anchor": "mean"},
                      "base policy + representatives by head-behaviour signatures",
                      official="paper only (KVCrush): no public reference code",
                      differences="anchor and grouping as the paper describes them; the base policy's own "
                                  "conventions")

    def check(self):
        super().check()
        prm = self.params
        if prm["base"] not in KVCRUSH_BASES:
            raise KVCacheError(f"kvcrush base must be one of {KVCRUSH_BASES}, got {prm['base']!r}")
        if not 0.0 < float(prm["fraction"]) < 1.0:
            raise KVCacheError(f"kvcrush fraction must be in (0, 1), got {prm['fraction']}")
        if prm["anchor"] not in KVCRUSH_ANCHORS:
            raise KVCacheError(f"kvcrush anchor must be 'mean', 'random' or 'alternate', got {prm['anchor']!r}")

    def plan(self, trace, budget, layers):  # the base's scores ("tova": per KV head) + `kvcrush_representatives`
        window, args = self._snap(trace, budget)
        prm = self.params
        return self._plan("kvcrush", budget, layers, score=prm["base"], window=window,
                          args={**args, "fraction": float(prm["fraction"]), "anchor": prm["anchor"]})


# -- selection: query-aware, nothing is lost ---------------------------------------------------------------------
class Quest(Policy):
    name = "quest"
    spec = PolicySpec("selection", {"page": 16}, "page min/max key bounds", True,
                      official="mit-han-lab/Quest evaluation/quest_attention.py (sign-based page bound, "
                               "local_heavy_hitter_mask)",
                      differences="the same page bound, sum_d max(q_d min_d, q_d max_d); but the official code "
                                  "selects per query head, ranks the partial last page too, takes at least 3 "
                                  "pages and leaves layers 0-1 dense, while we select per KV head (the bound is "
                                  "the max over its query group: a cache is per KV head), rank complete pages "
                                  "only and always keep the partial last page (the current token), in every "
                                  "layer. Not transcribed in test_official.py: its per-query-head sets do not fit "
                                  "a per-KV-head cache")

    def plan(self, trace, budget, layers):
        page = int(self.params["page"])
        if budget < page:
            raise KVCacheError(f"quest keeps whole pages of {page} tokens; the budget ({budget}) must be at least "
                               "one page")
        return self._plan("quest", budget, layers, args={"page": page})


class TokenSelect(Policy):
    name = "tokenselect"
    spec = PolicySpec("selection", {}, "per-head soft voting over q.k", True,
                      official="paper (TokenSelect): per-head softmax votes summed",
                      differences="one selection shared by the layer's KV heads, as the paper's kernel")

    def plan(self, trace, budget, layers):
        return self._plan("tokenselect", budget, layers)


class FASA(Policy):
    name = "fasa"
    spec = PolicySpec("selection", {"chunks": 8, "calibration": 8}, "dominant RoPE frequency chunks", True,
                      official="paper (FASA): dominant RoPE frequency chunks",
                      differences="chunks calibrated on the last context queries of the trace")

    def plan(self, trace, budget, layers):  # at most the head's head_dim / 2 RoPE pairs
        chunks = min(int(self.params["chunks"]), trace.head_dim // 2)
        calibration = int(self.params["calibration"])
        return self._plan("fasa", budget, layers, args={"chunks": chunks, "calibration": calibration})


class HISA(Policy):
    name = "hisa"
    spec = PolicySpec("selection", {"block": 32, "blocks": None}, "block filter then token top-k", True,
                      official="paper (HISA): mean-key block filter, then token top-k",
                      differences="blocks defaults to ceil(2 budget / block)")

    def plan(self, trace, budget, layers):
        block = int(self.params["block"])
        blocks = self.params["blocks"]
        blocks = int(blocks) if blocks is not None else max(1, -(-2 * budget // block))  # ceil(2 budget / block)
        return self._plan("hisa", budget, layers, args={"block": block, "blocks": blocks})


class Oracle(Policy):
    name = "oracle"
    spec = PolicySpec("selection", {}, "control: top-k by true attention", True, official="control")

    def plan(self, trace, budget, layers):
        return self._plan("oracle", budget, layers)


POLICIES: dict[str, type[Policy]] = {cls.name: cls for cls in (
    Full, Window, Recency, Random, StreamingLLM, H2O, TOVA, SnapKV, PyramidKV, AdaKV, KVCrush, Quest, TokenSelect,
    FASA, HISA, Oracle)}
SPECS: dict[str, PolicySpec] = {name: cls.spec for name, cls in POLICIES.items()}
POLICY_NAMES = tuple(POLICIES)


def make_policy(name, **params) -> Policy:
    """A `Policy` by name with defaults filled in; unknown names or parameters raise `KVCacheError`."""
    if isinstance(name, Policy):
        if params:
            return make_policy(name.name, **{**name.params, **params})
        return name
    if name not in POLICIES:
        raise KVCacheError(f"unknown KV policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
    return POLICIES[name](**params)


def describe_policy(name) -> str:
    """What ``name`` does, the official code it follows and where we differ (one paragraph)."""
    spec = make_policy(name).spec
    text = f"{make_policy(name).name}: {spec.description}. Follows: {spec.official or 'n/a'}."
    return text + (f" Differs: {spec.differences.rstrip('.')}." if spec.differences else "")
