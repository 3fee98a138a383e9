"""Numba kernels of data-mixture inference: replaying a merge list over a sample's words, and finding the merge
constraints a candidate mixture violates (the separation oracle of the lazily grown linear program).

Pairs are int64 keys ``left << 32 | right`` (:func:`pair_key`). A replay's output is the sample's pair counts before
the first merge plus, for every merge step, the pairs whose count that merge changed and their new counts, so the
count of any pair at any step is a prefix of that stream. The readable reference is in
``tests/workbench/tokenization/test_mixture.py`` (recount every pair at every step).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from workbench.tokenization.hashtables import EMPTY, int_slot
from workbench.tokenization.heap import pop, sift_up

KEY_SHIFT = 32


def pair_key(left, right):
    """int64 key of the pair ``(left, right)``; ``pair_key(1, 2) == (1 << 32) | 2``."""
    return (np.asarray(left, np.int64) << KEY_SHIFT) | np.asarray(right, np.int64)


@njit(cache=True)
def _grow(arr, size):
    out = np.empty(size, arr.dtype)
    out[: arr.shape[0]] = arr
    return out


@njit(cache=True)
def _rehash(pkey, n_pairs, capacity):
    keys = np.full(capacity, EMPTY, np.int64)
    vals = np.empty(capacity, np.int64)
    for p in range(n_pairs):
        slot = int_slot(keys, pkey[p])
        keys[slot] = pkey[p]
        vals[slot] = p
    return keys, vals


# counters of the replay state (int64 array ``ctr``)
C_PAIRS, C_NODES, C_TOUCHED = 0, 1, 2


@njit(cache=True, inline="always")
def _bump(keys, vals, pkey, pcount, head, old, mark, node_word, node_next, touched, ctr, x, y, delta, w, phase):
    """Add ``delta`` to the count of pair ``(x, y)`` (creating it), remember its count before this phase the first
    time the phase touches it, and put word ``w`` on its word list when it gains an occurrence there. The caller has
    made room for one more pair, node and touched entry."""
    if x < 0 or y < 0:
        return  # a byte without a token never pairs
    key = (x << KEY_SHIFT) | y
    slot = int_slot(keys, key)
    if keys[slot] == EMPTY:
        p = ctr[C_PAIRS]
        ctr[C_PAIRS] += 1
        pkey[p] = key
        pcount[p] = 0
        head[p] = EMPTY
        mark[p] = -1
        keys[slot] = key
        vals[slot] = p
    else:
        p = vals[slot]
    if mark[p] != phase:
        mark[p] = phase
        old[p] = pcount[p]
        touched[ctr[C_TOUCHED]] = p
        ctr[C_TOUCHED] += 1
    pcount[p] += delta
    if delta > 0 and (head[p] == EMPTY or node_word[head[p]] != w):
        n = ctr[C_NODES]
        ctr[C_NODES] += 1
        node_word[n] = w
        node_next[n] = head[p]
        head[p] = n


@njit(cache=True)
def replay_merges(sym, w_start, w_len, w_count, m_left, m_right, m_new):
    """Apply the merges ``(m_left[t], m_right[t]) -> m_new[t]``, in order, to every word, recording pair counts.

    ``sym``: int64 symbols of all unique words back to back (a symbol < 0 is a byte the vocabulary lacks: it never
    pairs); word ``w`` is ``sym[w_start[w]:w_start[w] + w_len[w]]`` and occurs ``w_count[w]`` times. ``sym`` and
    ``w_len`` are rewritten in place. Pair counts count every adjacent position (overlaps included), as BPE training
    does; a merge rewrites each word left to right, as BPE training does.

    Returns ``(init_keys, init_counts, d_ptr, d_keys, d_counts)``: the pairs present before merge 0 and their counts,
    and for step ``t`` the entries ``d_ptr[t]:d_ptr[t+1]`` of ``(d_keys, d_counts)``: each pair whose count merge ``t``
    changed, with its count after merge ``t``. Example: words ``{"aab": 1}``, merges ``(a,a)->X, (X,b)->Y``: initial
    ``{aa: 1, ab: 1}``; step 0 ``{aa: 0, ab: 0, Xb: 1}``; step 1 ``{Xb: 0}``.
    """
    n_words = w_start.shape[0]
    n_steps = m_left.shape[0]
    total = 0
    for w in range(n_words):
        total += max(w_len[w] - 1, 0)
    cap = max(1024, total + 16)
    pkey = np.empty(cap, np.int64)
    pcount = np.zeros(cap, np.int64)
    head = np.full(cap, EMPTY, np.int64)
    old = np.zeros(cap, np.int64)
    mark = np.full(cap, -1, np.int64)
    touched = np.empty(cap, np.int64)
    tcap = 16
    while tcap < 2 * cap:
        tcap *= 2
    keys = np.full(tcap, EMPTY, np.int64)
    vals = np.empty(tcap, np.int64)
    node_word = np.empty(cap, np.int64)
    node_next = np.empty(cap, np.int64)
    ctr = np.zeros(3, np.int64)

    # phase 0: the counts before any merge (every pair is new here, so the capacities above suffice)
    for w in range(n_words):
        s = w_start[w]
        for i in range(s, s + w_len[w] - 1):
            _bump(keys, vals, pkey, pcount, head, old, mark, node_word, node_next, touched, ctr,
                  sym[i], sym[i + 1], w_count[w], w, 0)
    n_init = ctr[C_TOUCHED]
    init_keys = pkey[touched[:n_init]].copy()
    init_counts = pcount[touched[:n_init]].copy()

    d_ptr = np.zeros(n_steps + 1, np.int64)
    d_keys = np.empty(max(1024, n_init), np.int64)
    d_counts = np.empty(max(1024, n_init), np.int64)
    n_d = 0
    w_mark = np.full(n_words, -1, np.int64)
    for t in range(n_steps):
        phase = t + 1
        ctr[C_TOUCHED] = 0
        a = m_left[t]
        b = m_right[t]
        new = m_new[t]
        slot = int_slot(keys, (a << KEY_SHIFT) | b)
        merged = vals[slot] if keys[slot] != EMPTY else np.int64(-1)
        node = head[merged] if merged >= 0 else np.int64(EMPTY)
        while node != EMPTY:  # the words where (a, b) ever appeared; some no longer hold it
            w = node_word[node]
            node = node_next[node]
            if w_mark[w] == phase:
                continue
            w_mark[w] = phase
            c = w_count[w]
            s = w_start[w]
            e = s + w_len[w]
            out = s
            i = s
            while i < e:
                if not (sym[i] == a and i + 1 < e and sym[i + 1] == b):
                    sym[out] = sym[i]
                    out += 1
                    i += 1
                    continue
                # room for the (at most 4) pairs, nodes and touched entries of one hit
                if ctr[C_PAIRS] + 4 > pkey.shape[0] or ctr[C_NODES] + 4 > node_word.shape[0] \
                        or ctr[C_TOUCHED] + 4 > touched.shape[0]:
                    size = 2 * max(pkey.shape[0], node_word.shape[0], touched.shape[0])
                    pkey = _grow(pkey, size)
                    pcount = _grow(pcount, size)
                    head = _grow(head, size)
                    old = _grow(old, size)
                    mark = _grow(mark, size)
                    touched = _grow(touched, size)
                    node_word = _grow(node_word, size)
                    node_next = _grow(node_next, size)
                if 2 * (ctr[C_PAIRS] + 4) > keys.shape[0]:
                    keys, vals = _rehash(pkey, ctr[C_PAIRS], 2 * keys.shape[0])
                # (x, a) -> (x, new) with x the symbol already written on the left (it may be a new token)
                if out > s:
                    x = sym[out - 1]
                    _bump(keys, vals, pkey, pcount, head, old, mark, node_word, node_next, touched, ctr,
                          x, a, -c, w, phase)
                    _bump(keys, vals, pkey, pcount, head, old, mark, node_word, node_next, touched, ctr,
                          x, new, c, w, phase)
                # (b, y) -> (new, y) with y the next symbol still unmerged
                if i + 2 < e:
                    y = sym[i + 2]
                    _bump(keys, vals, pkey, pcount, head, old, mark, node_word, node_next, touched, ctr,
                          b, y, -c, w, phase)
                    _bump(keys, vals, pkey, pcount, head, old, mark, node_word, node_next, touched, ctr,
                          new, y, c, w, phase)
                sym[out] = new
                out += 1
                i += 2
            w_len[w] = out - s
        # the merged pair is gone: left-to-right merging leaves no (a, b) behind, even when a == b
        if merged >= 0:
            if mark[merged] != phase:
                mark[merged] = phase
                old[merged] = pcount[merged]
                if ctr[C_TOUCHED] == touched.shape[0]:
                    touched = _grow(touched, 2 * touched.shape[0])
                touched[ctr[C_TOUCHED]] = merged
                ctr[C_TOUCHED] += 1
            pcount[merged] = 0
        for k in range(ctr[C_TOUCHED]):
            p = touched[k]
            if pcount[p] != old[p]:
                if n_d == d_keys.shape[0]:
                    d_keys = _grow(d_keys, 2 * n_d)
                    d_counts = _grow(d_counts, 2 * n_d)
                d_keys[n_d] = pkey[p]
                d_counts[n_d] = pcount[p]
                n_d += 1
        d_ptr[t + 1] = n_d
    return init_keys, init_counts, d_ptr, d_keys[:n_d].copy(), d_counts[:n_d].copy()


# -- the separation oracle ----------------------------------------------------------------------------------------
@njit(inline="always")
def _first(cols, ctx, i, j):
    """Highest score first; equal scores in whatever order the heap leaves them (the oracle has no tie-break)."""
    hp = cols[0]
    return hp[i] > hp[j]


@njit(inline="always")
def _swap(cols, i, j):
    hp, hid, hver = cols
    hp[i], hp[j] = hp[j], hp[i]
    hid[i], hid[j] = hid[j], hid[i]
    hver[i], hver[j] = hver[j], hver[i]


@njit(cache=True, _nrt=False)
def _heap_push(hp, hid, hver, size, prio, pid, ver):
    hp[size] = prio
    hid[size] = pid
    hver[size] = ver
    sift_up((hp, hid, hver), 0, _first, _swap, size)
    return size + 1


@njit(cache=True, _nrt=False)
def _heap_pop(hp, hid, hver, size):
    """Remove the top entry (the caller has read it); returns the new size."""
    return pop((hp, hid, hver), 0, _first, _swap, size)


@njit(cache=True)
def find_violations(n_pairs, init_ptr, init_gid, init_cnt, d_ptr, d_gid, d_cnt, merge_gid, weight, pair_slack,
                    step_slack, known, k_max, tol):
    """Replay the pair counts of every category under the mixture ``weight`` and list violated merge constraints.

    Categories ``i = 0..n-1``: initial counts ``init_gid/init_cnt[init_ptr[i]:init_ptr[i+1]]`` (global pair ids);
    step ``t``'s changes ``d_gid/d_cnt[d_ptr[i, t]:d_ptr[i, t+1]]`` (new counts). ``weight[i]`` = mixture weight /
    sample size, so ``score(p) = sum_i weight[i] * count_i(p)`` is the pair's frequency under the mixture.
    ``merge_gid[t]``: the pair merged at step ``t`` (-1: skip the step). ``pair_slack[p]``/``step_slack[t]``: the
    current slack values; ``known``: sorted codes ``t * n_pairs + p`` of constraints already in the program.

    At step ``t`` the constraint for competitor ``p`` is ``score(m_t) + step_slack[t] >= score(p) - pair_slack[p]``;
    up to ``k_max`` competitors violating it by more than ``tol``, the highest-scoring first, are returned as
    ``(steps, pairs, counts_merge float64[k, n], counts_pair float64[k, n], present bool[n_steps])`` (raw counts at
    step ``t``; ``present[t]``: the merged pair occurs in some sample at step ``t``, else the step is skipped).
    """
    n_cat = weight.shape[0]
    n_steps = merge_gid.shape[0]
    cur = np.zeros((n_cat, n_pairs), np.int64)
    for i in range(n_cat):
        for k in range(init_ptr[i], init_ptr[i + 1]):
            cur[i, init_gid[k]] = init_cnt[k]
    score = np.zeros(n_pairs, np.float64)
    version = np.zeros(n_pairs, np.int64)
    total_d = d_gid.shape[0]
    hcap = n_pairs + total_d + 16
    hp = np.empty(hcap, np.float64)
    hid = np.empty(hcap, np.int64)
    hver = np.empty(hcap, np.int64)
    size = 0
    for p in range(n_pairs):
        s = 0.0
        for i in range(n_cat):
            s += weight[i] * cur[i, p]
        score[p] = s - pair_slack[p]
        size = _heap_push(hp, hid, hver, size, score[p], p, 0)
    out_t = np.empty(16, np.int64)
    out_p = np.empty(16, np.int64)
    n_out = 0
    popped = np.empty(k_max + 64, np.int64)
    step_mark = np.full(n_pairs, -1, np.int64)
    changed = np.empty(1024, np.int64)
    present = np.zeros(n_steps, np.bool_)
    for t in range(n_steps):
        m = merge_gid[t]
        if m >= 0:
            for i in range(n_cat):
                if cur[i, m] > 0:
                    present[t] = True
        if present[t]:
            cutoff = score[m] + pair_slack[m] + step_slack[t] + tol
            n_pop = 0
            found = 0
            while size > 0 and found < k_max and n_pop < popped.shape[0]:
                p = hid[0]
                if hver[0] != version[p]:  # stale entry
                    size = _heap_pop(hp, hid, hver, size)
                    continue
                if hp[0] <= cutoff:
                    break
                size = _heap_pop(hp, hid, hver, size)
                popped[n_pop] = p
                n_pop += 1
                if p == m:
                    continue
                code = t * n_pairs + p
                at = np.searchsorted(known, code)
                if at < known.shape[0] and known[at] == code:
                    continue
                if n_out == out_t.shape[0]:
                    out_t = _grow(out_t, 2 * n_out)
                    out_p = _grow(out_p, 2 * n_out)
                out_t[n_out] = t
                out_p[n_out] = p
                n_out += 1
                found += 1
            for k in range(n_pop):
                p = popped[k]
                size = _heap_push(hp, hid, hver, size, score[p], p, version[p])
        # apply merge t's count changes
        n_changed = 0
        for i in range(n_cat):
            for k in range(d_ptr[i, t], d_ptr[i, t + 1]):
                p = d_gid[k]
                cur[i, p] = d_cnt[k]
                if step_mark[p] != t:
                    step_mark[p] = t
                    if n_changed == changed.shape[0]:
                        changed = _grow(changed, 2 * n_changed)
                    changed[n_changed] = p
                    n_changed += 1
        for k in range(n_changed):
            p = changed[k]
            s = 0.0
            for i in range(n_cat):
                s += weight[i] * cur[i, p]
            score[p] = s - pair_slack[p]
            version[p] += 1
            if size == hp.shape[0]:
                hp = _grow(hp, 2 * size)
                hid = _grow(hid, 2 * size)
                hver = _grow(hver, 2 * size)
            size = _heap_push(hp, hid, hver, size, score[p], p, version[p])
    # the counts of each returned constraint, at its step: replay once more, reading them off in step order
    cm = np.zeros((n_out, n_cat), np.float64)
    cp = np.zeros((n_out, n_cat), np.float64)
    if n_out:
        for i in range(n_cat):
            for p in range(n_pairs):
                cur[i, p] = 0
            for k in range(init_ptr[i], init_ptr[i + 1]):
                cur[i, init_gid[k]] = init_cnt[k]
        r = 0
        for t in range(n_steps):
            while r < n_out and out_t[r] == t:
                for i in range(n_cat):
                    cm[r, i] = cur[i, merge_gid[t]]
                    cp[r, i] = cur[i, out_p[r]]
                r += 1
            if r == n_out:
                break
            for i in range(n_cat):
                for k in range(d_ptr[i, t], d_ptr[i, t + 1]):
                    cur[i, d_gid[k]] = d_cnt[k]
    return out_t[:n_out].copy(), out_p[:n_out].copy(), cm, cp, present
