"""Numba kernels of the BPE trainer: word counting, initial pair counts, and the merge loop.

The merge loop follows Hugging Face tokenizers' ``BpeTrainer`` step for step so the merge list is identical:
pair counts are updated incrementally, a lazy max-heap orders pairs by (count desc, left id asc, right id asc),
a popped entry whose count is stale is pushed back with the current count, and each heap entry carries the list of
words where its pair was (re)created ("where to update"). Token ids inside the kernels are HF's: the 256 bytes in
byte-level-alphabet order (:data:`workbench.tokenization.bytelevel.BYTE_ORDER`), then merged tokens in creation order.

All state lives in flat arrays; kernels that may run out of room grow their arrays and return them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from workbench.tokenization.hashtables import EMPTY, bytes_equal, bytes_slot, hash_bytes, int_slot
from workbench.tokenization.heap import pop, sift_up

PAIR_STRIDE = 1 << 22


# -- word counting ------------------------------------------------------------------------------------------------
@njit(cache=True)
def count_words(data, bounds, k0, w_hash, w_slot, w_off, w_len, w_count, arena, st):
    """Count the pieces ``data[bounds[k]:bounds[k+1]]`` for ``k >= k0`` into the word table.

    ``st = [n_words, arena_used]``. Returns the index of the first piece not counted: ``len(bounds) - 1`` when done,
    less when the table or arena needs to grow (the caller grows them and calls again from there).
    """
    return add_words(data, bounds, bounds[:1], False, k0, w_hash, w_slot, w_off, w_len, w_count, arena, st)


@njit(cache=True)
def add_words(data, bounds, weights, weighted, k0, w_hash, w_slot, w_off, w_len, w_count, arena, st):
    """`count_words` where piece ``k`` counts ``weights[k]`` times when ``weighted`` (merging word tables: the pieces
    are another table's words, the weights its counts), once otherwise."""
    cap = w_hash.shape[0]
    mask = cap - 1
    n_pieces = bounds.shape[0] - 1
    for k in range(k0, n_pieces):
        start = bounds[k]
        end = bounds[k + 1]
        n = end - start
        if 2 * (st[0] + 1) > cap or st[0] >= w_off.shape[0] or st[1] + n > arena.shape[0]:
            return k
        add = weights[k] if weighted else 1
        h = hash_bytes(data, start, end) | np.uint64(1)
        slot = np.int64(h & np.uint64(mask))
        found = False
        while w_hash[slot] != 0:
            if w_hash[slot] == h:
                w = w_slot[slot]
                if w_len[w] == n and bytes_equal(arena, w_off[w], data, start, n):
                    w_count[w] += add
                    found = True
                    break
            slot = (slot + 1) & mask
        if not found:
            w = st[0]
            w_hash[slot] = h
            w_slot[slot] = w
            w_off[w] = st[1]
            w_len[w] = n
            w_count[w] = add
            for j in range(n):
                arena[st[1] + j] = data[start + j]
            st[0] += 1
            st[1] += n
    return n_pieces


@njit(cache=True)
def rehash_words(w_off, w_len, arena, n_words, capacity):
    """A fresh word hash table of ``capacity`` slots for the first ``n_words`` words."""
    w_hash = np.zeros(capacity, np.uint64)
    w_slot = np.zeros(capacity, np.int64)
    mask = capacity - 1
    for w in range(n_words):
        h = hash_bytes(arena, w_off[w], w_off[w] + w_len[w]) | np.uint64(1)
        slot = np.int64(h & np.uint64(mask))
        while w_hash[slot] != 0:
            slot = (slot + 1) & mask
        w_hash[slot] = h
        w_slot[slot] = w
    return w_hash, w_slot


# -- growable helpers ---------------------------------------------------------------------------------------------
@njit(cache=True)
def _grow(arr, size):
    out = np.empty(size, arr.dtype)
    out[: arr.shape[0]] = arr
    return out


@njit(cache=True)
def _rehash_pairs(pa, pb, n_pairs, capacity):
    keys = np.full(capacity, EMPTY, np.int64)
    vals = np.empty(capacity, np.int64)
    for p in range(n_pairs):
        key = pa[p] * PAIR_STRIDE + pb[p]
        slot = int_slot(keys, key)
        keys[slot] = key
        vals[slot] = p
    return keys, vals


# -- pair queue (heap.py): highest count first, then lowest (left id, right id) -----------------------------------
@njit(inline="always")
def _first(cols, ctx, i, j):
    """Entry i pops before entry j. Entries ``(count, pair id, head of its word list)``; ``ctx``: the pair tables
    ``(pa, pb)``."""
    h_count, h_pair = cols[0], cols[1]
    pa, pb = ctx
    if h_count[i] != h_count[j]:
        return h_count[i] > h_count[j]
    pi = h_pair[i]
    pj = h_pair[j]
    if pa[pi] != pa[pj]:
        return pa[pi] < pa[pj]
    return pb[pi] < pb[pj]


@njit(inline="always")
def _swap(cols, i, j):
    h_count, h_pair, h_pos = cols
    h_count[i], h_count[j] = h_count[j], h_count[i]
    h_pair[i], h_pair[j] = h_pair[j], h_pair[i]
    h_pos[i], h_pos[j] = h_pos[j], h_pos[i]


@njit(cache=True, _nrt=False)
def _sift_up(h_count, h_pair, h_pos, pa, pb, i):
    sift_up((h_count, h_pair, h_pos), (pa, pb), _first, _swap, i)


@njit(cache=True, _nrt=False)
def _pop(h_count, h_pair, h_pos, pa, pb, size):
    """Move the top entry to index ``size - 1`` and restore the heap on ``[0, size - 1)``; returns ``size - 1``."""
    return pop((h_count, h_pair, h_pos), (pa, pb), _first, _swap, size)


# -- the trainer state --------------------------------------------------------------------------------------------
# st (int64): 0 n_pairs, 1 n_nodes, 2 heap size, 3 n_tokens (ids in use), 4 n_merges, 5 step, 6 finished,
#             7 token arena used, 8 n_touched
ST_N_PAIRS, ST_N_NODES, ST_HEAP, ST_N_TOKENS, ST_N_MERGES, ST_STEP, ST_DONE, ST_ARENA, ST_TOUCHED = range(9)
# why the loop stopped (st[ST_DONE])
DONE_VOCAB, DONE_NO_PAIRS, DONE_MIN_FREQUENCY = 1, 2, 3


@njit(cache=True)
def init_pairs(sym, w_start, w_len, w_count):
    """Count every adjacent pair of every word, build the per-pair word lists and the initial heap.

    Returns ``(keys, vals, pa, pb, pcount, node_word, node_next, h_count, h_pair, h_pos, st)``.
    """
    n_words = w_start.shape[0]
    total = 0
    for w in range(n_words):
        total += max(w_len[w] - 1, 0)
    pcap = 1024
    pa = np.empty(pcap, np.int64)
    pb = np.empty(pcap, np.int64)
    pcount = np.zeros(pcap, np.int64)
    head = np.full(pcap, EMPTY, np.int64)
    tcap = 2048
    keys = np.full(tcap, EMPTY, np.int64)
    vals = np.empty(tcap, np.int64)
    ncap = max(total, 16)
    node_word = np.empty(ncap, np.int64)
    node_next = np.empty(ncap, np.int64)
    last_word = np.full(pcap, EMPTY, np.int64)
    n_pairs = 0
    n_nodes = 0
    for w in range(n_words):
        s = w_start[w]
        for i in range(s, s + w_len[w] - 1):
            a = np.int64(sym[i])
            b = np.int64(sym[i + 1])
            key = a * PAIR_STRIDE + b
            slot = int_slot(keys, key)
            if keys[slot] == EMPTY:
                if n_pairs == pcap:
                    pcap *= 2
                    pa = _grow(pa, pcap)
                    pb = _grow(pb, pcap)
                    pcount = _grow(pcount, pcap)
                    pcount[n_pairs:] = 0
                    head = _grow(head, pcap)
                    last_word = _grow(last_word, pcap)
                p = n_pairs
                n_pairs += 1
                pa[p] = a
                pb[p] = b
                head[p] = EMPTY
                last_word[p] = EMPTY
                keys[slot] = key
                vals[slot] = p
                if 2 * n_pairs > tcap:
                    tcap *= 2
                    keys, vals = _rehash_pairs(pa, pb, n_pairs, tcap)
            else:
                p = vals[slot]
            pcount[p] += w_count[w]
            if last_word[p] != w:  # one node per (pair, word), like HF's HashSet
                last_word[p] = w
                node_word[n_nodes] = w
                node_next[n_nodes] = head[p]
                head[p] = n_nodes
                n_nodes += 1
    hcap = max(2 * n_pairs, 16)
    h_count = np.empty(hcap, np.int64)
    h_pair = np.empty(hcap, np.int64)
    h_pos = np.empty(hcap, np.int64)
    size = 0
    for p in range(n_pairs):
        if pcount[p] > 0:
            h_count[size] = pcount[p]
            h_pair[size] = p
            h_pos[size] = head[p]
            size += 1
            _sift_up(h_count, h_pair, h_pos, pa, pb, size - 1)
    st = np.zeros(9, np.int64)
    st[ST_N_PAIRS] = n_pairs
    st[ST_N_NODES] = n_nodes
    st[ST_HEAP] = size
    return keys, vals, pa, pb, pcount, node_word, node_next, h_count, h_pair, h_pos, st


@njit(cache=True)
def merge_steps(sym, w_start, w_len, w_count, w_mark,
                keys, vals, pa, pb, pcount, node_word, node_next, h_count, h_pair, h_pos,
                tok_arena, tok_off, tok_len, t_hash, t_off, t_len, t_val,
                m_left, m_right, m_new, m_count, new_head, step_mark, touched,
                st, vocab_target, min_frequency, max_steps):
    """Run up to ``max_steps`` merges (HF BpeTrainer's loop). Returns every array that may have been reallocated.

    ``tok_*``: bytes of each token id; ``t_*``: bytes -> id table (detects a merge that spells an existing token,
    which HF maps onto that token instead of adding one); ``m_*``: the merges made (left, right, new id, count).
    """
    steps = 0
    while steps < max_steps:
        if st[ST_N_TOKENS] >= vocab_target:
            st[ST_DONE] = DONE_VOCAB
            break
        if st[ST_HEAP] == 0:
            st[ST_DONE] = DONE_NO_PAIRS
            break
        # pop
        size = st[ST_HEAP]
        top_count = h_count[0]
        top_pair = h_pair[0]
        top_pos = h_pos[0]
        size = _pop(h_count, h_pair, h_pos, pa, pb, size)
        st[ST_HEAP] = size
        current = pcount[top_pair]
        if top_count != current:  # stale: push back with the current count (HF does this even for 0)
            h_count[size] = current
            h_pair[size] = top_pair
            h_pos[size] = top_pos
            _sift_up(h_count, h_pair, h_pos, pa, pb, size)
            st[ST_HEAP] = size + 1
            continue
        if top_count < 1:
            st[ST_DONE] = DONE_NO_PAIRS
            break
        if min_frequency > top_count:
            st[ST_DONE] = DONE_MIN_FREQUENCY
            break
        a = pa[top_pair]
        b = pb[top_pair]
        # the new token's bytes, appended to the arena; reuse an existing token that spells the same
        n_new = tok_len[a] + tok_len[b]
        if st[ST_ARENA] + n_new > tok_arena.shape[0]:
            tok_arena = _grow(tok_arena, 2 * tok_arena.shape[0] + n_new)
        base = st[ST_ARENA]
        for j in range(tok_len[a]):
            tok_arena[base + j] = tok_arena[tok_off[a] + j]
        for j in range(tok_len[b]):
            tok_arena[base + tok_len[a] + j] = tok_arena[tok_off[b] + j]
        h = hash_bytes(tok_arena, base, base + n_new) | np.uint64(1)
        slot = bytes_slot(t_hash, t_off, t_len, tok_arena, tok_arena, base, base + n_new, h)
        if t_hash[slot] != 0:
            new_id = t_val[slot]
        else:
            new_id = st[ST_N_TOKENS]
            st[ST_N_TOKENS] += 1
            tok_off[new_id] = base
            tok_len[new_id] = n_new
            st[ST_ARENA] += n_new
            t_hash[slot] = h
            t_off[slot] = base
            t_len[slot] = n_new
            t_val[slot] = new_id
        k = st[ST_N_MERGES]
        if k == m_left.shape[0]:
            m_left = _grow(m_left, 2 * k + 16)
            m_right = _grow(m_right, 2 * k + 16)
            m_new = _grow(m_new, 2 * k + 16)
            m_count = _grow(m_count, 2 * k + 16)
        m_left[k] = a
        m_right[k] = b
        m_new[k] = new_id
        m_count[k] = top_count
        st[ST_N_MERGES] = k + 1
        st[ST_STEP] += 1
        step = st[ST_STEP]
        steps += 1
        n_touched = 0
        # merge the pair in every word of this entry's list
        node = top_pos
        while node != EMPTY:
            w = node_word[node]
            node = node_next[node]
            if w_mark[w] == step:
                continue
            w_mark[w] = step
            c = w_count[w]
            s = w_start[w]
            e = s + w_len[w]
            out = s
            i = s
            while i < e:
                if sym[i] == a and i + 1 < e and sym[i + 1] == b:
                    # (left neighbour, a) -> (left neighbour, new)
                    for side in range(2):
                        if side == 0:
                            if out == s:
                                continue
                            x = np.int64(sym[out - 1])
                            old_a, old_b, new_a, new_b = x, a, x, new_id
                        else:
                            if i + 2 >= e:
                                continue
                            y = np.int64(sym[i + 2])
                            old_a, old_b, new_a, new_b = b, y, new_id, y
                        # decrement the broken pair
                        sl = int_slot(keys, old_a * PAIR_STRIDE + old_b)
                        pcount[vals[sl]] -= c
                        # increment (or create) the new pair and remember this word for it
                        key = new_a * PAIR_STRIDE + new_b
                        sl = int_slot(keys, key)
                        if keys[sl] == EMPTY:
                            p = st[ST_N_PAIRS]
                            if p == pa.shape[0]:
                                pa = _grow(pa, 2 * p)
                                pb = _grow(pb, 2 * p)
                                pcount = _grow(pcount, 2 * p)
                                new_head = _grow(new_head, 2 * p)
                                step_mark = _grow(step_mark, 2 * p)
                            pa[p] = new_a
                            pb[p] = new_b
                            pcount[p] = 0
                            step_mark[p] = 0
                            keys[sl] = key
                            vals[sl] = p
                            st[ST_N_PAIRS] = p + 1
                            if 2 * (p + 1) > keys.shape[0]:
                                keys, vals = _rehash_pairs(pa, pb, p + 1, 2 * keys.shape[0])
                        else:
                            p = vals[sl]
                        pcount[p] += c
                        if step_mark[p] != step:
                            step_mark[p] = step
                            new_head[p] = EMPTY
                            if n_touched == touched.shape[0]:
                                touched = _grow(touched, 2 * n_touched + 16)
                            touched[n_touched] = p
                            n_touched += 1
                        nn = st[ST_N_NODES]
                        if nn == node_word.shape[0]:
                            node_word = _grow(node_word, 2 * nn + 16)
                            node_next = _grow(node_next, 2 * nn + 16)
                        node_word[nn] = w
                        node_next[nn] = new_head[p]
                        new_head[p] = nn
                        st[ST_N_NODES] = nn + 1
                    sym[out] = new_id
                    out += 1
                    i += 2
                else:
                    sym[out] = sym[i]
                    out += 1
                    i += 1
            w_len[w] = out - s
        # push the pairs this merge created or grew
        for t in range(n_touched):
            p = touched[t]
            if pcount[p] > 0:
                size = st[ST_HEAP]
                if size == h_count.shape[0]:
                    h_count = _grow(h_count, 2 * size + 16)
                    h_pair = _grow(h_pair, 2 * size + 16)
                    h_pos = _grow(h_pos, 2 * size + 16)
                h_count[size] = pcount[p]
                h_pair[size] = p
                h_pos[size] = new_head[p]
                _sift_up(h_count, h_pair, h_pos, pa, pb, size)
                st[ST_HEAP] = size + 1
    return (keys, vals, pa, pb, pcount, node_word, node_next, h_count, h_pair, h_pos,
            tok_arena, m_left, m_right, m_new, m_count, new_head, step_mark, touched)
