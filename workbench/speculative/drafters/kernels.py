"""Numba kernels of the model-free drafters, over flat integer arrays; their readable references live in
``tests/workbench/speculative/drafters_reference.py`` and the tests check one against the other.

* prompt lookup: :func:`suffix_match_lengths`, :func:`prompt_lookup_match`, :func:`prompt_lookup_candidates`;
* SuffixDecoding: a depth-limited suffix trie in flat arrays (:func:`trie_extend`, :func:`trie_rehash`,
  :func:`trie_speculate`, :func:`trie_candidates`);
* Token Recycling: :func:`adjacency_update`, :func:`fill_template`;
* corpus n-grams: :func:`count_sorted_ngrams`, :func:`find_context`.

Plus :func:`check_paths` / :func:`check_ids`, the input checks the drafters share.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from workbench.errors import SpeculativeError
from workbench.tokenization.hashtables import EMPTY, int_slot

# -- shared input checks ------------------------------------------------------------------------------------------


def check_ids(ids: np.ndarray, what: str = "the context") -> np.ndarray:
    """int64 ids, all >= 0 (and < 2**31, the drafters' tables store them in 31 bits)."""
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= 2**31):
        bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
        raise SpeculativeError(f"{what} holds token id {bad}; token ids must lie in [0, 2**31)")
    return ids


def check_paths(paths) -> list[np.ndarray]:
    """``paths``: a list of 1-D integer arrays of drafted tokens (an empty array means "right after the context")."""
    if isinstance(paths, np.ndarray) and paths.ndim == 1:
        raise SpeculativeError("paths must be a list of 1-D token arrays, e.g. [np.array([5, 7]), np.array([])]")
    out = []
    for i, p in enumerate(paths):
        arr = np.asarray(p)
        if arr.size == 0:
            out.append(np.zeros(0, np.int64))
            continue
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise SpeculativeError(f"path {i} must be a 1-D array of integer token ids, got {arr.dtype} {arr.shape}")
        out.append(check_ids(arr.astype(np.int64), f"path {i}"))
    return out


# -- prompt lookup ------------------------------------------------------------------------------------------------


@njit(cache=True)
def suffix_match_lengths(seq, max_n):
    """``L[e]`` for every end position ``e`` in ``1..T-1``: the length (capped at ``max_n``) of the longest common
    suffix of ``seq[:e]`` and ``seq`` -- an n-gram match of the context's tail that ``seq[e]`` follows. ``L[0] = 0``.

    ``seq=[1, 2, 3, 1, 2], max_n=3 -> [0, 0, 2, 0, 0]`` (``[1, 2]`` ends at 2 and is followed by ``3``).
    """
    t = seq.shape[0]
    out = np.zeros(t, np.int32)
    for e in range(1, t):
        n = 0
        while n < max_n and n < e and seq[e - 1 - n] == seq[t - 1 - n]:
            n += 1
        out[e] = n
    return out


@njit(cache=True)
def prompt_lookup_match(seq, min_n, max_n, last):
    """``(start, n)``: ``seq[start - n:start]`` equals ``seq[-n:]`` for the largest ``n`` in ``[min_n, max_n]`` that
    has a match followed by at least one token; among those matches the first (smallest ``start``, Hugging Face and
    vLLM) or, with ``last``, the most recent one. ``(-1, 0)`` when nothing matches."""
    lengths = suffix_match_lengths(seq, max_n)
    best = 0
    start = -1
    for e in range(1, seq.shape[0]):
        n = lengths[e]
        if n > best or (n == best and last and n > 0):
            best = n
            start = e
    if best < min_n:
        return -1, 0
    return start, best


@njit(cache=True)
def prompt_lookup_candidates(seq, min_n, max_n, k):
    """Up to ``k`` distinct tokens that followed an earlier match of ``seq``'s tail (``min_n <= n <= max_n``), best
    first: longer match, then more matches of at least that length, then the more recent one.

    Returns ``(tokens int64 [<=k], probs float64 [<=k], lengths int32 [<=k])``; a token's prob is the share of the
    matches at least as long as its own longest match that it follows (a back-off frequency estimate)."""
    t = seq.shape[0]
    lengths = suffix_match_lengths(seq, max_n)
    m = 0
    for e in range(1, t):
        if lengths[e] >= min_n:
            m += 1
    ends = np.empty(m, np.int64)
    j = 0
    for e in range(1, t):
        if lengths[e] >= min_n:
            ends[j] = e
            j += 1
    toks = np.empty(m, np.int64)
    for i in range(m):
        toks[i] = seq[ends[i]]
    order = np.argsort(toks, kind="mergesort")
    # one group per distinct token: its longest match and its most recent end
    g_tok = np.empty(m, np.int64)
    g_len = np.zeros(m, np.int32)
    g_last = np.zeros(m, np.int64)
    n_groups = 0
    for ii in range(m):
        i = order[ii]
        if n_groups == 0 or g_tok[n_groups - 1] != toks[i]:
            g_tok[n_groups] = toks[i]
            g_len[n_groups] = 0
            g_last[n_groups] = 0
            n_groups += 1
        g = n_groups - 1
        if lengths[ends[i]] > g_len[g]:
            g_len[g] = lengths[ends[i]]
        if ends[i] > g_last[g]:
            g_last[g] = ends[i]
    # per group: matches at least as long as its own best, for it and in total
    g_cnt = np.zeros(n_groups, np.int64)
    g_tot = np.zeros(n_groups, np.int64)
    gi = 0
    group_of = np.empty(m, np.int64)
    for ii in range(m):
        i = order[ii]
        while g_tok[gi] != toks[i]:
            gi += 1
        group_of[i] = gi
    for g in range(n_groups):
        for i in range(m):
            if lengths[ends[i]] >= g_len[g]:
                g_tot[g] += 1
                if group_of[i] == g:
                    g_cnt[g] += 1
    kk = min(k, n_groups)
    out_tok = np.empty(kk, np.int64)
    out_prob = np.empty(kk, np.float64)
    out_len = np.empty(kk, np.int32)
    taken = np.zeros(n_groups, np.bool_)
    for r in range(kk):
        best = -1
        for g in range(n_groups):
            if taken[g]:
                continue
            if best < 0 or g_len[g] > g_len[best] or (g_len[g] == g_len[best] and (
                    g_cnt[g] > g_cnt[best] or (g_cnt[g] == g_cnt[best] and g_last[g] > g_last[best]))):
                best = g
        taken[best] = True
        out_tok[r] = g_tok[best]
        out_prob[r] = g_cnt[best] / g_tot[best]
        out_len[r] = g_len[best]
    return out_tok, out_prob, out_len


# -- SuffixDecoding: a depth-limited suffix trie ------------------------------------------------------------------
#
# Node 0 is the root. Per node: tok (int64), parent, depth, first_child, next_sib (int32), count (int64) = how many
# start positions of the indexed sequences have the node's string as a prefix of their (max_depth-capped) suffix,
# i.e. the number of occurrences of that string. Children are found through an open-addressing table keyed by
# parent * 2**31 + token. ``state`` int64 [4] = (n_nodes, ring_start, ring_size, _); ``ring`` int32 [max_depth]
# holds the active nodes of the sequence being extended (one per start position still shorter than max_depth).

TRIE_KEY_SHIFT = 31


@njit(cache=True, inline="always")
def _trie_key(parent, tok):
    return (np.int64(parent) << TRIE_KEY_SHIFT) | np.int64(tok)


@njit(cache=True)
def trie_child(hkeys, hvals, node, tok):
    """The child of ``node`` for ``tok``, or -1."""
    slot = int_slot(hkeys, _trie_key(node, tok))
    if hkeys[slot] == EMPTY:
        return -1
    return hvals[slot]


@njit(cache=True)
def trie_rehash(tok, parent, n_nodes, hkeys, hvals):
    """Fill an empty table ``hkeys/hvals`` with the child links of nodes ``1..n_nodes-1`` (after growing)."""
    for i in range(1, n_nodes):
        slot = int_slot(hkeys, _trie_key(parent[i], tok[i]))
        hkeys[slot] = _trie_key(parent[i], tok[i])
        hvals[slot] = i


@njit(cache=True)
def trie_extend(tokens, start, tok, parent, depth, first_child, next_sib, count, hkeys, hvals, state, ring,
                max_depth):
    """Append ``tokens[start:]`` to the sequence being indexed (ArcticInference's ``SuffixTree::append``, over an
    uncompressed trie). Stops early, returning the index of the first token not appended, when fewer than
    ``max_depth`` free node slots remain, so that the caller can grow the arrays; returns ``len(tokens)`` when done."""
    cap = tok.shape[0]
    n_nodes = state[0]
    r0 = state[1]
    size = state[2]
    i = start
    while i < tokens.shape[0]:
        if n_nodes + max_depth > cap:
            break
        t = tokens[i]
        # a new suffix starts here (the root becomes active); the oldest one has reached max_depth and retires
        if size == max_depth:
            r0 = (r0 + 1) % max_depth
            size -= 1
        ring[(r0 + size) % max_depth] = 0
        size += 1
        count[0] += 1
        for a in range(size):
            slot_a = (r0 + a) % max_depth
            node = ring[slot_a]
            key = _trie_key(node, t)
            slot = int_slot(hkeys, key)
            if hkeys[slot] == EMPTY:
                child = n_nodes
                n_nodes += 1
                tok[child] = t
                parent[child] = node
                depth[child] = depth[node] + 1
                first_child[child] = -1
                next_sib[child] = first_child[node]
                first_child[node] = child
                count[child] = 0
                hkeys[slot] = key
                hvals[slot] = child
            else:
                child = hvals[slot]
            count[child] += 1
            ring[slot_a] = child
        i += 1
    state[0] = n_nodes
    state[1] = r0
    state[2] = size
    return i


@njit(cache=True)
def trie_match(hkeys, hvals, pattern, lo, hi):
    """Node of the string ``pattern[lo:hi]``, or -1 when it never occurred."""
    node = 0
    for i in range(lo, hi):
        node = trie_child(hkeys, hvals, node, pattern[i])
        if node < 0:
            return -1
    return node


@njit(cache=True)
def _sorted_children(node, tok, first_child, next_sib, count):
    """Children of ``node`` by count (descending), then token (ascending)."""
    n = 0
    c = first_child[node]
    while c >= 0:
        n += 1
        c = next_sib[c]
    kids = np.empty(n, np.int64)
    keys = np.empty(n, np.int64)
    c = first_child[node]
    j = 0
    while c >= 0:
        kids[j] = c
        keys[j] = -(count[c] << 31) + tok[c]
        j += 1
        c = next_sib[c]
    return kids[np.argsort(keys, kind="mergesort")]


@njit(cache=True)
def _grow_i64(a, n):
    out = np.empty(max(2 * a.shape[0], n), a.dtype)
    out[:a.shape[0]] = a
    return out


@njit(cache=True)
def _grow_f64(a, n):
    out = np.empty(max(2 * a.shape[0], n), a.dtype)
    out[:a.shape[0]] = a
    return out


@njit(cache=True)
def _speculate_path(node, max_tokens, min_prob, tok, first_child, next_sib, count):
    out_tok = np.empty(max_tokens, np.int64)
    out_par = np.empty(max_tokens, np.int64)
    out_prob = np.empty(max_tokens, np.float64)
    n = 0
    prob = 1.0
    while n < max_tokens:
        best = -1
        c = first_child[node]
        while c >= 0:
            if best < 0 or count[c] > count[best] or (count[c] == count[best] and tok[c] < tok[best]):
                best = c
            c = next_sib[c]
        if best < 0:
            break
        prob *= count[best] / count[node]
        if prob < min_prob:
            break
        out_tok[n] = tok[best]
        out_par[n] = n - 1
        out_prob[n] = prob
        n += 1
        node = best
    return out_tok[:n], out_par[:n], out_prob[:n]


@njit(cache=True)
def _speculate_tree(node, max_tokens, min_prob, tok, first_child, next_sib, count):
    """Best-first growth (ArcticInference's ``_speculate_tree``): pop the candidate with the largest path
    probability (ties: the one pushed first; siblings are pushed by count, then token), emit it, push its children
    whose path probability stays >= ``min_prob``."""
    out_tok = np.empty(max_tokens, np.int64)
    out_par = np.empty(max_tokens, np.int64)
    out_prob = np.empty(max_tokens, np.float64)
    cap = 16
    p_prob = np.empty(cap, np.float64)
    p_node = np.empty(cap, np.int64)
    p_par = np.empty(cap, np.int64)
    p_seq = np.empty(cap, np.int64)
    size = 0
    seq = 0
    n = 0
    # the matched node itself is expanded first (as the root item of the official heap)
    cur = node
    cur_prob = 1.0
    cur_idx = -1
    while True:
        kids = _sorted_children(cur, tok, first_child, next_sib, count)
        for c in kids:
            pr = cur_prob * (count[c] / count[cur])
            if pr >= min_prob:
                if size == p_prob.shape[0]:
                    p_prob = _grow_f64(p_prob, size + 1)
                    p_node = _grow_i64(p_node, size + 1)
                    p_par = _grow_i64(p_par, size + 1)
                    p_seq = _grow_i64(p_seq, size + 1)
                p_prob[size] = pr
                p_node[size] = c
                p_par[size] = cur_idx
                p_seq[size] = seq
                seq += 1
                size += 1
        if n >= max_tokens or size == 0:
            break
        best = 0
        for j in range(1, size):
            if p_prob[j] > p_prob[best] or (p_prob[j] == p_prob[best] and p_seq[j] < p_seq[best]):
                best = j
        cur = p_node[best]
        cur_prob = p_prob[best]
        out_tok[n] = tok[cur]
        out_par[n] = p_par[best]
        out_prob[n] = cur_prob
        cur_idx = n
        n += 1
        size -= 1
        p_prob[best] = p_prob[size]
        p_node[best] = p_node[size]
        p_par[best] = p_par[size]
        p_seq[best] = p_seq[size]
        if n >= max_tokens:
            break
    return out_tok[:n], out_par[:n], out_prob[:n]


@njit(cache=True)
def trie_speculate(pattern, max_spec_tokens, spec_factor, spec_offset, min_prob, tree_mode,
                   tok, first_child, next_sib, count, hkeys, hvals):
    """ArcticInference's ``SuffixTree::speculate``: for every match length ``m = 1 .. len(pattern) - 1`` whose
    string ``pattern[-m:]`` occurs, draft up to ``min(max_spec_tokens, int(m * spec_factor + spec_offset))``
    tokens below it (path or tree); keep the draft with the largest score (sum of its probabilities; ties go to
    the longer match). Returns ``(tokens, parents, probs, match_len, score)``."""
    t = pattern.shape[0]
    best_tok = np.zeros(0, np.int64)
    best_par = np.zeros(0, np.int64)
    best_prob = np.zeros(0, np.float64)
    best_score = 0.0
    best_len = 0
    for m in range(1, t):
        node = trie_match(hkeys, hvals, pattern, t - m, t)
        if node < 0:
            break
        max_tokens = min(max_spec_tokens, int(m * spec_factor + spec_offset + 1e-6))
        max_tokens = max(max_tokens, 0)
        if tree_mode:
            d_tok, d_par, d_prob = _speculate_tree(node, max_tokens, min_prob, tok, first_child, next_sib, count)
        else:
            d_tok, d_par, d_prob = _speculate_path(node, max_tokens, min_prob, tok, first_child, next_sib, count)
        score = 0.0
        for p in d_prob:
            score += p
        if score >= best_score:
            best_score = score
            best_tok = d_tok
            best_par = d_par
            best_prob = d_prob
            best_len = m
    return best_tok, best_par, best_prob, best_len, best_score


@njit(cache=True)
def trie_candidates(pattern, k, tok, first_child, next_sib, count, hkeys, hvals):
    """The children of the longest ``pattern[-m:]`` (``m = 1 .. len(pattern) - 1``) that has any, best first (count,
    then token), at most ``k``: ``(tokens, probs = count(child) / count(node), m)``; empty with ``m = 0``."""
    t = pattern.shape[0]
    best = -1
    best_len = 0
    for m in range(1, t):
        node = trie_match(hkeys, hvals, pattern, t - m, t)
        if node < 0:
            break
        if first_child[node] >= 0:
            best = node
            best_len = m
    if best < 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64), 0
    kids = _sorted_children(best, tok, first_child, next_sib, count)
    kk = min(k, kids.shape[0])
    out_tok = np.empty(kk, np.int64)
    out_prob = np.empty(kk, np.float64)
    for i in range(kk):
        out_tok[i] = tok[kids[i]]
        out_prob[i] = count[kids[i]] / count[best]
    return out_tok, out_prob, best_len


# -- Token Recycling ----------------------------------------------------------------------------------------------


@njit(cache=True)
def adjacency_update(adj, fed, top):
    """``adj[fed[i]] = top[i, :K]`` for every row in order (a token fed twice keeps its last row); columns past
    ``top``'s width are cleared to -1."""
    k = adj.shape[1]
    kk = min(k, top.shape[1])
    for i in range(fed.shape[0]):
        row = fed[i]
        for j in range(kk):
            adj[row, j] = top[i, j]
        for j in range(kk, k):
            adj[row, j] = -1


@njit(cache=True)
def fill_template(adj, root_token, t_parent, t_rank, budget):
    """Fill a static tree template breadth-first from the adjacency matrix: template node ``i`` (parent
    ``t_parent[i]``, -1 for the root) gets ``adj[token of its parent, t_rank[i]]``; a -1 entry drops the node and
    its subtree. At most ``budget`` nodes, in template order. Returns (tokens int64, parents int32, ranks int32,
    template index int32) of the kept nodes."""
    n = t_parent.shape[0]
    out_tok = np.empty(n, np.int64)
    out_par = np.empty(n, np.int32)
    out_rank = np.empty(n, np.int32)
    out_src = np.empty(n, np.int32)
    where = np.full(n, -1, np.int32)  # template node -> output node (-1: dropped)
    m = 0
    for i in range(n):
        if m >= budget:
            break
        p = t_parent[i]
        if p < 0:
            src = root_token
            out_p = -1
        else:
            out_p = where[p]
            if out_p < 0:
                continue
            src = out_tok[out_p]
        nxt = adj[src, t_rank[i]]
        if nxt < 0:
            continue
        out_tok[m] = nxt
        out_par[m] = out_p
        out_rank[m] = t_rank[i]
        out_src[m] = i
        where[i] = m
        m += 1
    return out_tok[:m], out_par[:m], out_rank[:m], out_src[:m]


# -- corpus n-grams -----------------------------------------------------------------------------------------------


@njit(cache=True)
def count_sorted_ngrams(rows):
    """Count lexicographically sorted n-grams ``rows`` int64 [M, o] (context = the first ``o - 1`` columns).

    Returns ``(contexts int64 [U, o-1], ptr int64 [U+1], next_tok int64 [G], counts int64 [G])``: the distinct
    contexts in sorted order, and for context ``u`` its next tokens ``next_tok[ptr[u]:ptr[u+1]]`` with their counts,
    by count (descending) then token (ascending)."""
    m, o = rows.shape
    c = o - 1
    # distinct contexts and distinct (context, next) pairs
    n_ctx = 0
    n_pair = 0
    for i in range(m):
        new_ctx = i == 0
        if not new_ctx:
            for j in range(c):
                if rows[i, j] != rows[i - 1, j]:
                    new_ctx = True
                    break
        if new_ctx:
            n_ctx += 1
        if new_ctx or rows[i, c] != rows[i - 1, c]:
            n_pair += 1
    contexts = np.empty((n_ctx, c), np.int64)
    ptr = np.zeros(n_ctx + 1, np.int64)
    next_tok = np.empty(n_pair, np.int64)
    counts = np.zeros(n_pair, np.int64)
    u = -1
    g = -1
    for i in range(m):
        new_ctx = i == 0
        if not new_ctx:
            for j in range(c):
                if rows[i, j] != rows[i - 1, j]:
                    new_ctx = True
                    break
        if new_ctx:
            u += 1
            for j in range(c):
                contexts[u, j] = rows[i, j]
            ptr[u] = g + 1
        if new_ctx or rows[i, c] != rows[i - 1, c]:
            g += 1
            next_tok[g] = rows[i, c]
        counts[g] += 1
    ptr[n_ctx] = n_pair
    # within each context: by count descending, token ascending
    for u in range(n_ctx):
        lo = ptr[u]
        hi = ptr[u + 1]
        if hi - lo < 2:
            continue
        keys = np.empty(hi - lo, np.int64)
        for j in range(lo, hi):
            keys[j - lo] = -(counts[j] << 31) + next_tok[j]
        order = np.argsort(keys, kind="mergesort")
        nt = next_tok[lo:hi].copy()
        ct = counts[lo:hi].copy()
        for j in range(hi - lo):
            next_tok[lo + j] = nt[order[j]]
            counts[lo + j] = ct[order[j]]
    return contexts, ptr, next_tok, counts


@njit(cache=True)
def find_context(contexts, query):
    """Row of ``query`` in the lexicographically sorted ``contexts`` [U, c] (binary search), or -1."""
    lo = 0
    hi = contexts.shape[0]
    c = contexts.shape[1]
    while lo < hi:
        mid = (lo + hi) // 2
        cmp = 0
        for j in range(c):
            if contexts[mid, j] < query[j]:
                cmp = -1
                break
            if contexts[mid, j] > query[j]:
                cmp = 1
                break
        if cmp == 0:
            return mid
        if cmp < 0:
            lo = mid + 1
        else:
            hi = mid
    return -1


@njit(cache=True)
def backoff_take(next_tok, counts, lo, hi, k, weight, mark, mark_all):
    """One order of stupid back-off: the first ``k`` tokens of ``next_tok[lo:hi]`` (already by count) not marked as
    seen at a higher order, scored ``weight * count``; then, with ``mark_all``, mark every token of the range."""
    out_tok = np.empty(k, np.int64)
    out_score = np.empty(k, np.float64)
    m = 0
    for j in range(lo, hi):
        if m >= k:
            break
        t = next_tok[j]
        if mark[t]:
            continue
        out_tok[m] = t
        out_score[m] = weight * counts[j]
        m += 1
    if mark_all:
        for j in range(lo, hi):
            mark[next_tok[j]] = 1
    return out_tok[:m], out_score[:m]


@njit(cache=True)
def unmark(next_tok, lo, hi, mark):
    for j in range(lo, hi):
        mark[next_tok[j]] = 0


def warm_up() -> None:
    """Compile (or load from Numba's cache) every kernel here on tiny inputs, so that the first real draft does not
    pay for it; the lab calls this at start-up."""
    seq = np.array([1, 2, 3, 1, 2], np.int64)
    prompt_lookup_match(seq, 1, 3, False)
    prompt_lookup_candidates(seq, 1, 3, 2)
    cap = 64
    tok = np.zeros(cap, np.int64)
    parent = np.zeros(cap, np.int32)
    depth = np.zeros(cap, np.int32)
    first_child = np.full(cap, -1, np.int32)
    next_sib = np.full(cap, -1, np.int32)
    count = np.zeros(cap, np.int64)
    hkeys = np.full(128, EMPTY, np.int64)
    hvals = np.zeros(128, np.int32)
    state = np.array([1, 0, 0, 0], np.int64)
    trie_extend(seq, 0, tok, parent, depth, first_child, next_sib, count, hkeys, hvals, state, np.zeros(4, np.int32), 4)
    trie_rehash(tok, parent, int(state[0]), np.full(128, EMPTY, np.int64), np.zeros(128, np.int32))
    for tree in (False, True):
        trie_speculate(seq, 4, 1.0, 0.0, 0.1, tree, tok, first_child, next_sib, count, hkeys, hvals)
    trie_candidates(seq, 2, tok, first_child, next_sib, count, hkeys, hvals)
    adj = np.full((4, 2), -1, np.int32)
    adjacency_update(adj, np.array([1], np.int64), np.array([[2, 3]], np.int32))
    fill_template(adj, 1, np.array([-1, 0], np.int32), np.array([0, 0], np.int32), 2)
    rows = np.array([[1, 2], [1, 3]], np.int64)
    ctx, ptr, nxt, cnt = count_sorted_ngrams(rows)
    find_context(ctx, np.array([1], np.int64))
    mark = np.zeros(4, np.uint8)
    backoff_take(nxt, cnt, 0, 2, 1, 0.5, mark, True)
    unmark(nxt, 0, 2, mark)
