"""Numba kernels that encode pre-tokenized bytes with merge-rank BPE.

A *merge table* maps an adjacent token pair ``(left, right)`` to ``(priority, merged id)``; BPE repeatedly merges the
pair of lowest priority, leftmost first, until none applies. Two semantics share these kernels:

- ``"ranks"`` (tiktoken): the priority of ``(x, y)`` is the rank of the token ``x + y``, every split of every token is a
  pair, and a piece that is itself a token is emitted whole.
- ``"merges"`` (Hugging Face tokenizers): the priority is the index of the merge in the merge list; only listed merges
  apply, and there is no whole-piece shortcut.

Short pieces use tiktoken's quadratic scan (fastest below ~50 bytes); long pieces use a lazy min-heap over a linked
list, so a 1 MB piece without split points costs O(n log n), not O(n^2). A whole-piece cache remembers the tokens of
recent pieces.

>>> # pieces "ab" and "c" with merges a+b -> 3 (priority 0): ids [3, 2]     # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from numba import njit

from workbench.tokenization.hashtables import EMPTY, bytes_slot, hash_bytes, int_slot, table_capacity
from workbench.tokenization.heap import pop, sift_up

KEY_STRIDE = 1 << 22  # pair key = left * KEY_STRIDE + right; vocabularies up to 4M tokens
NO_MERGE = np.iinfo(np.int64).max
SHORT_PIECE = 48
CACHE_MAX_PIECE = 256


def build_merge_table(left: np.ndarray, right: np.ndarray, priority: np.ndarray, merged: np.ndarray):
    """``(keys, priorities, merged_ids)`` hash table of the pairs; a repeated pair keeps its lowest priority."""
    cap = table_capacity(len(left))
    return _build_merge_table(left.astype(np.int64), right.astype(np.int64), priority.astype(np.int64),
                              merged.astype(np.int64), cap)


@njit(cache=True)
def _build_merge_table(left, right, priority, merged, capacity):
    keys = np.full(capacity, EMPTY, np.int64)
    prio = np.full(capacity, NO_MERGE, np.int64)
    out = np.full(capacity, EMPTY, np.int64)
    for i in range(left.shape[0]):
        key = left[i] * KEY_STRIDE + right[i]
        slot = int_slot(keys, key)
        if keys[slot] == EMPTY or priority[i] < prio[slot]:
            keys[slot] = key
            prio[slot] = priority[i]
            out[slot] = merged[i]
    return keys, prio, out


@njit(cache=True, inline="always")
def _lookup(keys, left, right):
    return int_slot(keys, left * KEY_STRIDE + right)


@njit(cache=True)
def _bpe_short(sym, n, keys, prio, merged, p, m):
    """Quadratic BPE on ``sym[:n]`` in place (tiktoken's loop); returns the new length."""
    for i in range(n - 1):
        slot = _lookup(keys, sym[i], sym[i + 1])
        if keys[slot] == EMPTY:
            p[i] = NO_MERGE
        else:
            p[i] = prio[slot]
            m[i] = merged[slot]
    while n > 1:
        best = NO_MERGE
        bi = -1
        for i in range(n - 1):
            if p[i] < best:
                best = p[i]
                bi = i
        if bi < 0:
            break
        sym[bi] = m[bi]
        for j in range(bi + 1, n - 1):
            sym[j] = sym[j + 1]
            p[j] = p[j + 1]
            m[j] = m[j + 1]
        n -= 1
        for i in (bi - 1, bi):
            if 0 <= i < n - 1:
                slot = _lookup(keys, sym[i], sym[i + 1])
                if keys[slot] == EMPTY:
                    p[i] = NO_MERGE
                else:
                    p[i] = prio[slot]
                    m[i] = merged[slot]
    return n


# -- merge queue of long pieces (heap.py): lowest (priority, position) first --------------------------------------
@njit(inline="always")
def _first(cols, ctx, a, b):
    """Entries ``(priority, position, left, right)``: the pair at ``position`` was ``(left, right)`` when pushed (a
    popped entry whose pair has changed since is stale)."""
    hp, hpos = cols[0], cols[1]
    return hp[a] < hp[b] or (hp[a] == hp[b] and hpos[a] < hpos[b])


@njit(inline="always")
def _swap(cols, i, j):
    hp, hpos, hl, hr = cols
    hp[i], hp[j] = hp[j], hp[i]
    hpos[i], hpos[j] = hpos[j], hpos[i]
    hl[i], hl[j] = hl[j], hl[i]
    hr[i], hr[j] = hr[j], hr[i]


@njit(cache=True, _nrt=False)
def _heap_push(hp, hpos, hl, hr, size, prio, pos, left, right):
    hp[size] = prio
    hpos[size] = pos
    hl[size] = left
    hr[size] = right
    sift_up((hp, hpos, hl, hr), 0, _first, _swap, size)
    return size + 1


@njit(cache=True, _nrt=False)
def _heap_pop(hp, hpos, hl, hr, size):
    """Move the minimum to index ``size - 1`` and restore the heap on ``[0, size - 1)``; returns the new size."""
    return pop((hp, hpos, hl, hr), 0, _first, _swap, size)


@njit(cache=True)
def _bpe_long(sym, n, keys, prio, merged, nxt, prv, alive, hp, hpos, hl, hr):
    """BPE on ``sym[:n]`` in place with a lazy min-heap of (priority, position); O(n log n).
    ``nxt, prv, alive`` (>= n) and ``hp, hpos, hl, hr`` (>= 3n + 4) are work arrays."""
    for i in range(n):
        nxt[i] = i + 1 if i + 1 < n else -1
        prv[i] = i - 1
        alive[i] = True
    size = 0
    for i in range(n - 1):
        slot = _lookup(keys, sym[i], sym[i + 1])
        if keys[slot] != EMPTY:
            size = _heap_push(hp, hpos, hl, hr, size, prio[slot], i, sym[i], sym[i + 1])
    while size > 0:
        size = _heap_pop(hp, hpos, hl, hr, size)
        pos = hpos[size]
        q = nxt[pos]
        if not alive[pos] or q == -1 or sym[pos] != hl[size] or sym[q] != hr[size]:
            continue  # stale entry
        slot = _lookup(keys, sym[pos], sym[q])
        sym[pos] = merged[slot]
        alive[q] = False
        nxt[pos] = nxt[q]
        if nxt[q] != -1:
            prv[nxt[q]] = pos
        before = prv[pos]
        if before != -1:
            slot = _lookup(keys, sym[before], sym[pos])
            if keys[slot] != EMPTY:
                size = _heap_push(hp, hpos, hl, hr, size, prio[slot], before, sym[before], sym[pos])
        after = nxt[pos]
        if after != -1:
            slot = _lookup(keys, sym[pos], sym[after])
            if keys[slot] != EMPTY:
                size = _heap_push(hp, hpos, hl, hr, size, prio[slot], pos, sym[pos], sym[after])
    out = 0
    i = 0
    while i != -1:
        sym[out] = sym[i]
        out += 1
        i = nxt[i]
    return out


def new_piece_cache(capacity: int = 1 << 16, arena_bytes: int = 1 << 22) -> tuple:
    """Empty whole-piece cache: (hashes, offsets, lengths, tok_off, tok_len, byte_arena, tok_arena, state).
    ``state`` = [bytes used, tokens used, entries]."""
    return (np.zeros(capacity, np.uint64), np.zeros(capacity, np.int64), np.zeros(capacity, np.int64),
            np.zeros(capacity, np.int64), np.zeros(capacity, np.int64), np.zeros(arena_bytes, np.uint8),
            np.zeros(arena_bytes, np.int32), np.zeros(3, np.int64))


@njit(cache=True)
def cache_get(c_hash, c_off, c_len, c_toff, c_tlen, c_bytes, c_toks, data, start, end, h, out, n_out):
    """If piece ``data[start:end]`` (hash ``h``) is in the whole-piece cache, append its tokens to ``out`` at
    ``n_out`` and return the new length; otherwise return -1."""
    slot = bytes_slot(c_hash, c_off, c_len, c_bytes, data, start, end, h)
    if c_hash[slot] == 0:
        return -1
    t0 = c_toff[slot]
    for j in range(c_tlen[slot]):
        out[n_out + j] = c_toks[t0 + j]
    return n_out + c_tlen[slot]


@njit(cache=True)
def cache_put(c_hash, c_off, c_len, c_toff, c_tlen, c_bytes, c_toks, c_state, data, start, end, h, toks, t_start,
              count):
    """Remember that piece ``data[start:end]`` encodes to ``toks[t_start:t_start+count]`` (the cache starts afresh
    when full)."""
    n = end - start
    if c_state[0] + n > c_bytes.shape[0] or c_state[1] + count > c_toks.shape[0] or 2 * c_state[2] >= c_hash.shape[0]:
        c_hash[:] = 0
        c_state[:] = 0
    slot = bytes_slot(c_hash, c_off, c_len, c_bytes, data, start, end, h)
    b0 = c_state[0]
    t0 = c_state[1]
    for j in range(n):
        c_bytes[b0 + j] = data[start + j]
    for j in range(count):
        c_toks[t0 + j] = toks[t_start + j]
    c_hash[slot] = h
    c_off[slot] = b0
    c_len[slot] = n
    c_toff[slot] = t0
    c_tlen[slot] = count
    c_state[0] += n
    c_state[1] += count
    c_state[2] += 1


@njit(cache=True)
def encode_kernel(data, bounds, byte_tok, keys, prio, merged, shortcut,
                  v_hash, v_off, v_len, v_val, v_arena,
                  c_hash, c_off, c_len, c_toff, c_tlen, c_bytes, c_toks, c_state):
    """Encode every piece ``data[bounds[i]:bounds[i+1]]``; returns int32 token ids.

    ``byte_tok[b]``: token of byte ``b``; ``keys/prio/merged``: the merge table; ``shortcut``: emit a piece that is a
    vocabulary token whole (``v_*``: the bytes -> id table); ``c_*``: the whole-piece cache (mutated).
    """
    out = np.empty(data.shape[0], np.int32)
    n_out = 0
    n_pieces = bounds.shape[0] - 1
    longest = 0
    for k in range(n_pieces):
        longest = max(longest, bounds[k + 1] - bounds[k])
    buf = np.empty(max(longest, SHORT_PIECE), np.int64)
    p = np.empty(SHORT_PIECE, np.int64)
    m = np.empty(SHORT_PIECE, np.int64)
    # work arrays of the heap path, allocated once per call
    w = longest if longest > SHORT_PIECE else 1
    nxt = np.empty(w, np.int64)
    prv = np.empty(w, np.int64)
    alive = np.empty(w, np.bool_)
    hp = np.empty(3 * w + 4, np.int64)
    hpos = np.empty(3 * w + 4, np.int64)
    hl = np.empty(3 * w + 4, np.int64)
    hr = np.empty(3 * w + 4, np.int64)
    for k in range(n_pieces):
        start = bounds[k]
        end = bounds[k + 1]
        n = end - start
        if n == 1:
            t = byte_tok[data[start]]
            if t >= 0:  # a byte without a token is dropped, as HF tokenizers does without an unk token
                out[n_out] = t
                n_out += 1
            continue
        h = hash_bytes(data, start, end) | np.uint64(1)
        if shortcut:
            slot = bytes_slot(v_hash, v_off, v_len, v_arena, data, start, end, h)
            if v_hash[slot] != 0:
                out[n_out] = v_val[slot]
                n_out += 1
                continue
        cacheable = n <= CACHE_MAX_PIECE
        if cacheable:
            found = cache_get(c_hash, c_off, c_len, c_toff, c_tlen, c_bytes, c_toks, data, start, end, h, out, n_out)
            if found >= 0:
                n_out = found
                continue
        sym = buf
        k_sym = 0
        for j in range(n):
            t = byte_tok[data[start + j]]
            if t >= 0:
                sym[k_sym] = t
                k_sym += 1
        if k_sym <= SHORT_PIECE:
            count = _bpe_short(sym, k_sym, keys, prio, merged, p, m)
        else:
            count = _bpe_long(sym, k_sym, keys, prio, merged, nxt, prv, alive, hp, hpos, hl, hr)
        for j in range(count):
            out[n_out + j] = sym[j]
        if cacheable:
            cache_put(c_hash, c_off, c_len, c_toff, c_tlen, c_bytes, c_toks, c_state, data, start, end, h, sym, 0,
                      count)
        n_out += count
    return out[:n_out].copy()


@njit(cache=True)
def token_starts(ids, token_len, base):
    """Byte offset of every token, given each token's byte length: ``base + cumsum`` shifted."""
    starts = np.empty(ids.shape[0] + 1, np.int64)
    pos = base
    for i in range(ids.shape[0]):
        starts[i] = pos
        pos += token_len[ids[i]]
    starts[ids.shape[0]] = pos
    return starts


@njit(cache=True)
def concat_tokens(ids, tok_off, tok_len, arena, n_vocab):
    """The bytes of ``ids`` concatenated; returns (bytes as uint8, index of the first invalid id or -1)."""
    total = 0
    for i in range(ids.shape[0]):
        t = ids[i]
        if t < 0 or t >= n_vocab or tok_len[t] < 0:
            return np.empty(0, np.uint8), i
        total += tok_len[t]
    out = np.empty(total, np.uint8)
    pos = 0
    for i in range(ids.shape[0]):
        t = ids[i]
        o = tok_off[t]
        for j in range(tok_len[t]):
            out[pos + j] = arena[o + j]
        pos += tok_len[t]
    return out, -1
