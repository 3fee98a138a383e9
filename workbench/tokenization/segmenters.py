"""Several encoders over one fixed vocabulary, chosen per call: merge-list BPE and the merge-list-free alternatives.

Every method segments each pre-tokenizer piece (the same pieces as the tokenizer's own encoder) into ordinary
vocabulary tokens (special tokens are never produced; special-token text is ordinary text), drops bytes that have no
token of their own (``tokenizer.missing_bytes``) exactly as the tokenizer does, and so decodes back to its input.

=============  ===================================================================================================
``"bpe"``      the tokenizer's own merge-list BPE (:meth:`Tokenizer.encode`).
``"lbpe"``     LBPE, long-token-first (Lian et al., 2024): in each piece, take the *longest* vocabulary token that
               occurs in a part of the piece not yet covered; ties between equally long tokens go to the token of
               lower merge rank (the one BPE learned first), and between two occurrences of that token to the
               leftmost. Cut around it and repeat on the uncovered parts; bytes left over are single-byte tokens.
``"greedy"``   longest-prefix match, left to right ("merge lists are unnecessary": the greedy encoder).
``"optimal"``  fewest tokens per piece (the exact encoder), by dynamic programming. Among the segmentations with
               fewest tokens it picks the one whose first token is longest, then whose second token is longest,
               and so on (the lexicographically largest sequence of token lengths).
``"shuffled"`` merge-list BPE under a randomly permuted merge list (``seed``): the same merges, another order.
``"truncated"`` merge-list BPE with only the first ``keep`` merges (a fraction in [0, 1] or a count); bytes no kept
               merge covers stay single-byte tokens. ``keep=1.0`` is exactly ``"bpe"``.
=============  ===================================================================================================

Token ranks (for LBPE's tie-break) are positions in ``tokenizer.merge_list``: a token's rank is the index of the
first merge that makes it; tokens no merge makes (single bytes, unreachable tokens) rank after every merged token.

A vocabulary with merges ``a+b, b+c, d+e, bc+de`` (in that order) and the text ``"abcde"``: BPE makes ``ab`` first,
which blocks ``bcde``, so bpe and greedy give ``[ab, c, de]``; lbpe and optimal give ``[a, bcde]``. With GPT-2:

>>> [gpt2.decode([i]) for i in encode_with(gpt2, "unbelievable", "bpe")]       # doctest: +SKIP
['un', 'bel', 'iev', 'able']
>>> [gpt2.decode([i]) for i in encode_with(gpt2, "unbelievable", "lbpe")]      # doctest: +SKIP
['un', 'bel', 'ie', 'vable']
>>> [gpt2.decode([i]) for i in encode_with(gpt2, "unbelievable", "shuffled")]  # doctest: +SKIP
['u', 'nb', 'e', 'li', 'eva', 'bl', 'e']
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from workbench.errors import ConfigurationError, TokenizerError
from workbench.tokenization.encoder import CACHE_MAX_PIECE, cache_get, cache_put, new_piece_cache
from workbench.tokenization.hashtables import (
    _FNV_OFFSET,
    _FNV_PRIME,
    build_bytes_table,
    bytes_slot,
    hash_bytes,
    mix64,
    table_capacity,
)
from workbench.tokenization.pretokenize import split_bytes
from workbench.tokenization.tokenizer import Tokenizer, _utf8

METHODS = ("bpe", "lbpe", "greedy", "optimal", "shuffled", "truncated")
KERNEL_METHODS = ("lbpe", "greedy", "optimal")
_KERNEL_CODE = {"greedy": 0, "optimal": 1, "lbpe": 2}


# -- per-tokenizer tables --------------------------------------------------------------------------------------------
@dataclass
class VocabIndex:
    """Lookup tables of one tokenizer's ordinary tokens for the segmentation kernels.

    ``p_hash, p_off, p_len``: a bytes hash table (:func:`~workbench.tokenization.hashtables.bytes_slot`, strings in
    ``arena``) of every prefix of every ordinary token; ``p_tok[slot]`` is the id of the token equal to that prefix,
    or -1 when the prefix is not itself a token. Walking a piece byte by byte, a miss means no longer token starts
    here, so matching stops early. ``rank``: int64[n_vocab], LBPE's tie-break (see the module docstring).
    ``max_len``: the longest ordinary token, in bytes. ``caches``: method -> whole-piece cache of the kernels.
    """

    p_hash: np.ndarray
    p_off: np.ndarray
    p_len: np.ndarray
    p_tok: np.ndarray
    arena: np.ndarray
    rank: np.ndarray
    max_len: int
    caches: dict = field(default_factory=dict)


_INDEX: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SHUFFLED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_N_MERGED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def ordinary_ids(tokenizer: Tokenizer) -> np.ndarray:
    """int64 ids of the ordinary tokens (neither unused nor special), ascending."""
    lengths = tokenizer._tok_len
    ids = np.flatnonzero(lengths > 0)
    if tokenizer._special_ids:
        ids = ids[~np.isin(ids, np.fromiter(tokenizer._special_ids, np.int64))]
    return ids.astype(np.int64)


def token_ranks(tokenizer: Tokenizer) -> np.ndarray:
    """int64[n_vocab]: index in ``tokenizer.merge_list`` of the first merge making each token; tokens no merge makes
    get ``n_merges + id`` (after every merged token, in id order). For rank semantics (tiktoken) the rank is the id,
    which orders tokens as the merge list does (GPT-2: merge ``k`` makes token ``256 + k``)."""
    n = tokenizer.n_vocab
    if tokenizer.semantics == "ranks":
        return np.arange(n, dtype=np.int64)
    merges = tokenizer.merge_list
    rank = len(merges) + np.arange(n, dtype=np.int64)
    if len(merges):
        made = merges[:, 2]
        first = np.unique(made, return_index=True)
        rank[first[0]] = first[1]
    return rank


def vocab_index(tokenizer: Tokenizer) -> VocabIndex:
    """The :class:`VocabIndex` of ``tokenizer`` (built once, then cached while the tokenizer lives)."""
    if not isinstance(tokenizer, Tokenizer):
        raise TokenizerError(f"Expected a Tokenizer, got {type(tokenizer).__name__}.")
    index = _INDEX.get(tokenizer)
    if index is None:
        ids = ordinary_ids(tokenizer)
        lengths = tokenizer._tok_len[ids]
        offsets = tokenizer._tok_off[ids]
        # whole tokens first, so a prefix that is also a token keeps that token's entry (the table keeps the first)
        n_prefixes = int(lengths.sum())
        owner = np.repeat(np.arange(len(ids)), lengths)
        cut = np.arange(n_prefixes) - np.repeat(np.cumsum(lengths) - lengths, lengths) + 1
        proper = cut < lengths[owner]
        all_off = np.concatenate([offsets, offsets[owner[proper]]])
        all_len = np.concatenate([lengths, cut[proper]])
        p_hash, p_off, p_len, p_val = build_bytes_table(tokenizer._arena, all_off, all_len,
                                                        table_capacity(len(all_off)))
        p_tok = np.where((p_val >= 0) & (p_val < len(ids)), ids[np.clip(p_val, 0, max(len(ids) - 1, 0))], -1)
        index = VocabIndex(p_hash, p_off, p_len, p_tok.astype(np.int64), tokenizer._arena, token_ranks(tokenizer),
                           int(lengths.max()) if len(lengths) else 1)
        _INDEX[tokenizer] = index
    return index


def shuffled_tokenizer(tokenizer: Tokenizer, seed: int = 0) -> Tokenizer:
    """``tokenizer`` with its merge list randomly permuted (``numpy.random.default_rng(seed)``), merge-list
    semantics: the same vocabulary and merges, applied in another priority order. Cached per (tokenizer, seed)."""
    seed = _check_seed(seed)
    memo = _SHUFFLED.setdefault(tokenizer, {})
    if seed not in memo:
        merges = tokenizer.merge_list
        order = np.random.default_rng(seed).permutation(len(merges))
        tokens = [tokenizer._tokens[i] for i in range(tokenizer.n_vocab)]
        memo[seed] = Tokenizer(tokens, merges[order], pretokenizer=tokenizer.pretokenizer, semantics="merges",
                               special_tokens=tokenizer.special_tokens, name=f"{tokenizer.name}-shuffled{seed}")
    return memo[seed]


def n_merges(tokenizer: Tokenizer) -> int:
    """Length of the merge list that ``max_merges`` counts in: the merges (merge semantics) or the merged tokens
    (rank semantics)."""
    if tokenizer.semantics != "ranks":
        return len(tokenizer.merge_triples)
    if tokenizer not in _N_MERGED:
        _N_MERGED[tokenizer] = len(np.unique(tokenizer.merge_triples[:, 2]))
    return _N_MERGED[tokenizer]


def kept_merges(tokenizer: Tokenizer, keep: float | int) -> int:
    """Number of merges that ``keep`` stands for: a float in [0, 1] is a fraction of the merge list (rounded), an
    int a count (clipped to :func:`n_merges`).

    >>> # 50,000 merges: keep=0.1 -> 5000, keep=123 -> 123, keep=10**9 -> 50000      # doctest: +SKIP
    """
    n = n_merges(tokenizer)
    if isinstance(keep, bool) or not isinstance(keep, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"keep must be a fraction in [0, 1] or a whole number of merges, got {keep!r}.")
    if isinstance(keep, (int, np.integer)):
        if keep < 0:
            raise ConfigurationError(f"keep must be >= 0 merges, got {keep}.")
        return min(int(keep), n)
    if not 0.0 <= keep <= 1.0:
        raise ConfigurationError(f"keep as a float is a fraction of the merge list, in [0, 1]; got {keep}. "
                                 "Pass an int to keep a number of merges.")
    return int(round(keep * n))


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigurationError(f"seed must be a non-negative integer, got {seed!r}.")
    return int(seed)


def _check_method(method) -> str:
    if method not in METHODS:
        raise ConfigurationError(f"Unknown encoding method {method!r}; choose one of {', '.join(METHODS)}.")
    return method


# -- public API --------------------------------------------------------------------------------------------------------
def encode_with(tokenizer: Tokenizer, text: str, method: str = "bpe", *, seed: int = 0,
                keep: float | int = 1.0) -> list[int]:
    """Token ids of ``text`` under ``tokenizer``'s vocabulary, segmented by ``method`` (see the module docstring).

    ``seed``: the permutation of ``"shuffled"``; ``keep``: the merges ``"truncated"`` keeps (fraction or count).
    Always ``tokenizer.decode(ids) == text`` (less bytes in ``tokenizer.missing_bytes``).

    >>> encode_with(gpt2, "unbelievable", "lbpe")              # doctest: +SKIP
    [403, 6667, 494, 23765]
    """
    if not isinstance(text, str):
        raise TokenizerError(f"encode_with() takes a str, got {type(text).__name__}; use encode_bytes_with() for bytes.")
    return encode_bytes_with(tokenizer, _utf8(text), method, seed=seed, keep=keep)


def encode_bytes_with(tokenizer: Tokenizer, data: bytes, method: str = "bpe", *, seed: int = 0,
                      keep: float | int = 1.0) -> list[int]:
    """:func:`encode_with` for raw bytes (which may be invalid UTF-8)."""
    _check_method(method)
    if not isinstance(tokenizer, Tokenizer):
        raise TokenizerError(f"Expected a Tokenizer, got {type(tokenizer).__name__}.")
    if method == "bpe":
        return tokenizer.encode_bytes(data)
    if method == "shuffled":
        return shuffled_tokenizer(tokenizer, seed).encode_bytes(data)
    if method == "truncated":
        k = kept_merges(tokenizer, keep)
        if k >= n_merges(tokenizer):
            return tokenizer.encode_bytes(data)
        return tokenizer._encode_array(tokenizer._as_array(data), k).tolist()
    return segment_array(tokenizer, tokenizer._as_array(data), method).tolist()


def segment_array(tokenizer: Tokenizer, arr: np.ndarray, method: str) -> np.ndarray:
    """int32 ids of the uint8 array ``arr`` under one of the kernel methods (``"lbpe"``, ``"greedy"``,
    ``"optimal"``)."""
    if method not in KERNEL_METHODS:
        raise ConfigurationError(f"segment_array runs {', '.join(KERNEL_METHODS)}, not {method!r}.")
    index = vocab_index(tokenizer)
    if arr.shape[0] == 0:
        return np.zeros(0, np.int32)
    bounds = split_bytes(arr, tokenizer.pretokenizer)
    if tokenizer.missing_bytes:
        present = tokenizer._byte_tok[arr] >= 0
        if not present.all():  # drop them inside their pieces, as the BPE encoder does
            before = np.zeros(arr.shape[0] + 1, np.int64)
            np.cumsum(present, out=before[1:])
            bounds = before[bounds]
            arr = arr[present]
            arr.flags.writeable = False  # the same array type as frombuffer's: one compiled kernel, not two
    cache = index.caches.get(method)
    if cache is None:
        cache = index.caches[method] = new_piece_cache(1 << 15, 1 << 20)
    return segment_kernel(arr, bounds, _KERNEL_CODE[method], tokenizer._byte_tok, index.p_hash, index.p_off,
                          index.p_len, index.p_tok, index.arena, index.rank, index.max_len, *cache)


@dataclass(frozen=True)
class EncoderRow:
    """One method on one text: ``n_tokens`` for ``n_bytes`` of UTF-8; ``vs_bpe`` = n_tokens / (bpe's n_tokens) when
    ``"bpe"`` was among the methods (else NaN); ``setting`` the parameter used (``"seed=0"``, ``"keep=0.5"``, ``""``);
    ``seconds`` the wall time of the encode call."""

    text: str
    method: str
    setting: str
    n_tokens: int
    n_bytes: int
    bytes_per_token: float
    vs_bpe: float
    seconds: float


def compare_encoders(tokenizer: Tokenizer, texts: Mapping[str, str], methods: Iterable[str] = METHODS, *,
                     seed: int = 0, keep: float | int = 0.5) -> list[EncoderRow]:
    """Token counts and bytes per token of every method on every text (rows text-major, methods in the order given).

    ``keep`` defaults to 0.5 here (half the merge list) so that ``"truncated"`` is not simply ``"bpe"``.

    >>> rows = compare_encoders(gpt2, {"prose": prose[:100_000]}, ("bpe", "optimal"))    # doctest: +SKIP
    >>> [(r.method, r.n_tokens, round(r.bytes_per_token, 3)) for r in rows]              # doctest: +SKIP
    [('bpe', 25135, 3.979), ('optimal', 25057, 3.991)]
    """
    methods = [_check_method(m) for m in methods]
    if not isinstance(texts, Mapping):
        raise ConfigurationError("texts must be a mapping name -> text, e.g. {'prose': text}.")
    rows = []
    for name, text in texts.items():
        n_bytes = len(_utf8(text))
        counts = {}
        measured = []
        for method in methods:
            start = time.perf_counter()
            n = len(encode_with(tokenizer, text, method, seed=seed, keep=keep))
            seconds = time.perf_counter() - start
            counts[method] = n
            setting = {"shuffled": f"seed={seed}", "truncated": f"keep={keep}"}.get(method, "")
            measured.append((method, setting, n, seconds))
        bpe = counts.get("bpe")
        for method, setting, n, seconds in measured:
            rows.append(EncoderRow(str(name), method, setting, n, n_bytes, n_bytes / n if n else float("nan"),
                                   n / bpe if bpe else float("nan"), seconds))
    return rows


def warm_up(tokenizer: Tokenizer | None = None) -> None:
    """Compile (or load from Numba's cache) the segmentation kernels; with a tokenizer, also build its tables."""
    if tokenizer is None:
        tokenizer = Tokenizer([bytes([b]) for b in range(256)] + [b"ab"], [(97, 98, 256)])
    for method in KERNEL_METHODS:
        encode_with(tokenizer, "warm up: ab abab", method)


# -- kernels -----------------------------------------------------------------------------------------------------------
@njit(cache=True)
def _matches(data, i, end, p_hash, p_off, p_len, p_tok, arena, max_len, lens, toks):
    """Every vocabulary token that starts at ``data[i]`` and ends by ``end``, shortest first, written to
    ``lens``/``toks``; returns how many. Hashes incrementally (the same hash as ``hash_bytes``)."""
    state = _FNV_OFFSET
    count = 0
    stop = min(end, i + max_len)
    for j in range(i, stop):
        state ^= np.uint64(data[j])
        state *= _FNV_PRIME
        length = j + 1 - i
        h = mix64(state ^ np.uint64(length)) | np.uint64(1)
        slot = bytes_slot(p_hash, p_off, p_len, arena, data, i, j + 1, h)
        if p_hash[slot] == 0:
            break  # no token has this prefix
        t = p_tok[slot]
        if t >= 0:
            lens[count] = length
            toks[count] = t
            count += 1
    return count


@njit(cache=True)
def _greedy_piece(data, s, e, byte_tok, p_hash, p_off, p_len, p_tok, arena, max_len, lens, toks, out, n_out):
    i = s
    while i < e:
        c = _matches(data, i, e, p_hash, p_off, p_len, p_tok, arena, max_len, lens, toks)
        if c == 0:  # cannot happen for a byte-level vocabulary (bytes are tokens); keep the kernel total anyway
            out[n_out] = byte_tok[data[i]]
            n_out += 1
            i += 1
            continue
        out[n_out] = toks[c - 1]
        n_out += 1
        i += lens[c - 1]
    return n_out


@njit(cache=True)
def _optimal_piece(data, s, e, byte_tok, p_hash, p_off, p_len, p_tok, arena, max_len, lens, toks,
                   best, pick_len, pick_tok, out, n_out):
    n = e - s
    best[n] = 0
    for r in range(n - 1, -1, -1):
        c = _matches(data, s + r, e, p_hash, p_off, p_len, p_tok, arena, max_len, lens, toks)
        b = n + 1
        bl = 1
        bt = byte_tok[data[s + r]]
        for q in range(c):  # shortest first, so "<=" keeps the longest of the equally good
            cand = 1 + best[r + lens[q]]
            if cand <= b:
                b = cand
                bl = lens[q]
                bt = toks[q]
        best[r] = b
        pick_len[r] = bl
        pick_tok[r] = bt
    r = 0
    while r < n:
        out[n_out] = pick_tok[r]
        n_out += 1
        r += pick_len[r]
    return n_out


@njit(cache=True)
def _grown(a, n):
    """``a`` copied into an array twice as long (its first ``n`` entries)."""
    b = np.empty(2 * a.shape[0], a.dtype)
    b[:n] = a[:n]
    return b


@njit(cache=True)
def _lbpe_piece(data, s, e, byte_tok, p_hash, p_off, p_len, p_tok, arena, rank, stride, max_len, lens, toks,
                tok_at, len_at, out, n_out):
    n = e - s
    # every occurrence of a token of >= 2 bytes, keyed by (longest, lowest rank, leftmost): keys are unique
    cap = 4 * n + 16
    keys = np.empty(cap, np.int64)
    o_start = np.empty(cap, np.int64)
    o_len = np.empty(cap, np.int64)
    o_tok = np.empty(cap, np.int64)
    n_occ = 0
    for r in range(n):
        c = _matches(data, s + r, e, p_hash, p_off, p_len, p_tok, arena, max_len, lens, toks)
        for q in range(c):
            if lens[q] >= 2:
                if n_occ == keys.shape[0]:
                    keys = _grown(keys, n_occ)
                    o_start = _grown(o_start, n_occ)
                    o_len = _grown(o_len, n_occ)
                    o_tok = _grown(o_tok, n_occ)
                keys[n_occ] = ((max_len - lens[q]) * stride + rank[toks[q]]) * n + r
                o_start[n_occ] = r
                o_len[n_occ] = lens[q]
                o_tok[n_occ] = toks[q]
                n_occ += 1
    for r in range(n):
        tok_at[r] = -1
        len_at[r] = 0  # 0: byte r is not covered yet
    if n_occ > 0:
        order = np.argsort(keys[:n_occ])
        for k in range(n_occ):
            o = order[k]
            r = o_start[o]
            length = o_len[o]
            free = True
            for j in range(r, r + length):
                if len_at[j] != 0:
                    free = False
                    break
            if free:
                tok_at[r] = o_tok[o]
                for j in range(r, r + length):
                    len_at[j] = -1
                len_at[r] = length
    r = 0
    while r < n:
        if tok_at[r] >= 0:
            out[n_out] = tok_at[r]
            r += len_at[r]
        else:
            out[n_out] = byte_tok[data[s + r]]
            r += 1
        n_out += 1
    return n_out


@njit(cache=True)
def segment_kernel(data, bounds, method, byte_tok, p_hash, p_off, p_len, p_tok, arena, rank, max_len,
                   c_hash, c_off, c_len, c_toff, c_tlen, c_bytes, c_toks, c_state):
    """Segment every piece ``data[bounds[i]:bounds[i+1]]`` (bytes without a token already removed); returns int32
    ids. ``method``: 0 greedy longest prefix, 1 fewest tokens, 2 LBPE (long-token-first). ``c_*``: a whole-piece
    cache (:func:`~workbench.tokenization.encoder.new_piece_cache`, one per method; mutated)."""
    out = np.empty(data.shape[0], np.int32)
    n_out = 0
    longest = 1
    for k in range(bounds.shape[0] - 1):
        longest = max(longest, bounds[k + 1] - bounds[k])
    lens = np.empty(max_len + 1, np.int64)
    toks = np.empty(max_len + 1, np.int64)
    best = np.empty(longest + 1, np.int64)
    pick_len = np.empty(longest + 1, np.int64)
    pick_tok = np.empty(longest + 1, np.int64)
    stride = rank.max() + 1 if rank.shape[0] else 1
    for k in range(bounds.shape[0] - 1):
        s = bounds[k]
        e = bounds[k + 1]
        n = e - s
        if n == 0:
            continue
        h = hash_bytes(data, s, e) | np.uint64(1)
        slot = bytes_slot(p_hash, p_off, p_len, arena, data, s, e, h)
        if p_hash[slot] != 0 and p_tok[slot] >= 0:  # the piece is a token: every method emits it whole
            out[n_out] = p_tok[slot]
            n_out += 1
            continue
        cacheable = n <= CACHE_MAX_PIECE
        if cacheable:
            found = cache_get(c_hash, c_off, c_len, c_toff, c_tlen, c_bytes, c_toks, data, s, e, h, out, n_out)
            if found >= 0:
                n_out = found
                continue
        first = n_out
        if method == 0:
            n_out = _greedy_piece(data, s, e, byte_tok, p_hash, p_off, p_len, p_tok, arena, max_len, lens, toks,
                                  out, n_out)
        elif method == 1:
            n_out = _optimal_piece(data, s, e, byte_tok, p_hash, p_off, p_len, p_tok, arena, max_len, lens, toks,
                                   best, pick_len, pick_tok, out, n_out)
        else:
            n_out = _lbpe_piece(data, s, e, byte_tok, p_hash, p_off, p_len, p_tok, arena, rank, stride,
                                max_len, lens, toks, pick_tok, pick_len, out, n_out)
        if cacheable:
            cache_put(c_hash, c_off, c_len, c_toff, c_tlen, c_bytes, c_toks, c_state, data, s, e, h, out, first,
                      n_out - first)
    return out[:n_out].copy()
