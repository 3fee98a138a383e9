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
def _insert_range(vals, lo, hi, k, out, best, cnt):
    """Insert ``vals[lo:hi]`` into the running top-``k`` list ``out``/``best`` that holds ``cnt`` entries (best
    first; ties: the earlier index stays ahead); returns the new count."""
    for i in range(lo, hi):
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
    return cnt


@njit(cache=True)
def topk_range(vals, lo, hi, k, out, best):
    """Write into ``out[:k]`` the indices of the ``k`` largest of ``vals[lo:hi]`` (indices into ``vals``;
    ties: lower index), best first; ``best`` is float64 scratch of size >= k (no allocation per token).

    ``vals=[0.1, 0.5, 0.5, 0.2], lo=0, hi=4, k=2 -> out=[1, 2]``.
    """
    if k > 0:
        _insert_range(vals, lo, hi, k, out, best, 0)


@njit(cache=True)
def topk_rows(scores, k):
    """Row-wise `topk_row`: ``scores`` float64 [T, E] -> int32 [T, k]."""
    n, e = scores.shape
    out = np.empty((n, k), np.int32)
    buf = np.empty(k, np.int64)
    best = np.empty(k, np.float64)
    for t in range(n):
        row = scores[t]
        if k == 1:  # argmax, first maximum (selects rather than branches: random data mispredicts)
            bv = row[0]
            b = 0
            for i in range(1, e):
                v = row[i]
                gt = v > bv
                b = i if gt else b
                bv = v if gt else bv
            out[t, 0] = b
            continue
        topk_range(row, 0, e, k, buf, best)
        for j in range(k):
            out[t, j] = buf[j]
    return out


@njit(cache=True)
def softmax_rows(logits):
    """Softmax over the last axis of float64 [T, E] (max-shifted; the normaliser sums the sorted
    exponentials).

    Summing the sorted exponentials makes a token's probabilities independent of the order of its experts, so
    permuted rows tie exactly and the earlier-token rule decides, not rounding. The sort is a bitonic sorting
    network (in the form where every comparator puts the smaller value first) run on a block of tokens at
    once: the block is stored experts x tokens and each compare-exchange is a min/max across the block's
    tokens, which vectorises. E is padded to a power of two with (virtual) +inf, which such a network never
    moves, so comparators that touch the padding are skipped. The left-to-right sum of the sorted values is
    the same whatever sorted them.
    """
    n, e = logits.shape
    out = np.empty((n, e), np.float64)
    width = 1
    while width < e:
        width *= 2
    block = 32
    buf = np.empty((e, block), np.float64)  # one column per token of the block
    total = np.empty(block, np.float64)
    for t0 in range(0, n, block):
        nb = min(block, n - t0)
        for b in range(nb):
            t = t0 + b
            m = logits[t, 0]
            for i in range(1, e):
                v = logits[t, i]
                m = v if v > m else m
            for i in range(e):
                v = np.exp(logits[t, i] - m)
                out[t, i] = v
                buf[i, b] = v
        size = 2
        while size <= width:
            stride = size - 1  # first the mirrored comparators of each block of `size`, then half-cleaners
            while stride > 0:
                for i in range(e):
                    j = i ^ stride
                    if j <= i or j >= e:
                        continue
                    for b in range(nb):
                        lo = buf[i, b]
                        hi = buf[j, b]
                        buf[i, b] = lo if lo < hi else hi
                        buf[j, b] = hi if lo < hi else lo
                stride = size // 4 if stride == size - 1 else stride // 2
            size *= 2
        for b in range(nb):
            total[b] = 0.0
        for i in range(e):
            for b in range(nb):
                total[b] += buf[i, b]
        for b in range(nb):
            s = total[b]
            for i in range(e):
                out[t0 + b, i] /= s
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


_SIGN = np.int64(-9223372036854775808)


@njit(cache=True)
def kth_largest(col, c, keys, hist, cand):
    """The ``c``-th largest value of the float64 ``col`` (``1 <= c <= len(col)``), in linear time: a histogram
    of the top 16 bits of each value's order-preserving integer key finds the bucket that holds it, then
    `nth_smallest` runs on that bucket alone. Scratch: ``keys`` int64 [n], ``hist`` int64 [65536], ``cand``
    float64 [n]. ``col=[0.1, 0.5, 0.5, 0.2], c=3 -> 0.2``.
    """
    n = col.shape[0]
    bits = col.view(np.int64)
    hist[:] = 0
    for t in range(n):
        b = bits[t]
        if b < 0:  # a negative float: flip its magnitude bits so that the signed order is the float order
            b ^= 0x7FFFFFFFFFFFFFFF
        u = b ^ _SIGN  # the same order as unsigned bits
        keys[t] = u
        hist[(u >> 48) & 0xFFFF] += 1
    need = c
    d = 65535
    while hist[d] < need:
        need -= hist[d]
        d -= 1
    m = 0
    for t in range(n):
        if ((keys[t] >> 48) & 0xFFFF) == d:
            cand[m] = col[t]
            m += 1
    return nth_smallest(cand, m, m - need)


@njit(cache=True)
def nth_smallest(a, m, kth):
    """The value at index ``kth`` of ``a[:m]`` sorted ascending (quickselect, median-of-three pivot, three-way
    partition so that runs of equal values end it at once); reorders ``a[:m]``. ``[3, 1, 2], 3, 0 -> 1``.
    (Written out rather than ``np.partition``, whose numba version takes seconds to compile.)
    """
    lo = 0
    hi = m
    while hi - lo > 1:
        x = a[lo]
        y = a[(lo + hi) // 2]
        z = a[hi - 1]
        pivot = max(min(x, y), min(max(x, y), z))
        lt = lo
        i = lo
        gt = hi
        while i < gt:  # a[lo:lt] < pivot, a[lt:i] == pivot, a[gt:hi] > pivot
            v = a[i]
            if v < pivot:
                a[i] = a[lt]
                a[lt] = v
                lt += 1
                i += 1
            elif v > pivot:
                gt -= 1
                a[i] = a[gt]
                a[gt] = v
            else:
                i += 1
        if kth < lt:
            hi = lt
        elif kth >= gt:
            lo = gt
        else:
            return pivot
    return a[lo]


@njit(cache=True)
def expert_choice_select(probs, capacity):
    """Expert choice: every expert takes its ``capacity`` highest-probability tokens (ties: earlier token).

    ``probs`` float64 [T, E] -> ``chosen`` bool [T, E]; every column holds exactly ``min(capacity, T)`` True.
    Per expert: the capacity-th largest probability (`kth_largest`, linear time), then every token above it
    and, in token order, as many tokens equal to it as there is room for. The columns are first copied out, a
    block of rows at a time (reading a column of a [T, E] array touches a cache line per token).
    """
    n, e_total = probs.shape
    c = min(capacity, n)
    chosen = np.zeros((n, e_total), np.bool_)
    if c >= n:
        chosen[:] = True
        return chosen
    cols = np.empty((e_total, n), np.float64)
    for t0 in range(0, n, 64):
        t1 = min(n, t0 + 64)
        for e in range(e_total):
            for t in range(t0, t1):
                cols[e, t] = probs[t, e]
    keys = np.empty(n, np.int64)
    hist = np.empty(65536, np.int64)
    cand = np.empty(n, np.float64)
    for e in range(e_total):
        col = cols[e]
        thr = kth_largest(col, c, keys, hist, cand)
        room = c
        for t in range(n):
            room -= col[t] > thr
        for t in range(n):
            v = col[t]
            if v > thr:
                chosen[t, e] = True
            elif v == thr and room > 0:
                chosen[t, e] = True
                room -= 1
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
    best = np.empty(max(width, 1), np.float64)
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
        topk_range(vals, 0, e_total, m, buf, best)
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
    eligible = np.empty(n_groups, np.bool_)
    buf = np.empty(k, np.int64)
    best = np.empty(k, np.float64)
    for t in range(n):
        row = biased[t]
        if topk_groups < n_groups:
            for g in range(n_groups):
                # the group's two best values, branch-free (ties do not matter for their sum)
                v0 = -np.inf
                v1 = -np.inf
                for i in range(g * gsize, (g + 1) * gsize):
                    v = row[i]
                    v1 = max(v1, min(v0, v))
                    v0 = max(v0, v)
                acc = 0.0
                acc += v0
                if gsize > 1:
                    acc += v1
                gscore[g] = acc
            # eligible: fewer than topk_groups groups beat it (a higher score, or an equal one and lower)
            for g in range(n_groups):
                sg = gscore[g]
                rank = 0
                for h in range(n_groups):
                    rank += (gscore[h] > sg) or (gscore[h] == sg and h < g)
                eligible[g] = rank < topk_groups
        else:
            eligible[:] = True
        # top-k over the eligible groups' experts, visited in index order (ties: lower index)
        cnt = 0
        for g in range(n_groups):
            if eligible[g]:
                cnt = _insert_range(row, g * gsize, (g + 1) * gsize, k, buf, best, cnt)
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
    pbest = np.empty(per, np.float64)
    picked = np.zeros(e_total, np.bool_)
    buf = np.empty(k, np.int64)
    best = np.empty(k, np.float64)
    for t in range(n):
        row = scores[t]
        for g in range(n_groups):
            topk_range(row, g * gsize, (g + 1) * gsize, per, pbuf, pbest)
            for j in range(per):
                picked[pbuf[j]] = True
        # the k picks best first, visited in index order (ties: lower index)
        cnt = 0
        for i in range(e_total):
            if not picked[i]:
                continue
            picked[i] = False
            v = row[i]
            j = cnt
            while j > 0 and best[j - 1] < v:
                best[j] = best[j - 1]
                buf[j] = buf[j - 1]
                j -= 1
            best[j] = v
            buf[j] = i
            cnt += 1
        for j in range(k):
            out[t, j] = buf[j]
    return out
