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
def _compact(in_cache, upto, idx):
    """Write the cached positions < ``upto`` into ``idx`` in position order; returns their count."""
    m = 0
    for i in range(upto):
        if in_cache[i]:
            idx[m] = i
            m += 1
    return m


@njit(cache=True)
def evict_head(scores0, attn, n_pre, budget, n_sinks, n_recent, mode, decode_evict, kept):
    """Replay one KV head's eviction. ``scores0`` float64 [T], ``attn`` float32 [S, T], ``kept`` bool [S, T] (out,
    must start all False).

    ``decode_evict`` False: compress the context once to ``budget`` (protecting sinks and the last ``n_recent``
    context positions), then append. True: after adding each decode token, evict down to ``budget``.
    The cache is held as a position-ordered list, so a decode step costs O(cache size), not O(positions).
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
    idx = np.empty(t, np.int64)
    m = _compact(in_cache, n_pre, idx)
    for s in range(n_steps):
        p = n_pre + s
        in_cache[p] = True
        idx[m] = p
        m += 1
        size += 1
        if decode_evict and size > budget:
            hi = max(n_sinks, p - n_recent + 1)
            if size - budget > 1:  # a context larger than the budget, compressed at the first step
                _evict_lowest(score, in_cache, size - budget, n_sinks, hi)
                m = _compact(in_cache, p + 1, idx)
            else:
                best = -1
                best_score = np.inf
                first = -1
                for j in range(m):
                    i = idx[j]
                    if i >= hi:
                        break
                    if i < n_sinks:
                        continue
                    if first < 0:
                        first = j
                    if score[i] < best_score:
                        best = j
                        best_score = score[i]
                if best < 0:  # every candidate scored +inf: evict the oldest
                    best = first
                in_cache[idx[best]] = False
                for j in range(best, m - 1):
                    idx[j] = idx[j + 1]
                m -= 1
            size = budget
        for j in range(m):
            kept[s, idx[j]] = True
        if mode == MODE_ACCUMULATE or mode == MODE_LAST_QUERY:
            mass = 0.0
            for j in range(m):
                mass += attn[s, idx[j]]
            if mass <= 0.0:
                mass = 1.0
            for j in range(m):
                i = idx[j]
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
def tova_layer(score0, attn_heads, n_pre, budget, kept):
    """Layer-wide TOVA (the official ``tova_cache.py``): one cache shared by every KV head of the layer.

    ``score0`` float64 [T]: the last context query's attention averaged over all query heads (zero for decode
    positions); ``attn_heads`` float32 [Q, S + 1, T]: each query head's attention of the last context query (row 0)
    and of every decode step (rows 1..S); ``kept`` bool [S, T] (out, must start all False).

    Step ``s`` adds position ``p``; while the cache holds more than ``budget`` positions, the lowest-scored one
    other than ``p`` goes (ties: the oldest), which is the official rule with ``cache_size = budget - 1`` (it reduces
    after the query attended, to ``cache_size``, over every cached position the query saw). After the step, every
    cached position's score is the mean over query heads of the step's attention renormalised over the cache head
    by head: ``mean_q a_q(i) / sum_{j in cache} a_q(j)`` (the softmax over the kept keys).
    """
    t = score0.shape[0]
    n_q = attn_heads.shape[0]
    n_steps = kept.shape[0]
    score = score0.copy()
    in_cache = np.zeros(t, np.bool_)
    in_cache[:n_pre] = True
    idx = np.empty(t, np.int64)
    m = n_pre
    for i in range(n_pre):
        idx[i] = i
    mass = np.empty(n_q, np.float64)
    for s in range(n_steps):
        p = n_pre + s
        in_cache[p] = True
        idx[m] = p
        m += 1
        if m > budget:
            if m - budget > 1:  # a context larger than the budget, compressed at the first step
                _evict_lowest(score, in_cache, m - budget, 0, p)
                m = _compact(in_cache, p + 1, idx)
            else:
                best = -1
                best_score = np.inf
                for j in range(m - 1):  # every cached position but p
                    if score[idx[j]] < best_score:
                        best = j
                        best_score = score[idx[j]]
                if best < 0:
                    best = 0
                in_cache[idx[best]] = False
                for j in range(best, m - 1):
                    idx[j] = idx[j + 1]
                m -= 1
        for j in range(m):
            kept[s, idx[j]] = True
        for q in range(n_q):
            acc = 0.0
            for j in range(m):
                acc += attn_heads[q, s + 1, idx[j]]
            mass[q] = acc if acc > 0.0 else 1.0
        for j in range(m):
            i = idx[j]
            acc = 0.0
            for q in range(n_q):
                acc += attn_heads[q, s + 1, i] / mass[q]
            score[i] = acc / n_q


@njit(cache=True, parallel=True)
def tova_layers(score0, attn_heads, n_pre, budget, kept):
    """`tova_layer` for several layers: ``score0`` [L, T], ``attn_heads`` [L, Q, S + 1, T], ``kept`` [L, S, T]."""
    for li in prange(score0.shape[0]):
        tova_layer(score0[li], attn_heads[li], n_pre, budget, kept[li])


@njit(cache=True)
def _kth_largest(buf, n, k):
    """The ``k``-th largest of ``buf[:n]`` (1 <= k <= n); reorders ``buf``. Quickselect with a three-way
    partition (ties and -inf are fine), median-of-three pivots."""
    lo = 0
    hi = n - 1
    target = k - 1  # index in descending order
    while lo < hi:
        mid = (lo + hi) >> 1
        a = buf[lo]
        b = buf[mid]
        c = buf[hi]
        if a < b:
            a, b = b, a
        if b < c:
            b = c
            if a < b:
                b = a
        pivot = b  # median of a, b, c
        lt = lo
        i = lo
        gt = hi
        while i <= gt:  # [lo, lt) > pivot, [lt, i) == pivot, (gt, hi] < pivot
            v = buf[i]
            if v > pivot:
                buf[i] = buf[lt]
                buf[lt] = v
                lt += 1
                i += 1
            elif v < pivot:
                buf[i] = buf[gt]
                buf[gt] = v
                gt -= 1
            else:
                i += 1
        if target < lt:
            hi = lt - 1
        elif target > gt:
            lo = gt + 1
        else:
            return pivot
    return buf[lo]


SAMPLE = 128  # sample size of `_kth_largest_of`
BINS = 2048  # radix bins of `_kth_largest_f32` (11 bits a level)
SCRATCH = BINS  # top-k scratch buffers hold n + SCRATCH elements (room for the sample or the histogram)


@njit(cache=True)
def _kth_largest_of(vals, n, k, buf):
    """The ``k``-th largest of ``vals[:n]`` without reordering ``vals``; ``buf``: scratch of n + SCRATCH elements.

    Floyd-Rivest style: two pivots picked from a strided sample bracket the k-th value, one branch-free pass counts
    the values above the band and gathers the band, and quickselect runs on the band only (about a quarter of
    the work of quickselect on the whole row); if the band misses, quickselect on the whole row."""
    m = SAMPLE
    if n > 4 * m:
        samp = buf[n:n + m]
        stride = n // m
        for j in range(m):
            samp[j] = vals[j * stride]
        r = (k * m) // n
        margin = 3 * int(np.sqrt(m * (k / n) * (1.0 - k / n))) + 3
        up = r - margin
        dn = r + margin
        hi = np.inf if up < 0 else _kth_largest(samp, m, up + 1)
        lo = -np.inf if dn > m - 1 else _kth_largest(samp, m, dn + 1)
        above = 0
        c = 0
        for i in range(n):
            v = vals[i]
            above += v > hi
            buf[c] = v
            c += (v >= lo) & (v <= hi)
        if above < k and k <= above + c:
            return _kth_largest(buf, c, k - above)
    for i in range(n):
        buf[i] = vals[i]
    return _kth_largest(buf, n, k)


@njit(cache=True)
def _float32_keys(u, n, keys):
    """Order-preserving uint32 keys of float32 bit patterns ``u[:n]`` (a uint32 view): a larger float has a larger
    key (-0.0 just below +0.0); sign bit set -> all bits flipped, else the sign bit set."""
    for i in range(n):
        x = u[i]
        keys[i] = x ^ (np.uint32(np.int32(x) >> 31) | np.uint32(0x80000000))


@njit(cache=True)
def _radix_level(keys, c, need, shift, nb, hist):
    """One level of `_kth_largest_f32`: the ``need``-th largest of ``keys[:c]`` lies in the bin
    ``(key >> shift) & (nb - 1)`` found by a histogram (``hist`` int32 scratch of nb); that bin's keys are moved to
    the front, in order. Returns their count and the rank of the wanted key among them."""
    mask = np.uint32(nb - 1)
    hist[:nb] = 0
    for i in range(c):
        hist[(keys[i] >> shift) & mask] += 1
    b = nb - 1
    while hist[b] < need:
        need -= hist[b]
        b -= 1
    kept = 0
    for i in range(c):
        key = keys[i]
        keys[kept] = key
        kept += ((key >> shift) & mask) == b
    return kept, need


@njit(cache=True)
def _kth_largest_f32(vals, n, k, buf):
    """The ``k``-th largest of float32 ``vals[:n]`` (1 <= k <= n) without reordering ``vals``; ``buf``: float32
    scratch of n + SCRATCH elements.

    Radix select: the values become order-preserving uint32 keys; a histogram of the top 11 bits finds the bin
    holding the k-th key, its keys are gathered, and two more levels (11 and 10 bits) narrow the band until at
    most 64 keys are left for quickselect. Two to three branch-free passes over the row, whatever the
    distribution (ties, -inf, denormals)."""
    keys = buf[:n].view(np.uint32)
    hist = buf[n:n + BINS].view(np.int32)
    _float32_keys(vals[:n].view(np.uint32), n, keys)
    c, need = _radix_level(keys, n, k, np.uint32(21), BINS, hist)
    for shift, nb in ((10, BINS), (0, 1024)):
        if c <= 64:
            break
        c, need = _radix_level(keys, c, need, np.uint32(shift), nb, hist)
    key = _kth_largest(keys, c, need)
    hist[0] = np.int32(key ^ (np.uint32(0x80000000) if key >> np.uint32(31) else np.uint32(0xFFFFFFFF)))
    return hist[:1].view(np.float32)[0]


@njit(cache=True)
def _mark_top(vals, n, k, thr, out):
    """Set ``out[i]`` for the values above ``thr`` (the k-th largest) and then for the first values equal to it,
    in position order, until ``k`` are set."""
    taken = 0
    for i in range(n):
        above = vals[i] > thr
        out[i] |= above
        taken += above
    for i in range(n):
        if taken >= k:
            break
        if vals[i] == thr:
            out[i] = True
            taken += 1


@njit(cache=True)
def _topk_trivial(n, k, out):
    """Handle the top-k cases that need no threshold (k >= n: all of them; k <= 0: none); True when handled."""
    if k >= n:
        out[:n] = True
    return k >= n or k <= 0


@njit(cache=True)
def _topk_into(vals, n, k, buf, out):
    """Set ``out[i]`` for the ``k`` largest of float32 ``vals[:n]`` (ties: lowest index first); ``buf`` is float32
    scratch of at least ``n + SCRATCH`` elements. ``out`` is only set, never cleared."""
    if not _topk_trivial(n, k, out):
        _mark_top(vals, n, k, _kth_largest_f32(vals, n, k, buf), out)


@njit(cache=True)
def _topk_into_f64(vals, n, k, buf, out):
    """`_topk_into` for float64 ``vals`` (Floyd-Rivest, `_kth_largest_of`); ``buf`` float64 of n + SCRATCH."""
    if not _topk_trivial(n, k, out):
        _mark_top(vals, n, k, _kth_largest_of(vals, n, k, buf), out)


@njit(cache=True)
def select_head(scores, n_pre, budget, kept):
    """Per-step selection for one head: ``scores`` float32 [S, T]; keeps the current position plus the
    ``budget - 1`` best-scored earlier positions (all of them while ``p + 1 <= budget``). ``kept`` must start
    all False."""
    buf = np.empty(scores.shape[1] + SCRATCH, np.float32)
    for s in range(scores.shape[0]):
        p = n_pre + s
        if p + 1 <= budget:
            kept[s, : p + 1] = True
            continue
        _topk_into(scores[s], p, budget - 1, buf, kept[s])
        kept[s, p] = True


@njit(cache=True, parallel=True)
def select_heads(scores, n_pre, budget, kept):
    for h in prange(scores.shape[0]):
        select_head(scores[h], n_pre, budget, kept[h])


@njit(cache=True)
def quest_bounds_head(q, keys, n_pre, page, out):
    """Quest's page bounds of one KV head, max over its query group: ``q`` [G, T, D], ``keys`` [T, D] (float32 or
    float64) -> ``out`` float64 [S, P] for the decode queries (positions ``n_pre`` on) and the P complete pages of
    ``page`` keys. A page's bound is sum_d max(q_d min_d, q_d max_d) = sum_d q_d (max_d if q_d >= 0 else min_d):
    each product in the inputs' precision (float32 for float32 inputs), summed in float64 in order of d, no FMA,
    which is the torch path's arithmetic, bit for bit. Vectorised over the pages."""
    n_g, _, d = q.shape
    n_full = out.shape[1]
    kmin = np.empty((n_full, d), keys.dtype)
    kmax = np.empty((n_full, d), keys.dtype)
    page_min_max(keys, page, kmin, kmax)
    lo = np.ascontiguousarray(kmin.T)                                          # [D, P], exact
    hi = np.ascontiguousarray(kmax.T)
    acc = np.empty(n_full)
    for s in range(out.shape[0]):
        for g in range(n_g):
            acc[:] = 0.0
            for c in range(d):
                qc = q[g, n_pre + s, c]
                src = hi if qc >= 0 else lo
                for j in range(n_full):
                    acc[j] += qc * src[c, j]
            for j in range(n_full):
                out[s, j] = acc[j] if g == 0 else max(out[s, j], acc[j])


@njit(cache=True, parallel=True)
def quest_bounds_heads(q, keys, n_pre, page, out):
    """`quest_bounds_head` for every KV head: ``q`` [H, G, T, D], ``keys`` [H, T, D], ``out`` [H, S, P]."""
    for h in prange(out.shape[0]):
        quest_bounds_head(q[h], keys[h], n_pre, page, out[h])


@njit(cache=True)
def quest_head(bounds, n_pre, budget, page, kept):
    """Quest for one KV head from its page bounds ``bounds`` float64 [S, P] (`scores.quest_page_bounds`).

    Pages are ``page`` consecutive positions; at step s the page holding ``p`` is always kept and the other
    ``budget // page - 1`` complete earlier pages with the highest bound are kept whole."""
    n_pages = budget // page
    buf = np.empty(bounds.shape[1] + SCRATCH, np.float64)
    chosen = np.zeros(bounds.shape[1], np.bool_)
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
        chosen[:cur] = False
        _topk_into_f64(bounds[s], cur, n_pages - 1, buf, chosen)
        for j in range(cur):
            if chosen[j]:
                for i in range(j * page, (j + 1) * page):
                    kept[s, i] = True


@njit(cache=True, parallel=True)
def quest_heads(bounds, n_pre, budget, page, kept):
    """`quest_head` for every head: ``bounds`` [H, S, P], ``kept`` [H, S, T]."""
    for h in prange(bounds.shape[0]):
        quest_head(bounds[h], n_pre, budget, page, kept[h])


@njit(cache=True)
def kvcrush_head(base, signatures, ref, window, base_k, r, keep):
    """KVCrush for one head (the numba core of `replay.kvcrush_keep`): keep the last ``window`` positions and the
    ``base_k`` best ``base`` [n - window] scores (ties to the oldest); the positions left over, ordered by the
    Hamming distance of their ``signatures`` [n, Q] row to ``ref`` [Q] (then by position), are cut into ``r``
    near-equal consecutive groups (the first ``len % r`` one longer, as ``np.array_split``) and each group's
    best-scored position (the first on ties) is kept too. ``keep`` bool [n] (out, all False)."""
    n, n_q = signatures.shape
    keep[n - window:] = True
    order = np.argsort(-base, kind="mergesort")
    for i in range(base_k):
        keep[order[i]] = True
    if r == 0:
        return
    cand = np.sort(order[base_k:])
    m = cand.shape[0]
    key = np.empty(m, np.int64)
    for j in range(m):
        dist = 0
        for q in range(n_q):
            dist += signatures[cand[j], q] != ref[q]
        key[j] = dist * n + cand[j]
    grouped = cand[np.argsort(key)]
    size, extra = m // r, m % r
    start = 0
    for c in range(r):
        stop = start + size + (1 if c < extra else 0)
        if stop > start:
            best = grouped[start]
            for j in range(start + 1, stop):
                if base[grouped[j]] > base[best]:
                    best = grouped[j]
            keep[best] = True
        start = stop


@njit(cache=True)
def count_rows(mask, out):
    """``out[r]`` = the number of True cells in row ``r`` of a C-contiguous bool [R, T] ``mask``; ``out`` int32 [R].
    Reads the mask as bytes, so the sum vectorises (numpy's ``mask.sum(-1)`` converts every cell first)."""
    u = mask.view(np.uint8)
    for r in range(u.shape[0]):
        c = 0
        for i in range(u.shape[1]):
            c += u[r, i]
        out[r] = c


@njit(cache=True, fastmath=True)
def page_min_max(keys, page, kmin, kmax):
    """Per-dimension min and max of the keys of each complete page: ``keys`` float32 [T, D] -> ``kmin``, ``kmax``
    [P, D] for P = T // page (exact, so float64 outputs hold the same values)."""
    for j in range(kmin.shape[0]):
        kmin[j] = keys[j * page]
        kmax[j] = keys[j * page]
        for i in range(j * page + 1, (j + 1) * page):
            for d in range(keys.shape[1]):  # along the row: vectorises
                kmin[j, d] = min(kmin[j, d], keys[i, d])
                kmax[j, d] = max(kmax[j, d], keys[i, d])


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
        buf = np.empty(attn.shape[2] + SCRATCH, np.float32)
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
                row = attn[h, s]
                thr = _kth_largest_f32(row, p, m, buf)
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
