"""Scores the policies rank positions by, computed from a `KVTrace` for one captured layer.

Shapes: ``H`` KV heads, ``G`` query heads per KV head, ``S`` decode steps, ``T`` positions, ``n`` context length.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import KVCacheError
from workbench.kvcache.dots import key_tiles
from workbench.kvcache.kernels import pool1d, quest_bounds_heads
from workbench.kvcache.trace import KVTrace


def snapkv_scores(trace: KVTrace, li: int, window: int, kernel: int, pooling: str) -> np.ndarray:
    """SnapKV: attention from the last ``window`` context queries summed per position, pooled over the
    positions before the window. float64 [H, T]; the window and every decode position score +inf."""
    n = trace.n_prefill
    obs = trace.f32("obs_attn", li)[:, trace.obs_window - window:, :]
    votes = obs.sum(axis=1, dtype=np.float64)
    out = np.full((trace.n_kv_heads, trace.n_tokens), np.inf)
    prefix = n - window
    for h in range(trace.n_kv_heads):
        v = votes[h, :prefix]
        out[h, :prefix] = v if pooling == "none" or prefix == 0 else pool1d(v, kernel, pooling == "avg")
    return out


def h2o_scores(trace: KVTrace, li: int) -> np.ndarray:
    """H2O's starting scores: attention each context position received during prefill; decode positions 0."""
    out = np.zeros((trace.n_kv_heads, trace.n_tokens))
    out[:, : trace.n_prefill] = trace.prefill_colsum[li]
    return out


def tova_scores(trace: KVTrace, li: int) -> np.ndarray:
    """TOVA's starting scores: the attention of the last context query; decode positions 0."""
    out = np.zeros((trace.n_kv_heads, trace.n_tokens))
    out[:, : trace.n_prefill] = trace.f32("obs_attn", li)[:, -1, :]
    return out


def tova_layer_scores(trace: KVTrace, li: int) -> np.ndarray:
    """Layer-wide TOVA's starting scores (official ``tova_cache.py``): the last context query's attention averaged
    over every query head of the layer; decode positions 0. float64 [T]. Needs the trace's ``attn_heads``."""
    if trace.attn_heads is None:
        raise KVCacheError("this trace has no per-query-head attention (it was saved before attn_heads existed): "
                           "capture the text again for the layer-wide TOVA, or use make_policy('tova', "
                           "heads='per_kv_head')")
    want = (trace.n_layers, trace.n_query_heads, trace.n_steps + 1, trace.n_tokens)
    if trace.attn_heads.shape != want:
        raise KVCacheError(f"this trace's attn_heads has shape {trace.attn_heads.shape}, expected {want} (layers, "
                           "query heads, decode steps + 1, tokens): the file is damaged; capture the text again")
    out = np.zeros(trace.n_tokens)
    row = trace.f32("attn_heads", li)[:, 0, : trace.n_prefill]
    out[: trace.n_prefill] = row.sum(axis=0, dtype=np.float64) / row.shape[0]
    return out


def plan_scores(trace: KVTrace, li: int, plan, rng=None) -> np.ndarray:
    """The starting score of every position that an eviction `Plan` names (``plan.score``; KVCrush's base scores
    too), shared by both backends: float64 [H, T] (read-only where one ranking is broadcast to every head).
    ``rng`` (a numpy Generator) draws the "random" scores."""
    h, t = trace.n_kv_heads, trace.n_tokens
    score = plan.score
    if score == "position":
        return np.broadcast_to(np.arange(t, dtype=np.float64), (h, t))
    if score == "random":
        return rng.random((h, t))
    if score == "h2o":
        return h2o_scores(trace, li)
    if score == "tova":
        return tova_scores(trace, li)
    if score == "tova_layer":
        return np.broadcast_to(tova_layer_scores(trace, li), (h, t))
    if score == "snapkv":
        return snapkv_scores(trace, li, plan.window, plan.args["kernel"], plan.args["pooling"])
    raise KVCacheError(f"no scores named {score!r}")


def raw_logits(trace: KVTrace, li: int) -> np.ndarray:
    """Unscaled q . k of every decode query against every position (future ones included), per query head:
    float32 [Q, S, T]. One matrix product per KV head (its group's queries stacked)."""
    g, h = trace.group_size, trace.n_kv_heads
    q = trace.f32("queries", li)[:, trace.n_prefill:, :]
    s, d = q.shape[1], q.shape[2]
    return np.matmul(q.reshape(h, g * s, d), trace.f32("keys", li).transpose(0, 2, 1)).reshape(h * g, s, -1)


def partial_queries_keys(trace: KVTrace, li: int, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decode queries and the keys restricted to ``dims`` ([Q, d'] indices, per query head): float32
    ``q`` [Q, S, d'] and the keys' tiles ``[Q, ceil(T / TILE), d', TILE]`` (`dots.key_tiles`)."""
    g = trace.group_size
    q = np.take_along_axis(trace.f32("queries", li)[:, trace.n_prefill:, :], dims[:, None, :], axis=2)
    keys = trace.f32("keys", li)                                               # [H, T, D]
    tiles = [key_tiles(keys[qi // g], np.ascontiguousarray(dims[qi])) for qi in range(dims.shape[0])]
    return np.ascontiguousarray(q), np.stack(tiles)


def key_scatter(trace: KVTrace, li: int) -> np.ndarray:
    """The scatter matrix of each KV head's context keys before the last context position, about their mean:
    float64 [H, D, D] (sum over positions of the centred key's outer product with itself). Cached on the trace by
    `fasa_dominant_chunks` (it does not depend on the policy's parameters)."""
    keys = trace.f32("keys", li)[:, : trace.n_prefill - 1, :]                  # [H, n-1, D] (strictly earlier)
    centred = np.subtract(keys, keys.mean(axis=1, dtype=np.float64)[:, None, :], dtype=np.float64)
    return np.matmul(centred.transpose(0, 2, 1), centred)


def fasa_dominant_chunks(trace: KVTrace, li: int, n_chunks: int, calibration: int) -> np.ndarray:
    """FASA's dominant frequency chunks per query head: int64 [Q, n_chunks] indices of RoPE pairs (d, d + D/2).

    A chunk's agreement is the correlation, over the context positions before the last one, between its partial
    logits q_c . k_c and the full logits q . k, averaged over the last ``calibration`` context queries; the best
    ``n_chunks`` are dominant. Both logits are linear in the centred keys, so every correlation comes from the
    keys' D x D scatter matrix C (`key_scatter`, cached on the trace): cov(part_c, full) = q_c . (C q)_c,
    var(part_c) = q_c' C_cc q_c, var(full) = q' C q (float64)."""
    n, g, half = trace.n_prefill, trace.group_size, trace.head_dim // 2
    c = max(1, min(calibration, n - 1))
    scatter = np.repeat(trace.cached(("key_scatter", li), lambda: key_scatter(trace, li)), g, axis=0)  # [Q, D, D]
    q = trace.f32("queries", li)[:, n - c: n, :].astype(np.float64)            # [Q, c, D]
    cq = np.matmul(q, scatter)                                                  # [Q, c, D] (C symmetric)
    var_full = (q * cq).sum(axis=-1, keepdims=True)                             # [Q, c, 1]
    lo, hi = q[..., :half], q[..., half:]
    cov = lo * cq[..., :half] + hi * cq[..., half:]                             # [Q, c, half]
    d = np.arange(half)
    c_ll = scatter[:, d, d][:, None, :]
    c_hh = scatter[:, d + half, d + half][:, None, :]
    c_lh = scatter[:, d, d + half][:, None, :]
    var_part = np.maximum(lo * lo * c_ll + 2.0 * lo * hi * c_lh + hi * hi * c_hh, 0.0)
    agreement = (cov / (np.sqrt(var_part * np.maximum(var_full, 0.0)) + 1e-12)).mean(axis=1)  # [Q, half]
    order = np.argsort(-agreement, axis=1, kind="stable")[:, :n_chunks]
    return np.sort(order, axis=1)


def hisa_block_means(trace: KVTrace, li: int, block: int) -> np.ndarray:
    """HISA's block representatives: the mean key of every complete block of ``block`` positions, float32
    [H, B, D] with B = T // block (numpy's float32 mean: each block summed in order)."""
    nb = trace.n_tokens // block
    keys = trace.f32("keys", li)[:, : nb * block]
    return keys.reshape(trace.n_kv_heads, nb, block, trace.head_dim).mean(axis=2)   # nb = 0 if t < block


def quest_page_bounds(queries, keys, n_pre, page):
    """Quest's page bounds of every decode query, max over a KV head's query group (float64).

    ``queries`` [H, G, T, D], ``keys`` [H, T, D] -> [H, S, P] for the P = T // page complete pages. The bound of
    a page is sum_d max(q_d * min_d, q_d * max_d), summed in order (`kernels.quest_bounds_head`)."""
    h, _, t, _ = queries.shape
    out = np.empty((h, t - n_pre, t // page))
    quest_bounds_heads(np.ascontiguousarray(queries), np.ascontiguousarray(keys), n_pre, page, out)
    return out


def head_signatures(trace: KVTrace, li: int) -> np.ndarray:
    """KVCrush's binary head-behaviour signature of every context position: bit h is set when query head h gave
    the position more than its mean observation-window attention. bool [n, Q]."""
    votes = trace.obs_votes_heads[li]                                         # [Q, n]
    return (votes > votes.mean(axis=1, keepdims=True)).T
