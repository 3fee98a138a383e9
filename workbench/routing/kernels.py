"""Numba kernels behind the MoE routers. Flat float64/int32/int64 arrays, one token (row) or one expert (column)
at a time, serial loops (results must not depend on thread scheduling).

Conventions (shared with the torch reference in tests/workbench/routing/reference.py):

* ``T`` tokens, ``E`` experts, ``k`` slots per token; a slot holds an expert index or -1.
* Top-k takes the largest values; **ties go to the lower index** (lower expert index within a token, earlier
  token within an expert). The k picks come out sorted by value, descending, ties by index.
* Slot ``(t, j)`` has the flat id ``t * k + j``. Capacity is enforced by visiting slots in a priority ``order``
  (computed in ``routers``); a slot whose expert already holds ``capacity`` slots is dropped.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def topk_row(vals, k, out):
    """Write into ``out[:k]`` the indices of the ``k`` largest ``vals`` (ties: lower index), best first.

    ``vals=[0.1, 0.5, 0.5, 0.2], k=2 -> out=[1, 2]``.
    """
    if k <= 0:
        return
    best = np.empty(k, np.float64)
    cnt = 0
    for i in range(vals.shape[0]):
        v = vals[i]
        if cnt == k and not (v > best[k - 1]):
            continue
        j = cnt if cnt < k else k - 1
        # shift strictly smaller values down: an equal value keeps its place ahead (it has the lower index)
        while j > 0 and best[j - 1] < v:
            best[j] = best[j - 1]
            out[j] = out[j - 1]
            j -= 1
        best[j] = v
        out[j] = i
        if cnt < k:
            cnt += 1


@njit(cache=True)
def topk_rows(scores, k):
    """Row-wise `topk_row`: ``scores`` float64 [T, E] -> int32 [T, k]."""
    n = scores.shape[0]
    out = np.empty((n, k), np.int32)
    buf = np.empty(k, np.int64)
    for t in range(n):
        topk_row(scores[t], k, buf)
        for j in range(k):
            out[t, j] = buf[j]
    return out


@njit(cache=True)
def softmax_rows(logits):
    """Softmax over the last axis of float64 [T, E] (max-shifted; the normaliser sums the sorted exponentials)."""
    n, e = logits.shape
    out = np.empty((n, e), np.float64)
    for t in range(n):
        m = logits[t, 0]
        for i in range(1, e):
            if logits[t, i] > m:
                m = logits[t, i]
        for i in range(e):
            out[t, i] = np.exp(logits[t, i] - m)
        # summing the sorted exponentials makes a token's probabilities independent of the order of its
        # experts, so permuted rows tie exactly and the earlier-token rule decides, not rounding
        srt = np.sort(out[t])
        s = 0.0
        for i in range(e):
            s += srt[i]
        for i in range(e):
            out[t, i] /= s
    return out


@njit(cache=True)
def assign_capacity(requested, order, capacity, n_experts):
    """Keep slots in ``order`` while their expert has room.

    ``requested`` int32 [T, k] (expert or -1), ``order`` int64 [T * k] flat slot ids, ``capacity`` >= 0
    (< 0: unlimited). Returns ``kept`` bool [T, k] and ``loads`` int64 [E] (kept slots per expert).
    """
    n, k = requested.shape
    kept = np.zeros((n, k), np.bool_)
    loads = np.zeros(n_experts, np.int64)
    for s in range(order.shape[0]):
        t = order[s] // k
        j = order[s] % k
        e = requested[t, j]
        if e < 0:
            continue
        if capacity < 0 or loads[e] < capacity:
            kept[t, j] = True
            loads[e] += 1
    return kept, loads


@njit(cache=True)
def reroute_overflow(scores, requested, kept, order, capacity, loads):
    """Capacity-aware token reroute, after `assign_capacity`.

    Each dropped slot (visited in ``order``) moves to the best-scored expert of its token (ties: lower index)
    that is below ``capacity`` and not already serving that token. ``kept`` and ``loads`` are updated in place.
    Returns ``assign`` int32 [T, k] (the expert finally used, -1 where still dropped) and ``rerouted`` bool [T, k].
    """
    n, k = requested.shape
    e_total = scores.shape[1]
    assign = np.full((n, k), -1, np.int32)
    rerouted = np.zeros((n, k), np.bool_)
    for t in range(n):
        for j in range(k):
            if kept[t, j]:
                assign[t, j] = requested[t, j]
    for s in range(order.shape[0]):
        t = order[s] // k
        j = order[s] % k
        if requested[t, j] < 0 or kept[t, j]:
            continue
        best = -1
        best_v = -np.inf
        for e in range(e_total):
            if loads[e] >= capacity:
                continue
            taken = False
            for jj in range(k):
                if assign[t, jj] == e:
                    taken = True
            if taken:
                continue
            if best < 0 or scores[t, e] > best_v:
                best = e
                best_v = scores[t, e]
        if best >= 0:
            assign[t, j] = best
            kept[t, j] = True
            rerouted[t, j] = True
            loads[best] += 1
    return assign, rerouted


@njit(cache=True)
def expert_choice_select(probs, capacity):
    """Expert choice: every expert takes its ``capacity`` highest-probability tokens (ties: earlier token).

    ``probs`` float64 [T, E] -> ``chosen`` bool [T, E]; every column holds exactly ``min(capacity, T)`` True.
    """
    n, e_total = probs.shape
    c = min(capacity, n)
    chosen = np.zeros((n, e_total), np.bool_)
    col = np.empty(n, np.float64)
    buf = np.empty(max(c, 1), np.int64)
    for e in range(e_total):
        for t in range(n):
            col[t] = probs[t, e]
        topk_row(col, c, buf)
        for j in range(c):
            chosen[buf[j], e] = True
    return chosen


@njit(cache=True)
def pack_chosen(chosen, probs, width):
    """Each token's chosen experts as slots, best probability first (ties: lower expert), padded with -1.

    ``chosen`` bool [T, E], ``probs`` float64 [T, E] -> int32 [T, width].
    """
    n, e_total = chosen.shape
    out = np.full((n, width), -1, np.int32)
    vals = np.empty(e_total, np.float64)
    buf = np.empty(max(width, 1), np.int64)
    for t in range(n):
        m = 0
        for e in range(e_total):
            if chosen[t, e]:
                vals[e] = probs[t, e]
                m += 1
            else:
                vals[e] = -np.inf
        if m == 0:
            continue
        topk_row(vals, m, buf)
        for j in range(m):
            out[t, j] = buf[j]
    return out


@njit(cache=True)
def group_limited_topk(biased, k, n_groups, topk_groups):
    """DeepSeek-V3 selection on biased scores float64 [T, E].

    Group score = sum of the top-2 biased scores of its ``E / n_groups`` experts (top-1 for groups of one);
    the ``topk_groups`` best groups (ties: lower group) are eligible; then the top-k eligible experts.
    Returns int32 [T, k].
    """
    n, e_total = biased.shape
    gsize = e_total // n_groups
    out = np.empty((n, k), np.int32)
    gscore = np.empty(n_groups, np.float64)
    gbuf = np.empty(topk_groups, np.int64)
    two = min(2, gsize)
    pbuf = np.empty(two, np.int64)
    masked = np.empty(e_total, np.float64)
    buf = np.empty(k, np.int64)
    for t in range(n):
        row = biased[t]
        for g in range(n_groups):
            seg = row[g * gsize:(g + 1) * gsize]
            topk_row(seg, two, pbuf)
            acc = 0.0
            for j in range(two):
                acc += seg[pbuf[j]]
            gscore[g] = acc
        topk_row(gscore, topk_groups, gbuf)
        masked[:] = -np.inf
        for j in range(topk_groups):
            g = gbuf[j]
            for i in range(g * gsize, (g + 1) * gsize):
                masked[i] = row[i]
        topk_row(masked, k, buf)
        for j in range(k):
            out[t, j] = buf[j]
    return out


@njit(cache=True)
def grouped_topk(scores, k, n_groups):
    """MoGE selection: ``k / n_groups`` experts inside each of the ``n_groups`` equal expert groups.

    ``scores`` float64 [T, E] -> int32 [T, k], the k picks sorted by score (ties: lower expert).
    """
    n, e_total = scores.shape
    gsize = e_total // n_groups
    per = k // n_groups
    out = np.empty((n, k), np.int32)
    pbuf = np.empty(per, np.int64)
    masked = np.empty(e_total, np.float64)
    buf = np.empty(k, np.int64)
    for t in range(n):
        row = scores[t]
        masked[:] = -np.inf
        for g in range(n_groups):
            topk_row(row[g * gsize:(g + 1) * gsize], per, pbuf)
            for j in range(per):
                masked[g * gsize + pbuf[j]] = row[g * gsize + pbuf[j]]
        topk_row(masked, k, buf)
        for j in range(k):
            out[t, j] = buf[j]
    return out
