"""Heavy hitters: the positions that have received the most attention so far, as a policy scored them.

For an H2O replay (any policy whose `Plan` accumulates attention) the score is H2O's own, exactly as its kernel
(`kernels.evict_head`, ``MODE_ACCUMULATE``) accumulates it: the attention each context position received during prefill, plus at every decode step the
query's attention renormalised over the positions the cache held at that step (the softmax over the kept keys),
added only to the positions that were kept. The positions H2O evicts are therefore the lowest-scored ones outside
its sinks and recent window, and a view that marks "heavy hitters" marks what H2O itself ranks highest.

For every other policy no accumulated score drives the decisions, so the score is the attention received by each
position from the full cache (prefill column sums plus the decode queries so far), labelled as such.

Example::

    r = replay(trace, "h2o", 64, layers=[15])
    scores = attention_received(trace, r, 0, head=1, step=10)   # float64 [T]
    heavy_hitters(trace, r, 0, head=1, step=10, k=8)             # int64 [8], sorted positions
"""

from __future__ import annotations

import numpy as np

from workbench.errors import KVCacheError


def _check(trace, retention, layer_index: int, head: int, step: int) -> int:
    if len(trace.tokens) != retention.n_tokens or trace.n_prefill != retention.n_prefill:
        raise KVCacheError("the retention was replayed on another trace than the one given")
    if not 0 <= layer_index < retention.kept.shape[0]:
        raise KVCacheError(f"layer index {layer_index} is outside the {retention.kept.shape[0]} replayed layers")
    if not 0 <= head < retention.kept.shape[1]:
        raise KVCacheError(f"KV head {head} does not exist; this model has {retention.kept.shape[1]} KV heads")
    if not 0 <= step < retention.n_steps:
        raise KVCacheError(f"step must be in [0, {retention.n_steps - 1}], got {step}")
    return trace.layer_index(int(retention.layers[layer_index]))


def uses_replay_scores(trace, retention) -> bool:
    """True when `attention_received` gives the policy's own decision scores (an evictor whose plan accumulates
    attention: H2O), not the full-cache attention."""
    return retention.plan.selector == "evict" and retention.plan.update == "accumulate"


def attention_received(trace, retention, layer_index: int, head: int, step: int) -> np.ndarray:
    """float64 [T]: each position's accumulated attention after decode step ``step`` for KV head ``head`` of the
    replayed layer ``layer_index`` (an index into ``retention.layers``): H2O's own score for an H2O replay (see the
    module docstring), else the full-cache attention received. Positions not yet written score 0."""
    tli = _check(trace, retention, layer_index, head, step)
    score = np.zeros(trace.n_tokens)
    score[: trace.n_prefill] = trace.prefill_colsum[tli][head]
    attn = trace.f32("attn", tli)[head, : step + 1].astype(np.float64)      # [step + 1, T]
    if uses_replay_scores(trace, retention):
        kept = retention.kept[layer_index, head, : step + 1]
        held = np.where(kept, attn, 0.0)
        mass = held.sum(axis=1)
        mass[mass <= 0.0] = 1.0
        score += (held / mass[:, None]).sum(axis=0)
    else:
        score += attn.sum(axis=0)
    return score


def top_positions(scores: np.ndarray, n_visible: int, k: int) -> np.ndarray:
    """int64 [<= k]: the ``k`` highest of ``scores[:n_visible]`` (ties to the older position), in position order."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise KVCacheError(f"k must be a non-negative integer, got {k!r}")
    top = np.argsort(-scores[:n_visible], kind="stable")[: min(int(k), n_visible)]
    return np.sort(top).astype(np.int64)


def heavy_hitters(trace, retention, layer_index: int, head: int, step: int, k: int) -> np.ndarray:
    """int64 [<= k]: the ``k`` highest-scored positions of `attention_received` among those written by ``step``
    (ties to the older position), in position order."""
    scores = attention_received(trace, retention, layer_index, head, step)
    return top_positions(scores, retention.n_prefill + step + 1, k)
