r"""BoundlessBPE (Schmidt et al., 2025, *Boundless Byte Pair Encoding: Breaking the Pre-tokenization Barrier*).

Pre-tokenization is kept, but two adjacent *complete* units may merge into a *superword* token: a unit is a
pre-token that ordinary merges have already turned into a single token, or a superword made by an earlier
supermerge (so superwords can grow to three or more pre-tokens, ``" of the" + " same"``). Supermerge candidates
(pairs of adjacent complete units) compete with ordinary merges (pairs inside pre-tokens) by frequency in one loop.

How it is trained (:mod:`workbench.tokenization.boundless_train`): the ordinary merges are plain BPE's, in plain
BPE's order, and the supermerges are interleaved by count (ties go to the ordinary merge); candidates are counted on
the corpus's sequence of pre-tokens. Every candidate is a bigram of adjacent units, counted once per occurrence.

Encoding mirrors training exactly: ordinary BPE per pre-token, then supermerges between adjacent complete units,
lowest rank first, where supermerge ``r`` joins two units only if both existed before step ``r`` (a pre-token
exists once the ordinary merge that completes it was made; a superword once its supermerge was). Documents are
never joined. A supermerge whose bytes are already a token reuses its id, as BPE does.

Choices the abstract leaves open: every complete pre-token may join, white space and punctuation included (so
``"\n" + "\n"`` can repair GPT-2's split of a blank line, and ``", and"`` is a superword); nothing is deleted from
the vocabulary afterwards. Measured on Pride and Prejudice (train on 500 KB, evaluate on the remaining 185 KB,
8k vocabulary): 5.49 bytes per token against plain BPE's 4.02 (27% fewer tokens), in 0.7 s of training.

>>> from workbench.data import load_corpus
>>> tok = train_boundless(load_corpus("prose_en").read_text()[:50000], 1000)
>>> [m.left + m.right for m in tok.merges if m.is_super][:6]
[b'\n\n', b'\n\n"', b', and', b'."\n\n"', b' Mr.', b'; and']
>>> [tok.id_to_token(i) for i in tok.encode("It was the best of times, and I am sure of it.")]
[b'It', b' was', b' the', b' b', b'est', b' of', b' tim', b'es', b', and', b' I am', b' sure', b' of', b' it', b'.']
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np

from workbench.errors import TokenizerError
from workbench.tokenization.boundless_train import (
    encode_pieces,
    replay_last,
    tokens_per_piece,
    train_boundless_merges,
)
from workbench.tokenization.bytelevel import BYTE_ORDER
from workbench.tokenization.pretokenize import check_pretokenizer, split_bytes
from workbench.tokenization.tokenizer import Tokenizer, _utf8
from workbench.tokenization.trainer import TrainingProgress

__all__ = ["BoundlessMerge", "BoundlessTokenizer", "train_boundless"]


class BoundlessMerge(NamedTuple):
    """One merge of a :class:`BoundlessTokenizer`, in order: ``left + right`` bytes; ``is_super`` for a supermerge
    (two complete units across a pre-token boundary), else an ordinary merge inside a pre-token."""

    left: bytes
    right: bytes
    is_super: bool


class BoundlessTokenizer:
    """A BoundlessBPE vocabulary: ordinary merges (a :class:`Tokenizer`, :attr:`base`) plus supermerges, in one order.

    ``tokens[i]``: bytes of token ``i`` (0..255 the bytes in GPT-2 order); ``merges``: ``(left, right, merged)`` ids
    in order; ``is_super[k]``: merge ``k`` is a supermerge. :attr:`base` holds every token and the ordinary merges
    only, so ``base.encode`` is the encoding before supermerges.

    >>> from workbench.tokenization.bytelevel import BYTE_RANK
    >>> a, b, space = (int(BYTE_RANK[c]) for c in b"ab ")
    >>> tokens = [bytes([c]) for c in BYTE_ORDER] + [b"ab", b" ab", b"ab ab"]
    >>> tok = BoundlessTokenizer(tokens, [(a, b, 256), (space, 256, 257), (256, 257, 258)], [False, False, True])
    >>> [tok.id_to_token(i) for i in tok.encode("ab ab ab")]
    [b'ab ab', b' ab']
    """

    def __init__(self, tokens: Sequence[bytes], merges: Iterable[tuple[int, int, int]], is_super: Iterable[bool], *,
                 pretokenizer: str = "gpt2", name: str = "boundless", merge_counts: np.ndarray | None = None):
        triples = np.array([tuple(m) for m in merges], dtype=np.int64).reshape(-1, 3)
        flags = np.array(list(is_super), dtype=bool)
        if len(flags) != len(triples):
            raise TokenizerError(f"is_super has {len(flags)} flags for {len(triples)} merges.")
        tokens = [bytes(t) for t in tokens]
        if len(tokens) < 256 or any(tokens[i] != bytes([b]) for i, b in enumerate(BYTE_ORDER)):
            raise TokenizerError("tokens must start with the 256 bytes in GPT-2 order (as train_bpe makes them).")
        if len(triples) and (triples.min() < 0 or triples.max() >= len(tokens)):
            raise TokenizerError("A merge refers to a token id outside the vocabulary.")
        for k, (a, b, new) in enumerate(triples.tolist()):
            if tokens[a] + tokens[b] != tokens[new]:
                kind = "a supermerge" if flags[k] else "ordinary"
                raise TokenizerError(f"Merge {k} is {kind} but makes {tokens[new]!r}, not {tokens[a] + tokens[b]!r}.")
        self.name = name
        self.pretokenizer = check_pretokenizer(pretokenizer)
        self.merge_counts = None if merge_counts is None else np.asarray(merge_counts, dtype=np.int64)
        self._tokens = tokens
        self._triples = triples
        self._is_super = flags
        ordinary = triples[~flags]
        self.base = Tokenizer(tokens, ordinary, pretokenizer=self.pretokenizer, semantics="merges", name=name)
        self._lengths = np.array([len(t) for t in tokens], np.int64)
        ranks = np.flatnonzero(~flags)
        self._ord_rank = ranks  # ordinary merge j is merge ranks[j] of the combined list
        # when a pre-token that encodes to one token becomes complete: the (combined) rank of its last merge
        self._born_of_token = np.full(len(tokens), -1, np.int64)
        creators: dict[int, list[int]] = {}
        for j, new in enumerate(ordinary[:, 2].tolist()):
            creators.setdefault(new, []).append(j)
        self._ambiguous = {t for t, js in creators.items() if len(js) > 1}  # made by two ordinary merges (rare)
        for t, js in creators.items():
            self._born_of_token[t] = ranks[js[0]]
        self._ordinary_pairs = {(a, b): (j, new) for j, (a, b, new) in enumerate(ordinary.tolist())}
        self._born_cache: dict[bytes, int] = {}
        self._super = {(a, b): (int(r), new) for r, (a, b, new) in zip(np.flatnonzero(flags).tolist(),
                                                                        triples[flags].tolist())}

    # -- the vocabulary --------------------------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        """Number of ids (the largest id + 1)."""
        return len(self._tokens)

    def __len__(self) -> int:
        return self.n_vocab

    def id_to_token(self, token_id: int) -> bytes:
        return self.base.id_to_token(token_id)

    @property
    def merge_triples(self) -> np.ndarray:
        """int64[n, 3]: every merge ``(left id, right id, merged id)`` in order, ordinary and super."""
        return self._triples

    @property
    def is_super(self) -> np.ndarray:
        """bool[n]: merge ``k`` of :attr:`merge_triples` is a supermerge."""
        return self._is_super

    @property
    def merges(self) -> list[BoundlessMerge]:
        """Every merge in order as :class:`BoundlessMerge` ``(left bytes, right bytes, is_super)``."""
        return [BoundlessMerge(self._tokens[a], self._tokens[b], bool(s))
                for (a, b, _), s in zip(self._triples.tolist(), self._is_super)]

    @property
    def supermerges(self) -> np.ndarray:
        """int64[n_super, 3]: the supermerges ``(left id, right id, merged id)`` in order."""
        return self._triples[self._is_super]

    @property
    def superword_ids(self) -> set[int]:
        """Ids made by supermerges (tokens that span two or more pre-tokens)."""
        return set(self.supermerges[:, 2].tolist())

    # -- encoding -------------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``: BPE inside each pre-token, then supermerges across them.

        >>> tok = train_boundless("one of the best. " * 40, 300)
        >>> [tok.id_to_token(i) for i in tok.encode("one of the best. one of them")]
        [b'one', b' of the best. one', b' of', b' the', b'm']
        """
        if not isinstance(text, str):
            raise TokenizerError(f"encode() takes a str, got {type(text).__name__}; use encode_bytes() for bytes.")
        return self.encode_bytes(_utf8(text))

    def encode_bytes(self, data: bytes) -> list[int]:
        """Token ids of raw bytes (may be invalid UTF-8)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TokenizerError(f"Expected bytes, got {type(data).__name__}.")
        arr = np.frombuffer(bytes(data), np.uint8)
        if arr.shape[0] == 0:
            return []
        bounds = split_bytes(arr, self.pretokenizer)
        ids = encode_pieces(self.base, arr, bounds)
        n_tok = tokens_per_piece(self._lengths, ids, bounds)
        first = np.concatenate([[0], np.cumsum(n_tok)[:-1]])
        ids_list = ids.tolist()
        single = (n_tok == 1).tolist()
        firsts = first.tolist()
        n = len(single)
        # units: one per piece; a complete piece (one token) can join supermerges, the others are barriers (-1)
        utok = [ids_list[f] if s else -1 for f, s in zip(firsts, single)]
        born = [self._born(arr, bounds, i, utok[i]) if utok[i] >= 0 else 0 for i in range(n)]
        merged = _apply_supermerges(utok, born, self._super)
        out: list[int] = []
        for i in range(n):
            if merged[i] is None:  # absorbed into the unit before it
                continue
            if merged[i] >= 0:
                out.append(merged[i])
            else:
                out.extend(ids_list[firsts[i]:firsts[i] + int(n_tok[i])])
        return out

    def _born(self, arr, bounds, i: int, token: int) -> int:
        """Combined rank of the ordinary merge that completes piece ``i`` (-1: a single byte, complete from the start)."""
        if token not in self._ambiguous:
            return int(self._born_of_token[token])
        piece = arr[bounds[i]:bounds[i + 1]].tobytes()
        if piece not in self._born_cache:
            self._born_cache[piece] = int(self._ord_rank[replay_last(piece, self._ordinary_pairs)])
        return self._born_cache[piece]

    # -- decoding -------------------------------------------------------------------------------------------------
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self.base.decode_bytes(ids)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Text of ``ids``; bytes that are not valid UTF-8 become U+FFFD (``errors="replace"``)."""
        return self.base.decode(ids, errors=errors)

    def __repr__(self) -> str:
        n_super = int(self._is_super.sum())
        return (f"BoundlessTokenizer({self.name!r}, n_vocab={self.n_vocab}, merges={len(self._triples) - n_super}, "
                f"supermerges={n_super}, pretokenizer={self.pretokenizer!r})")


def _apply_supermerges(utok: list[int], born: list[int], table: dict) -> list[int | None]:
    """Join adjacent complete units by supermerges, lowest rank first (leftmost first within a rank).

    ``utok[i]``: token of the unit starting at piece ``i`` (-1: not complete); ``born[i]``: rank at which it became
    complete. Supermerge ``r`` joins units ``(a, b)`` only if both were born before ``r``. Returns the final token of
    every unit start, -1 for barriers and None for pieces absorbed into the unit before them.
    ``utok=[5, 6, 7], born=[-1, -1, -1], table={(5, 6): (0, 8), (8, 7): (1, 9)} -> [9, None, None]``.
    """
    n = len(utok)
    utok = list(utok)
    born = list(born)
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    alive = [True] * n
    heap = []
    for i in range(n - 1):
        a, b = utok[i], utok[i + 1]
        if a >= 0 and b >= 0:
            hit = table.get((a, b))
            if hit is not None and hit[0] > born[i] and hit[0] > born[i + 1]:
                heap.append((hit[0], i))
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        j = nxt[i] if alive[i] else -1
        if j < 0:
            continue
        a, b = utok[i], utok[j]
        hit = table.get((a, b)) if a >= 0 and b >= 0 else None
        if hit is None or hit[0] != rank or born[i] >= rank or born[j] >= rank:
            continue
        utok[i], born[i] = hit[1], rank
        alive[j] = False
        nxt[i] = nxt[j]
        if nxt[i] >= 0:
            prv[nxt[i]] = i
        for left in (prv[i], i):
            right = nxt[left] if left >= 0 else -1
            if left < 0 or right < 0 or utok[left] < 0 or utok[right] < 0:
                continue
            hit = table.get((utok[left], utok[right]))
            if hit is not None and hit[0] > born[left] and hit[0] > born[right]:
                heapq.heappush(heap, (hit[0], left))
    return [utok[i] if alive[i] else None for i in range(n)]


# -- training (the merge loop is in boundless_train) ----------------------------------------------------------------
def train_boundless(
    corpus,
    vocab_size: int,
    *,
    pretokenizer: str = "gpt2",
    progress: Callable[[TrainingProgress], None] | None = None,
    show_progress: bool = False,
    name: str = "boundless",
) -> BoundlessTokenizer:
    """Train BoundlessBPE to ``vocab_size`` tokens (the 256 bytes included; superwords count like any token).

    ``corpus``: a str, bytes, a path (file or folder), or an iterable of these; each str/bytes item and each file is
    one document (supermerges never join across documents). Files are read whole: the pre-token sequence is kept
    in memory. ``progress`` receives :class:`TrainingProgress` (``"count"`` then ``"merge"`` with merges made of
    ``vocab_size - 256``); ``show_progress`` draws a tqdm bar. ``training_stats.extra`` has the numbers of ordinary
    merges and supermerges.

    >>> tok = train_boundless(["to be or not to be", "to be is to do"], 280)
    >>> [(m.left, m.right) for m in tok.merges if m.is_super][:2]
    [(b'to', b' be'), (b' to', b' be')]
    """
    tokens, triples, flags, counts, stats = train_boundless_merges(
        corpus, vocab_size, pretokenizer=pretokenizer, progress=progress, show_progress=show_progress, name=name)
    tok = BoundlessTokenizer(tokens, triples, flags, pretokenizer=pretokenizer, name=name, merge_counts=counts)
    tok.training_stats = stats
    return tok
