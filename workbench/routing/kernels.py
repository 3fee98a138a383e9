"""Numba kernels behind the MoE routers. Flat float64/int32/int64 arrays, one token (row) or one expert (column)
at a time, serial loops (results must not depend on thread scheduling).

Conventions (shared with the torch reference in tests/workbench/routing/reference.py):

* ``T`` tokens, ``E`` experts, ``k`` slots per token; a slot holds an expert index or -1.
* Top-k over a token's experts (`topk_rows`, `group_limited_topk`, `grouped_topk`, `topk_torch_range`) returns
  exactly what ``torch.topk`` returns on the CPU, **ties included**: the models' gates call ``torch.topk``, so a
  replay of captured logits (bf16 logits tie often) picks the model's experts token for token. torch's CPU
  kernel (``aten/src/ATen/native/TopKImpl.h``) runs libstdc++'s ``std::partial_sort`` of the first k when
  ``k * 64 <= n``, else ``std::nth_element`` at ``k - 1`` then ``std::sort`` of the first ``k - 1``, with a
  comparator on the value alone; which of several equal values wins, and in which order, is what those
  routines leave, so `torch_topk_queue` ports them line by line. Rows whose k + 1 best values are strictly
  decreasing (almost all rows of continuous logits) skip it: any tie rule gives the same answer there. Checked
  against torch 2.13 on 552,000 tie-heavy rows, n = 1..300, k = 1..n, while porting; the tests
  (tests/workbench/routing/test_ties.py) keep about 56,000 of them, n = 8..256, k = 1..8 and k = n.
  E.g. ``[0.5, 0.5, 0.5, 0.1]``, k = 1 -> expert 1 and ``[0, 0, 0, 0]``, k = 2 -> experts [2, 3]
  (nth_element), while with 64 or more experts k = 1 takes the first maximum (partial_sort).
* The other selections keep **ties to the lower index**: `topk_range` (the slot order of expert choice),
  the capacity-aware reroute (lower expert), expert choice (earlier token). Picks come out best first.
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
def _take_if_unique(buf, best, cnt, k, res):
    """When the ``cnt`` best values found by `_insert_range` are strictly decreasing over the first k + 1, the k
    picks and their order are the same under every tie rule: copy them to ``res`` and return True."""
    for j in range(min(k, cnt - 1)):
        if not best[j] > best[j + 1]:
            return False
    for j in range(k):
        res[j] = buf[j]
    return True


@njit(cache=True)
def topk_range(vals, lo, hi, k, out, best):
    """Write into ``out[:k]`` the indices of the ``k`` largest of ``vals[lo:hi]`` (indices into ``vals``;
    ties: lower index), best first; ``best`` is float64 scratch of size >= k (no allocation per token).

    ``vals=[0.1, 0.5, 0.5, 0.2], lo=0, hi=4, k=2 -> out=[1, 2]``.
    """
    if k > 0:
        _insert_range(vals, lo, hi, k, out, best, 0)


# ----------------------------------------------------------------------------- torch's CPU top-k order
#
# torch.topk on the CPU (aten/src/ATen/native/TopKImpl.h, `topk_impl_loop`) fills a queue of (value, index)
# pairs in index order and, with a comparator on the value alone (``a.value > b.value``), runs
#   * ``std::partial_sort(q, q + k, q + n)`` when ``k * 64 <= n``,
#   * else ``std::nth_element(q, q + k - 1, q + n)`` then (``sorted=True``) ``std::sort(q, q + k - 1)``;
# the picks are ``q[:k]``. Among equal values the winners and their order are whatever libstdc++'s
# heap select / introselect / introsort leave there. The functions below are a line-by-line port of those
# libstdc++ routines (bits/stl_heap.h, bits/stl_algo.h) on two parallel arrays ``qv`` (values) and ``qi``
# (indices), so the numba top-k equals torch.topk's indices exactly, ties included.


@njit(cache=True, inline="always")
def _qswap(qv, qi, a, b):
    v = qv[a]
    qv[a] = qv[b]
    qv[b] = v
    i = qi[a]
    qi[a] = qi[b]
    qi[b] = i


@njit(cache=True)
def _adjust_heap(qv, qi, first, hole, length, val, idx):
    """libstdc++ ``__adjust_heap`` (then ``__push_heap``) on ``q[first:first + length]``."""
    top = hole
    second = hole
    while second < (length - 1) // 2:
        second = 2 * (second + 1)
        if qv[first + second] > qv[first + second - 1]:
            second -= 1
        qv[first + hole] = qv[first + second]
        qi[first + hole] = qi[first + second]
        hole = second
    if (length & 1) == 0 and second == (length - 2) // 2:
        second = 2 * (second + 1)
        qv[first + hole] = qv[first + second - 1]
        qi[first + hole] = qi[first + second - 1]
        hole = second - 1
    parent = (hole - 1) // 2
    while hole > top and qv[first + parent] > val:
        qv[first + hole] = qv[first + parent]
        qi[first + hole] = qi[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    qv[first + hole] = val
    qi[first + hole] = idx


@njit(cache=True)
def _pop_heap(qv, qi, first, last, result):
    val = qv[result]
    idx = qi[result]
    qv[result] = qv[first]
    qi[result] = qi[first]
    _adjust_heap(qv, qi, first, 0, last - first, val, idx)


@njit(cache=True)
def _heap_select(qv, qi, first, middle, last):
    """libstdc++ ``__heap_select``: ``make_heap(first, middle)``, then every later element that beats the heap's
    top replaces it."""
    length = middle - first
    if length >= 2:
        parent = (length - 2) // 2
        while True:
            _adjust_heap(qv, qi, first, parent, length, qv[first + parent], qi[first + parent])
            if parent == 0:
                break
            parent -= 1
    for i in range(middle, last):
        if qv[i] > qv[first]:
            _pop_heap(qv, qi, first, middle, i)


@njit(cache=True)
def _partial_sort(qv, qi, first, middle, last):
    """libstdc++ ``std::partial_sort``: heap select, then ``__sort_heap``."""
    _heap_select(qv, qi, first, middle, last)
    while middle - first > 1:
        middle -= 1
        _pop_heap(qv, qi, first, middle, middle)


@njit(cache=True)
def _partition_pivot(qv, qi, first, last):
    """libstdc++ ``__unguarded_partition_pivot``: median of ``first + 1``, the middle and ``last - 1`` moved to
    ``first``, then the unguarded Hoare partition of ``[first + 1, last)`` around it; returns the cut."""
    a = first + 1
    b = first + (last - first) // 2
    c = last - 1
    if qv[a] > qv[b]:
        if qv[b] > qv[c]:
            _qswap(qv, qi, first, b)
        elif qv[a] > qv[c]:
            _qswap(qv, qi, first, c)
        else:
            _qswap(qv, qi, first, a)
    elif qv[a] > qv[c]:
        _qswap(qv, qi, first, a)
    elif qv[b] > qv[c]:
        _qswap(qv, qi, first, c)
    else:
        _qswap(qv, qi, first, b)
    pv = qv[first]
    lo = first + 1
    hi = last
    while True:
        while qv[lo] > pv:
            lo += 1
        hi -= 1
        while pv > qv[hi]:
            hi -= 1
        if not lo < hi:
            return lo
        _qswap(qv, qi, lo, hi)
        lo += 1


@njit(cache=True)
def _insertion_sort(qv, qi, first, last):
    """libstdc++ ``__insertion_sort`` (stable)."""
    for i in range(first + 1, last):
        val = qv[i]
        idx = qi[i]
        j = i
        if val > qv[first]:
            while j > first:
                qv[j] = qv[j - 1]
                qi[j] = qi[j - 1]
                j -= 1
        else:
            while val > qv[j - 1]:
                qv[j] = qv[j - 1]
                qi[j] = qi[j - 1]
                j -= 1
        qv[j] = val
        qi[j] = idx


@njit(cache=True)
def _lg(n):
    r = 0
    while n > 1:
        n >>= 1
        r += 1
    return r


@njit(cache=True)
def _nth_element(qv, qi, first, nth, last):
    """libstdc++ ``std::nth_element`` (``__introselect``, depth limit ``2 * lg(n)``)."""
    if first == last or nth == last:
        return
    depth = 2 * _lg(last - first)
    while last - first > 3:
        if depth == 0:
            _heap_select(qv, qi, first, nth + 1, last)
            _qswap(qv, qi, first, nth)
            return
        depth -= 1
        cut = _partition_pivot(qv, qi, first, last)
        if cut <= nth:
            first = cut
        else:
            last = cut
    _insertion_sort(qv, qi, first, last)


@njit(cache=True)
def _std_sort(qv, qi, first, last):
    """libstdc++ ``std::sort``: introsort down to runs of 16 (the recursion on the right part kept on a stack:
    the parts are disjoint, so the order they are done in does not matter), then the final insertion sort."""
    if last - first < 2:
        return
    stack = np.empty((2 * 64 + 4, 3), np.int64)
    sp = 0
    stack[0, 0] = first
    stack[0, 1] = last
    stack[0, 2] = 2 * _lg(last - first)
    sp = 1
    while sp > 0:
        sp -= 1
        lo = stack[sp, 0]
        hi = stack[sp, 1]
        depth = stack[sp, 2]
        while hi - lo > 16:
            if depth == 0:
                _partial_sort(qv, qi, lo, hi, hi)
                break
            depth -= 1
            cut = _partition_pivot(qv, qi, lo, hi)
            stack[sp, 0] = cut
            stack[sp, 1] = hi
            stack[sp, 2] = depth
            sp += 1
            hi = cut
    if last - first > 16:
        _insertion_sort(qv, qi, first, first + 16)
        for i in range(first + 16, last):  # __unguarded_insertion_sort
            val = qv[i]
            idx = qi[i]
            j = i
            while val > qv[j - 1]:
                qv[j] = qv[j - 1]
                qi[j] = qi[j - 1]
                j -= 1
            qv[j] = val
            qi[j] = idx
    else:
        _insertion_sort(qv, qi, first, last)


@njit(cache=True)
def torch_topk_queue(qv, qi, n, k, ordered):
    """Reorder the queue ``qv[:n]`` (values) / ``qi[:n]`` (their indices) exactly as torch.topk on the CPU does
    (``largest=True``; ``sorted=ordered``), leaving its k picks in ``qi[:k]`` (best first when ``ordered``).

    The algorithm of torch's ``topk_impl_loop``: ``k * 64 <= n``: ``std::partial_sort`` of the first k;
    otherwise ``std::nth_element`` at ``k - 1`` and, when ``ordered``, ``std::sort`` of the first ``k - 1``
    (libstdc++'s routines, ported above; the comparator looks at values only). No NaN is expected.
    """
    if k <= 0:
        return
    if k * 64 <= n:
        _partial_sort(qv, qi, 0, k, n)
    else:
        _nth_element(qv, qi, 0, k - 1, n)
        if ordered:
            _std_sort(qv, qi, 0, k - 1)


@njit(cache=True)
def topk_torch_range(vals, lo, hi, k, res, buf, best, qv, qi):
    """``res[:k]`` = ``torch.topk(vals[lo:hi], k).indices + lo`` as torch computes it on the CPU, ties included
    (`torch_topk_queue`). Scratch: ``buf`` int64 / ``best`` float64 of size >= k + 1, ``qv`` float64 / ``qi``
    int64 of size >= hi - lo.

    Fast path: the ``k + 1`` largest values are found by insertion (`_insert_range`); when they are strictly
    decreasing the k picks and their order are unique, whatever the tie rule, and are taken from there. Only a
    slice with a tie among its k + 1 largest values runs torch's algorithm. ``[0.5, 0.5, 0.5, 0.1], k=1 -> [1]``,
    ``[0, 0, 0, 0], k=2 -> [2, 3]`` (n < 64: nth_element; with 64 or more entries, k=1 takes the first maximum).
    """
    m = hi - lo
    kk = min(k + 1, m)
    _insert_range(vals, lo, hi, kk, buf, best, 0)
    if _take_if_unique(buf, best, kk, k, res):
        return
    for i in range(m):
        qv[i] = vals[lo + i]
        qi[i] = i
    torch_topk_queue(qv, qi, m, k, True)
    for j in range(k):
        res[j] = lo + qi[j]


@njit(cache=True)
def topk_rows(scores, k):
    """Row-wise top-k in torch's CPU order: ``scores`` float64 [T, E] -> int32 [T, k], equal to
    ``torch.topk(torch.from_numpy(scores), k).indices`` (ties included; see `torch_topk_queue`). k = 1 scans for
    the first maximum and the runner-up (selects rather than branches: random data mispredicts) and falls back
    to torch's algorithm only when the maximum is tied; k > 1 uses `topk_torch_range`."""
    n, e = scores.shape
    out = np.empty((n, k), np.int32)
    res = np.empty(k, np.int64)
    buf = np.empty(k + 1, np.int64)
    best = np.empty(k + 1, np.float64)
    qv = np.empty(e, np.float64)
    qi = np.empty(e, np.int64)
    for t in range(n):
        row = scores[t]
        if k == 1:
            bv = row[0]
            b = 0
            sv = -np.inf
            for i in range(1, e):
                v = row[i]
                gt = v > bv
                sv = max(sv, min(bv, v))
                b = i if gt else b
                bv = v if gt else bv
            if e == 1 or bv > sv:
                out[t, 0] = b
                continue
        topk_torch_range(row, 0, e, k, res, buf, best, qv, qi)
        for j in range(k):
            out[t, j] = res[j]
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
    """DeepSeek-V3 selection on biased scores float64 [T, E], as the model's gate computes it with torch.topk.

    Group score = sum of the top-2 biased scores of its ``E / n_groups`` experts (top-1 for groups of one);
    the ``topk_groups`` best groups are eligible (``torch.topk(group_scores, topk_groups)``, torch's tie order);
    then the top-k of the row with the other groups' experts set to -inf (``torch.topk(masked, k)``, torch's
    tie order, best first). Returns int32 [T, k]. As in `topk_torch_range`, torch's algorithm only runs where a
    tie makes the answer depend on it (an eligible group tied with an ineligible one; a tie among the k + 1
    best eligible experts); elsewhere the rank / insertion selection gives the same, unique answer.
    """
    n, e_total = biased.shape
    gsize = e_total // n_groups
    out = np.empty((n, k), np.int32)
    gscore = np.empty(n_groups, np.float64)
    gidx = np.empty(n_groups, np.int64)
    eligible = np.empty(n_groups, np.bool_)
    masked = np.empty(e_total, np.float64)
    res = np.empty(k, np.int64)
    buf = np.empty(k + 1, np.int64)
    best = np.empty(k + 1, np.float64)
    qv = np.empty(e_total, np.float64)
    qi = np.empty(e_total, np.int64)
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
                gidx[g] = g
            # eligible groups: the topk_groups best by rank (ties: lower group); unique unless an eligible and an
            # ineligible group tie, and only then torch's order decides (`torch_topk_queue`, rare)
            lo_in = np.inf
            hi_out = -np.inf
            for g in range(n_groups):
                sg = gscore[g]
                rank = 0
                for h in range(n_groups):
                    rank += (gscore[h] > sg) or (gscore[h] == sg and h < g)
                eligible[g] = rank < topk_groups
                if eligible[g]:
                    lo_in = min(lo_in, sg)
                else:
                    hi_out = max(hi_out, sg)
            if lo_in == hi_out:
                torch_topk_queue(gscore, gidx, n_groups, topk_groups, False)
                eligible[:] = False
                for j in range(topk_groups):
                    eligible[gidx[j]] = True
            # top-k over the eligible experts; unique when the k + 1 best are strictly decreasing
            m = topk_groups * gsize
            kk = min(k + 1, m)
            cnt = 0
            for g in range(n_groups):
                if eligible[g]:
                    cnt = _insert_range(row, g * gsize, (g + 1) * gsize, kk, buf, best, cnt)
            if not _take_if_unique(buf, best, cnt, k, res):
                # torch.topk over the row with the ineligible experts at -inf
                for g in range(n_groups):
                    for i in range(g * gsize, (g + 1) * gsize):
                        masked[i] = row[i] if eligible[g] else -np.inf
                topk_torch_range(masked, 0, e_total, k, res, buf, best, qv, qi)
        else:
            topk_torch_range(row, 0, e_total, k, res, buf, best, qv, qi)
        for j in range(k):
            out[t, j] = res[j]
    return out


@njit(cache=True)
def grouped_topk(scores, k, n_groups):
    """MoGE selection: ``k / n_groups`` experts inside each of the ``n_groups`` equal expert groups.

    ``scores`` float64 [T, E] -> int32 [T, k]: per group ``torch.topk(group, k / n_groups)``, then the k picks
    ordered as ``torch.topk(row with the unpicked experts at -inf, k)`` (torch's CPU tie order throughout).
    """
    n, e_total = scores.shape
    gsize = e_total // n_groups
    per = k // n_groups
    out = np.empty((n, k), np.int32)
    masked = np.empty(e_total, np.float64)
    res = np.empty(k, np.int64)
    buf = np.empty(k + 1, np.int64)
    best = np.empty(k + 1, np.float64)
    qv = np.empty(e_total, np.float64)
    qi = np.empty(e_total, np.int64)
    for t in range(n):
        row = scores[t]
        for i in range(e_total):
            masked[i] = -np.inf
        for g in range(n_groups):
            topk_torch_range(row, g * gsize, (g + 1) * gsize, per, res, buf, best, qv, qi)
            for j in range(per):
                masked[res[j]] = row[res[j]]
        topk_torch_range(masked, 0, e_total, k, res, buf, best, qv, qi)
        for j in range(k):
            out[t, j] = res[j]
    return out
