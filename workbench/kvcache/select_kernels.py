"""Fused numba kernels for the query-aware selection policies (TokenSelect, FASA, HISA): from raw ``q . k``
logits (one BLAS product per KV head, done by the caller) to the kept mask in one pass per decode step, without
materialising the [heads, steps, positions] score array. Same conventions as `kernels` (selection keeps the
current position plus the ``budget - 1`` best earlier positions, ties to the oldest); same scores as the numpy
helpers in `scores` (`tokenselect_scores`, `fasa_scores`, `hisa_scores`), which the torch path uses.

Shapes: ``G`` query heads aggregated together, ``S`` decode steps, ``T`` positions; ``logits`` float32 [G, S, T]
holds the raw products (``scaling`` is applied here, as ``decode_logits`` does); positions after the step's own
query are never read.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from workbench.kvcache.kernels import SAMPLE, _topk_into

AGG_SUM, AGG_MEAN, AGG_MAX = 0, 1, 2


@njit(cache=True)
def _softmax_into(x, n, scaling, e):
    """``e[:n] = softmax(scaling * x[:n])`` in float32 (the sum in float64); returns nothing."""
    m = -np.inf
    for i in range(n):
        v = x[i] * scaling
        m = v if v > m else m
    z = 0.0
    for i in range(n):
        v = np.exp(x[i] * scaling - m)
        e[i] = v
        z += v
    zf = np.float32(z)
    for i in range(n):
        e[i] = e[i] / zf


@njit(cache=True)
def softmax_select_head(logits, n_pre, scaling, how, budget, kept):
    """Aggregate ``softmax(scaling * logits)`` of the G query heads (``how``: AGG_SUM, AGG_MEAN or AGG_MAX) at each
    step and keep the current position plus the ``budget - 1`` best earlier positions. ``kept`` bool [S, T] (out,
    must start all False)."""
    n_g, n_s, t = logits.shape
    acc = np.empty(t, np.float32)
    e = np.empty(t, np.float32)
    buf = np.empty(t + SAMPLE, np.float32)
    for s in range(n_s):
        p = n_pre + s
        if p + 1 <= budget:
            kept[s, : p + 1] = True
            continue
        _softmax_into(logits[0, s], p + 1, scaling, acc)
        for g in range(1, n_g):
            _softmax_into(logits[g, s], p + 1, scaling, e)
            if how == AGG_MAX:
                for i in range(p + 1):
                    acc[i] = max(acc[i], e[i])
            else:
                for i in range(p + 1):
                    acc[i] += e[i]
        if how == AGG_MEAN:
            for i in range(p + 1):
                acc[i] /= n_g
        _topk_into(acc, p, budget - 1, buf, kept[s])
        kept[s, p] = True


@njit(cache=True, parallel=True)
def softmax_select_heads(logits, group, n_pre, scaling, how, budget, kept):
    """`softmax_select_head` for every KV head: ``logits`` [H * group, S, T], ``kept`` [H, S, T]."""
    for h in prange(kept.shape[0]):
        softmax_select_head(logits[h * group:(h + 1) * group], n_pre, scaling, how, budget, kept[h])


@njit(cache=True)
def hisa_select_head(logits, coarse, n_pre, scaling, block, n_blocks, budget, kept):
    """HISA for one KV head. ``coarse`` float32 [S, B]: each complete block's score (max over the group of
    q . mean block key); at each step the best ``n_blocks`` complete earlier blocks plus the current block are the
    candidates, ranked by the max over the group of ``scaling * logits``; ``kept`` bool [S, T] (out, all False)."""
    n_g, n_s, t = logits.shape
    nb = coarse.shape[1]
    row = np.empty(t, np.float32)
    buf = np.empty(t + SAMPLE, np.float32)
    bbuf = np.empty(nb + SAMPLE, np.float32)
    chosen = np.zeros(max(nb, 1), np.bool_)
    for s in range(n_s):
        p = n_pre + s
        if p + 1 <= budget:
            kept[s, : p + 1] = True
            continue
        cur = p // block
        row[:p] = -np.inf
        avail = min(cur, nb)
        chosen[:] = False
        if avail > 0:
            _topk_into(coarse[s], avail, min(n_blocks, avail), bbuf, chosen)
        for b in range(cur + 1):
            if b < avail and not chosen[b]:
                continue
            for i in range(b * block, min((b + 1) * block, p)):
                v = logits[0, s, i] * scaling
                for g in range(1, n_g):
                    x = logits[g, s, i] * scaling
                    if x > v:
                        v = x
                row[i] = v
        _topk_into(row, p, budget - 1, buf, kept[s])
        kept[s, p] = True


@njit(cache=True, parallel=True)
def hisa_select_heads(logits, coarse, group, n_pre, scaling, block, n_blocks, budget, kept):
    """`hisa_select_head` for every KV head: ``logits`` [H * group, S, T], ``coarse`` [H, S, B], ``kept`` [H, S, T]."""
    for h in prange(kept.shape[0]):
        hisa_select_head(logits[h * group:(h + 1) * group], coarse[h], n_pre, scaling, block, n_blocks, budget,
                         kept[h])
