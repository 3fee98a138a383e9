"""`replay(trace, policy, budget) -> Retention`: which positions every KV head keeps at every decode step.

Example::

    tr = capture(text, decode_steps=32)
    r = replay(tr, "h2o", 64)          # or make_policy("snapkv", window=16), budget=0.25 (a ratio of the context)
    r.summary()                        # {'policy': 'h2o', 'budget': 64, 'attention_mass': 0.93, ...}
    r.kept.shape                       # (30, 3, 32, T)

The policy's `Plan` (`Policy.plan`: its parameters checked against the budget and the trace) is executed here on
the numba kernels, one layer at a time (`EXECUTORS`, keyed by ``Plan.selector``), or by `torch_replay.run_plan`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from workbench import backends
from workbench.errors import KVCacheError
from workbench.kvcache import kernels as K
from workbench.kvcache import scores as SC
from workbench.kvcache import select_kernels as SK
from workbench.kvcache.policies import make_policy
from workbench.kvcache.policy_base import (
    Plan,
    Policy,
    adakv_capacities,
    kvcrush_representatives,
    resolve_budget,
)
from workbench.kvcache.trace import KVTrace

# cell codes of `Retention.cell_states`
FUTURE, KEPT, EVICTED, SINK, SKIPPED = 0, 1, 2, 3, 4
# codes of `Retention.difference` (two policies' kept masks cell by cell)
D_FUTURE, D_BOTH, D_ONLY_A, D_ONLY_B, D_NEITHER = 0, 1, 2, 3, 4


@dataclass
class Retention:
    """The kept mask of a policy over a trace, with per-step metrics.

    ``kept`` bool [L, H, S, T]; ``mass`` (attention mass of the full-cache query on kept positions),
    ``output_error`` (relative L2 error of the head's attention output, with the head-aggregated attention),
    ``iou`` (overlap with the oracle set of the same size: the current position + the top k-1 earlier ones)
    float32 [L, H, S]; ``n_kept`` int32 [L, H, S];
    ``layer_budgets`` int [L] (PyramidKV varies them; AdaKV shares ``H x budget`` within a layer).
    """

    policy: Policy
    budget: int
    layer_budgets: np.ndarray
    kept: np.ndarray
    n_prefill: int
    layers: np.ndarray
    tokens: list
    mass: np.ndarray
    output_error: np.ndarray
    iou: np.ndarray
    n_kept: np.ndarray
    sinks: int = 0
    seconds: float = 0.0
    model: dict = field(default_factory=dict, repr=False)
    plan: Plan | None = field(default=None, repr=False)   # what the policy scored and how it selected (set by replay)

    @property
    def n_steps(self) -> int:
        return int(self.kept.shape[2])

    @property
    def n_tokens(self) -> int:
        return int(self.kept.shape[3])

    def summary(self) -> dict:
        """Means over layers, heads and steps, as one row for a table."""
        full = (self.n_prefill + 1 + np.arange(self.n_steps)).astype(np.float64)
        return {
            "policy": self.policy.label(), "kind": self.policy.kind, "budget": self.budget,
            "attention_mass": float(self.mass.mean()), "output_error": float(self.output_error.mean()),
            "oracle_iou": float(self.iou.mean()), "kept_tokens": float(self.n_kept.mean()),
            "kept_fraction": float((self.n_kept / full).mean()), "replay_ms": self.seconds * 1e3,
        }

    def written(self) -> np.ndarray:
        """bool [S, T]: position t exists at step s (step s sees positions <= n_prefill + s)."""
        return np.arange(self.n_tokens)[None, :] <= (self.n_prefill + np.arange(self.n_steps))[:, None]

    def cell_states(self, layer_index: int, head: int) -> np.ndarray:
        """int8 [S, T]: FUTURE (not yet written), KEPT, EVICTED (dropped for good), SINK (kept, protected sink) or
        SKIPPED (in the cache but not selected by a query-aware policy at this step)."""
        kept = self.kept[layer_index, head]
        exists = self.written()
        out = np.where(exists, EVICTED, FUTURE).astype(np.int8)
        if self.policy.kind == "selection":
            out[exists] = SKIPPED
        out[kept] = KEPT
        if self.sinks:
            out[:, : self.sinks][kept[:, : self.sinks]] = SINK
        return out

    def difference(self, other: Retention, layer_index: int, head: int) -> np.ndarray:
        """int8 [S, T]: this replay (A) against ``other`` (B) of the same trace, cell by cell: D_BOTH kept by both,
        D_ONLY_A, D_ONLY_B, D_NEITHER, or D_FUTURE (not yet written)."""
        if other.kept.shape[2:] != self.kept.shape[2:] or other.n_prefill != self.n_prefill:
            raise KVCacheError("compare replays of the same trace (same steps, tokens and prefill)")
        kept_a, kept_b = self.kept[layer_index, head], other.kept[layer_index, head]
        out = np.where(self.written(), D_NEITHER, D_FUTURE).astype(np.int8)
        out[kept_a & kept_b] = D_BOTH
        out[kept_a & ~kept_b] = D_ONLY_A
        out[kept_b & ~kept_a] = D_ONLY_B
        return out

    def evicted_at(self, layer_index: int, head: int) -> np.ndarray:
        """int32 [T]: the first step at which each position is not kept (-1 if it is kept to the end)."""
        kept = self.kept[layer_index, head]
        gone = self.written() & ~kept
        first = np.where(gone.any(axis=0), gone.argmax(axis=0), -1)
        return first.astype(np.int32)


# -- the numba executors: one routine per `Plan.selector`, filling kept_l [H, S, T] for one layer ----------------
_MODES = {"static": K.MODE_STATIC, "accumulate": K.MODE_ACCUMULATE, "last_query": K.MODE_LAST_QUERY}


def _full(trace, li, plan, budget, kept_l, rng):
    kept_l[:] = (np.arange(trace.n_tokens)[None, :] <= (trace.n_prefill + np.arange(trace.n_steps))[:, None])[None]


def _window(trace, li, plan, budget, kept_l, rng):
    p = trace.n_prefill + np.arange(trace.n_steps)
    pos = np.arange(trace.n_tokens)
    kept_l[:] = ((pos[None, :] <= p[:, None]) & (pos[None, :] > p[:, None] - budget))[None]


def _tova_layer(trace, li, plan, budget, kept_l, rng):
    kept_layer = np.zeros(kept_l.shape[1:], bool)
    K.tova_layer(SC.tova_layer_scores(trace, li), trace.f32("attn_heads", li), trace.n_prefill, budget, kept_layer)
    kept_l[:] = kept_layer[None]


def _evict(trace, li, plan, budget, kept_l, rng):
    """The generic evictor (`kernels.evict_heads`) from the plan's scores, update, sinks and recent window."""
    scores = np.ascontiguousarray(SC.plan_scores(trace, li, plan, rng), dtype=np.float64)
    budgets = np.full(trace.n_kv_heads, budget, np.int64)
    K.evict_heads(scores, trace.f32("attn", li), trace.n_prefill, budgets, plan.sinks, plan.recent,
                  _MODES[plan.update], plan.decode, kept_l)


def _prefill_then_append(trace, kept_prefill, kept_l):
    """Decode steps see the compressed context ``kept_prefill`` [H, n] plus every decode token so far."""
    n = trace.n_prefill
    kept_l[:, :, :n] = kept_prefill[:, None, :]
    pos = np.arange(n, trace.n_tokens)
    kept_l[:, :, n:] = (pos[None, :] <= (n + np.arange(trace.n_steps))[:, None])[None]


def _adakv(trace, li, plan, budget, kept_l, rng):
    """AdaKV: every head keeps the window and its own best ``adakv_capacities`` context positions (the layer's
    H x (budget - window) slots shared out by score, ``floor`` of each head's share guaranteed)."""
    h, n, window = trace.n_kv_heads, trace.n_prefill, plan.window
    scores = SC.plan_scores(trace, li, plan)[:, : n - window]
    keep = np.zeros((h, n), bool)
    keep[:, n - window:] = True
    if n <= budget:
        keep[:] = True
    else:
        caps = adakv_capacities(scores, budget - window, plan.args["floor"])
        order = np.argsort(-scores, axis=1, kind="stable")
        for hh in range(h):
            keep[hh, order[hh, : caps[hh]]] = True
    _prefill_then_append(trace, keep, kept_l)


def kvcrush_keep(base_scores, signatures, budget, window, fraction, anchor, rng):
    """KVCrush for one head's context: the base scores keep ``budget - window - r`` positions (r =
    `kvcrush_representatives`: round(fraction * (budget - window)), at least 1 and at most budget - window) plus
    the window; the r representatives come from the positions the base evicts, ordered by the Hamming distance of
    their signature to ``anchor`` and cut into r equal groups, taking each group's best-scored position.
    ``base_scores`` float64 [n - window], ``signatures`` bool [n, Q] -> bool [n]."""
    n = signatures.shape[0]
    keep = np.zeros(n, bool)
    share = budget - window
    if n <= budget:
        keep[:] = True
        return keep
    r = kvcrush_representatives(share, fraction)
    if anchor == "mean":
        ref = signatures[: n - window].mean(axis=0) >= 0.5
    elif anchor == "alternate":
        ref = (np.arange(signatures.shape[1]) % 2).astype(bool)
    else:
        ref = rng.random(signatures.shape[1]) < 0.5
    K.kvcrush_head(np.ascontiguousarray(base_scores, dtype=np.float64), np.ascontiguousarray(signatures), ref, window,
                   share - r, r, keep)
    return keep


def _kvcrush(trace, li, plan, budget, kept_l, rng):
    n, window = trace.n_prefill, plan.window
    base = SC.plan_scores(trace, li, plan)
    sig = SC.head_signatures(trace, li)
    keep = np.stack([kvcrush_keep(base[hh, : n - window], sig, budget, window, plan.args["fraction"],
                                  plan.args["anchor"], rng) for hh in range(trace.n_kv_heads)])
    _prefill_then_append(trace, keep, kept_l)


def _oracle(trace, li, plan, budget, kept_l, rng):
    K.select_heads(trace.f32("attn", li), trace.n_prefill, budget, kept_l)


def _tokenselect(trace, li, plan, budget, kept_l, rng):
    """Every query head of the layer votes on one selection shared by its KV heads."""
    one = np.zeros(kept_l.shape[1:], bool)
    SK.softmax_select_head(SC.raw_logits(trace, li), trace.n_prefill, np.float32(trace.scaling), SK.AGG_SUM, budget,
                           one)
    kept_l[:] = one[None]


def _aggregate(trace):
    return SK.AGG_MEAN if trace.gqa == "mean" else SK.AGG_MAX


def _fasa(trace, li, plan, budget, kept_l, rng):
    half = trace.head_dim // 2
    chunks = SC.fasa_dominant_chunks(trace, li, plan.args["chunks"], plan.args["calibration"])
    q, tiles = SC.partial_queries_keys(trace, li, np.concatenate([chunks, chunks + half], axis=1))
    SK.partial_softmax_select_heads(q, tiles, trace.group_size, trace.n_prefill, np.float32(trace.scaling),
                                    _aggregate(trace), budget, kept_l)


def _hisa(trace, li, plan, budget, kept_l, rng):
    n, block = trace.n_prefill, plan.args["block"]
    q = np.ascontiguousarray(trace.f32("queries", li)[:, n:])
    SK.hisa_select_heads(q, trace.f32("keys", li), SC.hisa_block_means(trace, li, block), trace.group_size, n,
                         np.float32(trace.scaling), block, plan.args["blocks"], budget, kept_l)


def _quest(trace, li, plan, budget, kept_l, rng):
    n, page = trace.n_prefill, plan.args["page"]
    q = trace.f32("queries", li).reshape(trace.n_kv_heads, trace.group_size, trace.n_tokens, -1)
    K.quest_heads(SC.quest_page_bounds(q, trace.f32("keys", li), n, page), n, budget, page, kept_l)


EXECUTORS = {"full": _full, "window": _window, "tova_layer": _tova_layer, "evict": _evict, "adakv": _adakv,
             "kvcrush": _kvcrush, "oracle": _oracle, "tokenselect": _tokenselect, "fasa": _fasa, "hisa": _hisa,
             "quest": _quest}


def output_errors(trace: KVTrace, li: int, kept_l: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """Relative L2 error of each head's attention output with the kept positions only (attention renormalised
    over them) against the full cache, using the head-aggregated decode attention. float32 [H, S]."""
    a = trace.f32("attn", li)
    v = trace.f32("values", li)
    full = np.matmul(a, v)
    part = np.matmul(np.where(kept_l, a, 0.0), v) / np.maximum(mass, 1e-12)[..., None]
    err = np.linalg.norm(part - full, axis=-1) / np.maximum(np.linalg.norm(full, axis=-1), 1e-12)
    return err.astype(np.float32)


def replay(trace: KVTrace, policy, budget, *, seed: int | None = None, layers=None, metrics: bool = True,
           backend: str = "auto") -> Retention:
    """Replay ``policy`` (a name or a `Policy`) with ``budget`` (tokens per KV head, or a ratio of the context) over
    ``trace``. ``layers`` (model layer indices) limits the replay to some captured layers. ``metrics=False`` skips
    the per-step metrics (left NaN). ``backend``: "numba" (the CPU kernels), "torch" (the torch implementation, on
    CUDA when available) or "auto" (torch on CUDA when a GPU is present, else numba); both give the same masks.

    Raises `KVCacheError` for a budget <= 0 or larger than the context, a window larger than the context, and
    parameters that leave no room in the budget.
    """
    t0 = time.perf_counter()
    policy = make_policy(policy)
    n, t = trace.n_prefill, trace.n_tokens
    b = t if policy.kind == "full" else resolve_budget(budget, n, t)
    lis = list(range(trace.n_layers)) if layers is None else [trace.layer_index(x) for x in layers]
    h, s = trace.n_kv_heads, trace.n_steps
    seed = policy.params.get("seed", 0) if seed is None else seed
    use_torch = backends.use_torch(backend, KVCacheError)
    plan = policy.plan(trace, b, trace.layers[lis])
    if use_torch:
        from workbench.kvcache.torch_replay import run_plan

        kept = run_plan(trace, plan, lis, seed=int(seed))
    else:
        kept = np.zeros((len(lis), h, s, t), bool)
        run = EXECUTORS[plan.selector]
        for j, li in enumerate(lis):
            rng = np.random.default_rng([int(seed), int(trace.layers[li])])
            run(trace, li, plan, plan.layer_budgets[j], kept[j], rng)
    layer_budgets = np.asarray(plan.layer_budgets, dtype=np.int64)
    mass = np.zeros((len(lis), h, s), np.float32)
    iou = np.zeros_like(mass)
    n_kept = np.zeros((len(lis), h, s), np.int32)
    err = np.zeros_like(mass)
    if not metrics:
        mass[:] = iou[:] = err[:] = np.nan
        K.count_rows(kept.reshape(-1, t), n_kept.reshape(-1))
    for j, li in enumerate(lis if metrics else []):
        K.retention_metrics(trace.f32("attn", li), kept[j], n, mass[j], iou[j], n_kept[j])
        err[j] = output_errors(trace, li, kept[j], mass[j])
    return Retention(policy=policy, budget=int(b), layer_budgets=layer_budgets, kept=kept, n_prefill=n,
                     layers=trace.layers[lis].copy(), tokens=trace.tokens, mass=mass, output_error=err, iou=iou,
                     n_kept=n_kept, sinks=plan.sinks, seconds=time.perf_counter() - t0, model=dict(trace.model),
                     plan=plan)


def warm_up(trace: KVTrace, budget: int = 64) -> None:
    """Compile (or load from Numba's cache) every policy's kernels: each policy replayed on one layer of ``trace``,
    so that the first replay a user asks for is fast."""
    from workbench.kvcache.policies import POLICY_NAMES

    layer = [int(trace.layers[len(trace.layers) // 2])]
    for name in POLICY_NAMES:
        replay(trace, name, min(budget, trace.n_prefill), layers=layer)


def compare_policies(trace: KVTrace, policies, budget) -> list[dict]:
    """`Retention.summary` rows for several policies at one budget."""
    return [replay(trace, p, budget).summary() for p in policies]
