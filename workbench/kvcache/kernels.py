"""Numba kernels behind the KV-cache policies. Flat arrays, one KV head per call (``prange`` over heads).

Conventions (shared with the pure-numpy references in tests/workbench/kvcache/reference.py):

* ``T`` positions, ``n_pre`` prefill positions, ``S = T - n_pre`` decode steps; step ``s`` is the query at
  ``p = n_pre + s``; ``kept[s, i]`` says whether that query may attend to position ``i`` (always ``i <= p``; the
  current position ``p`` is always kept).
* Eviction takes the lowest score among unprotected cached positions; ties go to the oldest position.
  Protected: positions ``< n_sinks`` and the ``n_recent`` most recent positions (the current one included).
* Selection keeps ``budget`` positions: the current one plus the highest scores; ties go to the oldest position.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

MODE_STATIC = 0       # scores fixed in advance for every position (window, recency, random, SnapKV family)
MODE_ACCUMULATE = 1   # H2O: add each step's attention, renormalised over the cache
MODE_LAST_QUERY = 2   # TOVA: replace with each step's attention


@njit(cache=True)
def _evict_lowest(score, in_cache, k, lo, hi):
    """Evict the ``k`` lowest-scored cached positions in [lo, hi) (ties: oldest first)."""
    if k <= 0:
        return
    if k == 1:
        best = -1
        best_score = np.inf
        for i in range(lo, hi):
            if in_cache[i] and score[i] < best_score:
                best = i
                best_score = score[i]
        if best < 0:  # every candidate scored +inf: evict the oldest
            for i in range(lo, hi):
                if in_cache[i]:
                    best = i
                    break
        in_cache[best] = False
        return
    n = 0
    for i in range(lo, hi):
        if in_cache[i]:
            n += 1
    idx = np.empty(n, np.int64)
    vals = np.empty(n, np.float64)
    j = 0
    for i in range(lo, hi):
        if in_cache[i]:
            idx[j] = i
            vals[j] = score[i]
            j += 1
    order = np.argsort(vals, kind="mergesort")
    for j in range(min(k, n)):
        in_cache[idx[order[j]]] = False


@njit(cache=True)
def evict_head(scores0, attn, n_pre, budget, n_sinks, n_recent, mode, decode_evict, kept):
    """Replay one KV head's eviction. ``scores0`` float64 [T], ``attn`` float32 [S, T], ``kept`` bool [S, T] (out).

    ``decode_evict`` False: compress the context once to ``budget`` (protecting sinks and the last ``n_recent``
    context positions), then append. True: after adding each decode token, evict down to ``budget``.
    """
    t = scores0.shape[0]
    n_steps = attn.shape[0]
    score = scores0.copy()
    in_cache = np.zeros(t, np.bool_)
    in_cache[:n_pre] = True
    size = n_pre
    if not decode_evict and n_pre > budget:
        _evict_lowest(score, in_cache, n_pre - budget, n_sinks, max(n_sinks, n_pre - n_recent))
        size = budget
    for s in range(n_steps):
        p = n_pre + s
        in_cache[p] = True
        size += 1
        if decode_evict and size > budget:
            _evict_lowest(score, in_cache, size - budget, n_sinks, max(n_sinks, p - n_recent + 1))
            size = budget
        for i in range(p + 1):
            kept[s, i] = in_cache[i]
        if mode == MODE_ACCUMULATE or mode == MODE_LAST_QUERY:
            mass = 0.0
            for i in range(p + 1):
                if in_cache[i]:
                    mass += attn[s, i]
            if mass <= 0.0:
                mass = 1.0
            for i in range(p + 1):
                if in_cache[i]:
                    if mode == MODE_ACCUMULATE:
                        score[i] += attn[s, i] / mass
                    else:
                        score[i] = attn[s, i] / mass


@njit(cache=True, parallel=True)
def evict_heads(scores0, attn, n_pre, budgets, n_sinks, n_recent, mode, decode_evict, kept):
    """`evict_head` for every head: ``scores0`` [H, T], ``attn`` [H, S, T], ``budgets`` int64 [H], ``kept`` [H, S, T]."""
    for h in prange(scores0.shape[0]):
        evict_head(scores0[h], attn[h], n_pre, budgets[h], n_sinks, n_recent, mode, decode_evict, kept[h])


@njit(cache=True)
def _topk_mask(vals, k, out):
    """Set ``out[i]`` for the ``k`` largest ``vals`` (ties: lowest index first)."""
    n = vals.shape[0]
    if k >= n:
        out[:n] = True
        return
    if k <= 0:
        return
    thr = np.partition(-vals, k - 1)[k - 1]  # -(k-th largest)
    taken = 0
    for i in range(n):
        if -vals[i] < thr:
            out[i] = True
            taken += 1
    for i in range(n):
        if taken >= k:
            break
        if -vals[i] == thr and not out[i]:
            out[i] = True
            taken += 1


@njit(cache=True)
def select_head(scores, n_pre, budget, kept):
    """Per-step selection for one head: ``scores`` float32 [S, T]; keeps the current position plus the
    ``budget - 1`` best-scored earlier positions (all of them while ``p + 1 <= budget``)."""
    for s in range(scores.shape[0]):
        p = n_pre + s
        if p + 1 <= budget:
            kept[s, : p + 1] = True
            continue
        row = np.zeros(p, np.bool_)
        _topk_mask(scores[s, :p].astype(np.float64), budget - 1, row)
        kept[s, :p] = row
        kept[s, p] = True


@njit(cache=True, parallel=True)
def select_heads(scores, n_pre, budget, kept):
    for h in prange(scores.shape[0]):
        select_head(scores[h], n_pre, budget, kept[h])


@njit(cache=True)
def page_bounds(q, kmin, kmax):
    """Quest's upper bound of ``q . k`` for every key of a page: sum_d max(q_d * min_d, q_d * max_d).
    ``q`` [D], ``kmin``/``kmax`` [P, D] -> [P]."""
    out = np.empty(kmin.shape[0], np.float64)
    for j in range(kmin.shape[0]):
        acc = 0.0
        for d in range(q.shape[0]):
            a = q[d] * kmin[j, d]
            b = q[d] * kmax[j, d]
            acc += a if a > b else b
        out[j] = acc
    return out


@njit(cache=True)
def quest_head(queries, keys, n_pre, budget, page, kept):
    """Quest for one KV head. ``queries`` float32 [G, T, D] (the group's query heads), ``keys`` [T, D].

    Pages are ``page`` consecutive positions; at step s the page holding ``p`` is always kept and the other
    ``budget // page - 1`` pages with the highest bound (max over the group's heads) are kept whole."""
    t, d = keys.shape
    n_full = t // page
    kmin = np.empty((n_full, d), np.float32)
    kmax = np.empty((n_full, d), np.float32)
    for j in range(n_full):
        for c in range(d):
            lo = keys[j * page, c]
            hi = lo
            for i in range(j * page + 1, (j + 1) * page):
                v = keys[i, c]
                if v < lo:
                    lo = v
                if v > hi:
                    hi = v
            kmin[j, c] = lo
            kmax[j, c] = hi
    n_pages = budget // page
    for s in range(kept.shape[0]):
        p = n_pre + s
        if p + 1 <= budget:
            kept[s, : p + 1] = True
            continue
        cur = p // page
        for i in range(cur * page, p + 1):
            kept[s, i] = True
        if n_pages <= 1 or cur == 0:
            continue
        best = np.full(cur, -np.inf)
        for g in range(queries.shape[0]):
            b = page_bounds(queries[g, p], kmin[:cur], kmax[:cur])
            for j in range(cur):
                if b[j] > best[j]:
                    best[j] = b[j]
        chosen = np.zeros(cur, np.bool_)
        _topk_mask(best, n_pages - 1, chosen)
        for j in range(cur):
            if chosen[j]:
                for i in range(j * page, (j + 1) * page):
                    kept[s, i] = True


@njit(cache=True, parallel=True)
def quest_heads(queries, keys, n_pre, budget, page, kept):
    """`quest_head` for every head: ``queries`` [H, G, T, D], ``keys`` [H, T, D], ``kept`` [H, S, T]."""
    for h in prange(keys.shape[0]):
        quest_head(queries[h], keys[h], n_pre, budget, page, kept[h])


@njit(cache=True)
def pool1d(x, kernel, avg):
    """Same-size 1-D max (or average) pooling of ``x`` [N] with an odd ``kernel`` (SnapKV's smoothing)."""
    n = x.shape[0]
    r = kernel // 2
    out = np.empty(n, np.float64)
    for i in range(n):
        lo = max(0, i - r)
        hi = min(n, i + r + 1)
        if avg:
            acc = 0.0
            for j in range(lo, hi):
                acc += x[j]
            out[i] = acc / kernel  # zero padding, as F.avg_pool1d(padding=r) does
        else:
            m = x[lo]
            for j in range(lo + 1, hi):
                if x[j] > m:
                    m = x[j]
            out[i] = m
    return out


@njit(cache=True, parallel=True)
def retention_metrics(attn, kept, n_pre, mass, iou, n_kept):
    """Per head and step: attention mass kept, IoU with the oracle set of the same size, and positions kept.
    ``attn`` float32 [H, S, T], ``kept`` bool [H, S, T]; outputs [H, S]. The oracle set of size k is the current
    position plus the k - 1 earlier positions with the most attention (the selection convention); ties at its
    threshold count in the policy's favour."""
    n_h, n_s, _ = attn.shape
    for h in prange(n_h):
        for s in range(n_s):
            p = n_pre + s
            total = 0.0
            got = 0.0
            k = 0
            for i in range(p + 1):
                a = attn[h, s, i]
                total += a
                if kept[h, s, i]:
                    got += a
                    k += 1
            mass[h, s] = got / total if total > 0 else 1.0
            n_kept[h, s] = k
            if k >= p + 1:
                iou[h, s] = 1.0
                continue
            inter = 1 if kept[h, s, p] else 0
            m = k - 1  # earlier positions in the oracle set
            if m > 0:
                row = attn[h, s, :p].astype(np.float64)
                thr = -np.partition(-row, m - 1)[m - 1]
                above = 0
                kept_above = 0
                kept_tie = 0
                for i in range(p):
                    if row[i] > thr:
                        above += 1
                        if kept[h, s, i]:
                            kept_above += 1
                    elif row[i] == thr and kept[h, s, i]:
                        kept_tie += 1
                inter += kept_above + min(kept_tie, m - above)
            iou[h, s] = inter / (2 * k - inter)
