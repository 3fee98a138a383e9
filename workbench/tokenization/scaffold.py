"""Scaffold-BPE (Lian et al., 2024): find the *scaffold tokens* of a BPE vocabulary and encode without them.

BPE keeps every token it ever merged, so the vocabulary holds tokens that were frequent when they were merged but
were then mostly consumed to build longer tokens: ``"Eliz"`` is merged ~650 times on Pride and Prejudice, and every
one of those becomes ``"Elizabeth"``, so ``"Eliz"`` is almost never emitted on its own. These are *scaffold tokens*.

Counting on a corpus (:func:`token_usage`):

- ``formed[t]``: how many times BPE *built* ``t`` while encoding the corpus: every emitted token is counted with the
  whole tree of merges that made it (the merge-time count: on a tokenizer's own training corpus it equals the pair
  count the trainer saw when it made the merge, except for repeated-symbol pairs such as ``"--"`` whose counts
  overlap);
- ``final[t]``: how many times ``t`` is *emitted* in the final segmentation (its frequency of its own).

Criteria (:func:`find_scaffold_tokens`), over merged tokens (single bytes are never scaffold):

- ``"ratio"`` (default): ``formed >= min_count`` and ``final < ratio * formed``: the token survives in fewer than
  ``ratio`` of the times it is built.
- ``"paper"``: ``final < threshold``, where ``threshold`` is the frequency of the next token BPE would add (the
  paper's test against the head of the priority queue). For a tokenizer trained here, on its own training corpus,
  ``threshold=None`` uses its last merge's count and gives exactly the scaffold set Scaffold-BPE holds at that point.

Encoding without them (:class:`ScaffoldTokenizer`): BPE with the whole (expanded) vocabulary, then every scaffold token
in the output is *demolished* into the two tokens of the merge that made it, recursively, until none is left — the
paper's encoding. Output ids are the tokenizer's ids; scaffold ids never appear.

Training (:func:`train_scaffold_bpe`) as we read the paper: BPE merges as usual, but after each merge of ``(a, b)``,
``a`` and ``b`` become scaffold tokens if their own frequency drops below the count of the next pair to merge; they
stay in the expanded vocabulary (BPE still merges them) but not in the usable one. A scaffold token whose frequency
is at least the next pair's count is put back (the paper keeps scaffold tokens in the priority queue with their
frequency). Training continues until ``vocab_size`` usable tokens exist.

>>> sc = train_scaffold_bpe(text, vocab_size=8000)                    # doctest: +SKIP
>>> sc.n_usable, len(sc.scaffold_ids) > 0                              # doctest: +SKIP
(8000, True)
>>> sc.decode(sc.encode("Elizabeth")) == "Elizabeth"                   # doctest: +SKIP
True
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from workbench.errors import ConfigurationError, TokenizerError, TrainingError
from workbench.tokenization.explore import merge_index, token_label
from workbench.tokenization.tokenizer import Tokenizer, _utf8
from workbench.tokenization.trainer import _documents, _file_chunks, train_bpe

CRITERIA = ("ratio", "paper")


# -- counting ----------------------------------------------------------------------------------------------------------
def merge_parents(tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """``(left, right)``: int64[n_vocab] ids of the two tokens of the first merge (in ``tokenizer.merge_list``) that
    makes each token, -1 for tokens no merge makes (bytes, special tokens)."""
    made_by = merge_index(tokenizer)
    merges = tokenizer.merge_list
    left = np.full(tokenizer.n_vocab, -1, np.int64)
    right = np.full(tokenizer.n_vocab, -1, np.int64)
    has = made_by >= 0
    left[has] = merges[made_by[has], 0]
    right[has] = merges[made_by[has], 1]
    return left, right


@dataclass(frozen=True)
class TokenUsage:
    """How ``tokenizer`` uses each token on a corpus (int64[n_vocab] each): ``final`` = times emitted,
    ``formed`` = times built by a merge or emitted as a byte (``formed >= final``); ``n_bytes``, ``n_tokens``: the
    corpus' size in bytes and in tokens."""

    final: np.ndarray
    formed: np.ndarray
    n_bytes: int
    n_tokens: int


def formed_counts(final: np.ndarray, left: np.ndarray, right: np.ndarray, token_len: np.ndarray) -> np.ndarray:
    """Times each token is built, given the times each is emitted: every emitted token counts once for itself and
    once for each node of its merge tree. Parents are shorter than their token, so longest first is a valid order.

    >>> # tokens a, b, ab (= a + b), abb (= ab + b), emitted: abb x2, ab x1 -> formed ab 3, a 3, b 5   # doctest: +SKIP
    """
    formed = final.astype(np.int64).copy()
    has_parents = left >= 0
    lengths = np.where(token_len > 0, token_len, 0)
    for length in range(int(lengths.max(initial=0)), 1, -1):
        ids = np.flatnonzero((lengths == length) & has_parents)
        if len(ids):
            np.add.at(formed, left[ids], formed[ids])
            np.add.at(formed, right[ids], formed[ids])
    return formed


def _corpus_blocks(corpus, pretokenizer: str) -> Iterator[bytes]:
    """The corpus as byte blocks cut only where pieces end (the trainer's reader)."""
    for kind, item in _documents(corpus):
        if kind == "bytes":
            yield item
        else:
            yield from _file_chunks(item, pretokenizer)


def token_usage(tokenizer: Tokenizer, corpus) -> TokenUsage:
    """Count :class:`TokenUsage` by encoding ``corpus`` (a str, bytes, a path, or an iterable of these, as for
    :func:`~workbench.tokenization.train_bpe`) with ``tokenizer``'s merge-list BPE."""
    if not isinstance(tokenizer, Tokenizer):
        raise TokenizerError(f"Expected a Tokenizer, got {type(tokenizer).__name__}.")
    final = np.zeros(tokenizer.n_vocab, np.int64)
    n_bytes = 0
    for block in _corpus_blocks(corpus, tokenizer.pretokenizer):
        n_bytes += len(block)
        ids = tokenizer._encode_array(tokenizer._as_array(block))
        final += np.bincount(ids, minlength=tokenizer.n_vocab)
    left, right = merge_parents(tokenizer)
    return TokenUsage(final, formed_counts(final, left, right, tokenizer._tok_len), n_bytes, int(final.sum()))


# -- finding scaffold tokens -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScaffoldReport:
    """Scaffold tokens of a tokenizer on a corpus, most consumed (``formed - final``) first.

    ``ids``: int64[k]; ``tokens``: their bytes; ``formed`` / ``final``: int64[k] times built / emitted on the corpus
    (:class:`TokenUsage`); ``merge_counts``: int64[k] the pair count when the tokenizer's trainer made the merge
    (-1 where the tokenizer has no recorded counts, e.g. GPT-2). ``criterion``, ``ratio``, ``threshold``,
    ``min_count``: the test used (module docstring); ``n_merged``: merged tokens tested; ``n_bytes``/``n_tokens``:
    the corpus.
    """

    ids: np.ndarray
    tokens: list[bytes]
    formed: np.ndarray
    final: np.ndarray
    merge_counts: np.ndarray
    criterion: str
    ratio: float
    threshold: int | None
    min_count: int
    n_merged: int
    n_bytes: int
    n_tokens: int
    usage: TokenUsage | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def survival(self) -> np.ndarray:
        """float64[k]: ``final / formed``, the share of the times a token is built that it is emitted."""
        return self.final / np.maximum(self.formed, 1)

    def rows(self, limit: int | None = 20) -> list[dict]:
        """The first ``limit`` tokens as dicts (id, token text, formed, final, survival, merge_count) for tables."""
        n = len(self.ids) if limit is None else min(limit, len(self.ids))
        return [{"id": int(self.ids[i]), "token": token_label(self.tokens[i]), "formed": int(self.formed[i]),
                 "final": int(self.final[i]), "survival": float(self.survival[i]),
                 "merge_count": int(self.merge_counts[i])} for i in range(n)]


def find_scaffold_tokens(tokenizer: Tokenizer, corpus_text, *, criterion: str = "ratio", ratio: float = 0.1,
                         min_count: int | None = None, threshold: int | None = None) -> ScaffoldReport:
    """Scaffold tokens of ``tokenizer`` on ``corpus_text`` (a str, or anything :func:`token_usage` takes).

    ``criterion="ratio"``: merged tokens built at least ``min_count`` times (default 10) and emitted in fewer than
    ``ratio`` of those. ``criterion="paper"``: merged tokens built at least ``min_count`` times (default 1) and emitted
    fewer than ``threshold`` times; ``threshold=None`` takes the count of the tokenizer's last merge
    (``tokenizer.merge_counts[-1]``; only meaningful on the tokenizer's own training corpus).

    >>> report = find_scaffold_tokens(train_bpe(text, 8000), text)          # doctest: +SKIP
    >>> report.rows(2)                                                       # doctest: +SKIP
    [{'id': 256, 'token': 'he', 'formed': 14437, 'final': 65, ...}, {'id': 257, 'token': '␣t', 'formed': 14115, ...}]
    """
    if criterion not in CRITERIA:
        raise ConfigurationError(f"Unknown scaffold criterion {criterion!r}; choose one of {', '.join(CRITERIA)}.")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        raise ConfigurationError(f"ratio is a share of the times a token is built, in [0, 1]; got {ratio!r}.")
    if min_count is None:
        min_count = 10 if criterion == "ratio" else 1
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 0:
        raise ConfigurationError(f"min_count must be a non-negative integer, got {min_count!r}.")
    if criterion == "paper":
        if threshold is None:
            if tokenizer.merge_counts is None or len(tokenizer.merge_counts) == 0:
                raise ConfigurationError(
                    f"criterion='paper' needs threshold=..., or a tokenizer trained here (with merge counts); "
                    f"{tokenizer.name!r} has none. Use criterion='ratio' for a loaded tokenizer.")
            threshold = int(tokenizer.merge_counts[-1])
        if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < 0:
            raise ConfigurationError(f"threshold must be a non-negative integer, got {threshold!r}.")
        threshold = int(threshold)
    elif threshold is not None:
        raise ConfigurationError("threshold= is for criterion='paper'; criterion='ratio' uses ratio= and min_count=.")
    usage = token_usage(tokenizer, corpus_text)
    made_by = merge_index(tokenizer)
    merged = made_by >= 0
    candidate = merged & (usage.formed >= min_count)
    if criterion == "ratio":
        scaffold = candidate & (usage.final < ratio * usage.formed)
    else:
        scaffold = candidate & (usage.final < threshold)
    ids = np.flatnonzero(scaffold)
    ids = ids[np.argsort(-(usage.formed[ids] - usage.final[ids]), kind="stable")]
    if tokenizer.merge_counts is not None and len(tokenizer.merge_counts) == len(tokenizer.merge_list):
        counts = np.asarray(tokenizer.merge_counts, np.int64)[made_by[ids]]
    else:
        counts = np.full(len(ids), -1, np.int64)
    return ScaffoldReport(ids.astype(np.int64), [tokenizer.id_to_token(int(i)) for i in ids], usage.formed[ids],
                          usage.final[ids], counts, criterion, float(ratio), threshold, int(min_count),
                          int(merged.sum()), usage.n_bytes, usage.n_tokens, usage)


# -- encoding without scaffold tokens ----------------------------------------------------------------------------------
@njit(cache=True)
def demolish_kernel(ids, is_scaffold, left, right, token_len):
    """Replace every scaffold id in ``ids`` by the two ids of the merge that made it, recursively (left first).

    >>> # is_scaffold[300] with 300 = 258 + 116: [300, 5] -> [258, 116, 5]      # doctest: +SKIP
    """
    total = 0
    for i in range(ids.shape[0]):
        total += token_len[ids[i]] if is_scaffold[ids[i]] else 1
    out = np.empty(total, np.int64)
    stack = np.empty(max(2 * token_len.max(), 2), np.int64) if token_len.shape[0] else np.empty(2, np.int64)
    n = 0
    for i in range(ids.shape[0]):
        t = ids[i]
        if not is_scaffold[t]:
            out[n] = t
            n += 1
            continue
        top = 0
        stack[top] = t
        top += 1
        while top > 0:
            top -= 1
            x = stack[top]
            if is_scaffold[x]:
                stack[top] = right[x]
                stack[top + 1] = left[x]
                top += 2
            else:
                out[n] = x
                n += 1
    return out[:n]


@dataclass(frozen=True)
class ScaffoldTraining:
    """What :func:`train_scaffold_bpe` did: ``merges`` made (the expanded vocabulary), ``scaffold`` tokens at the end,
    ``readded`` times a scaffold token was put back, ``threshold`` the count of the next pair when training stopped,
    ``stopped_because``, and ``bpe_runs`` (plain BPE trainings run to look far enough ahead)."""

    merges: int
    scaffold: int
    readded: int
    threshold: int
    stopped_because: str
    bpe_runs: int


class ScaffoldTokenizer:
    """A BPE tokenizer whose scaffold tokens are never emitted (they are demolished into their merge parents).

    ``tokenizer``: the BPE tokenizer over the expanded vocabulary (it still merges through scaffold tokens);
    ``scaffold_ids``: int64 ids never emitted; ``usable_ids``: the others (ordinary and special), ``n_usable`` of them;
    ``report`` / ``training``: how the scaffold set was found. Ids are ``tokenizer``'s; ``compact_ids`` maps them to
    ``0..n_usable-1`` (e.g. for an embedding table without rows for scaffold tokens).

    >>> sc = ScaffoldTokenizer(tok, find_scaffold_tokens(tok, text).ids)      # doctest: +SKIP
    >>> sc.decode(sc.encode("Elizabeth"))                                      # doctest: +SKIP
    'Elizabeth'
    """

    def __init__(self, tokenizer: Tokenizer, scaffold_ids: Iterable[int], *, report: ScaffoldReport | None = None,
                 training: ScaffoldTraining | None = None):
        if not isinstance(tokenizer, Tokenizer):
            raise TokenizerError(f"Expected a Tokenizer, got {type(tokenizer).__name__}.")
        self.tokenizer = tokenizer
        try:
            ids = np.unique(np.asarray(list(scaffold_ids), dtype=np.int64).reshape(-1))
        except (TypeError, ValueError, OverflowError):
            raise TokenizerError("scaffold_ids must be integer token ids.") from None
        if len(ids) and (ids[0] < 0 or ids[-1] >= tokenizer.n_vocab):
            raise TokenizerError(f"Scaffold id {int(ids[0] if ids[0] < 0 else ids[-1])} is outside the vocabulary "
                                 f"(0..{tokenizer.n_vocab - 1}).")
        self.left, self.right = merge_parents(tokenizer)
        orphans = ids[self.left[ids] < 0]
        if len(orphans):
            raise TokenizerError(
                f"Token {int(orphans[0])} ({tokenizer.id_to_token(int(orphans[0]))!r}) cannot be a scaffold token: no "
                "merge makes it (a single byte or special token), so it cannot be demolished.")
        self.scaffold_ids = ids
        self.is_scaffold = np.zeros(tokenizer.n_vocab, np.bool_)
        self.is_scaffold[ids] = True
        self.report = report
        self.training = training
        used = tokenizer._tok_len >= 0
        self.usable_ids = np.flatnonzero(used & ~self.is_scaffold).astype(np.int64)
        self.compact_ids = np.full(tokenizer.n_vocab, -1, np.int64)
        self.compact_ids[self.usable_ids] = np.arange(len(self.usable_ids))

    @property
    def n_usable(self) -> int:
        """Ids the encoder can emit: every used id less the scaffold ids (special tokens included)."""
        return len(self.usable_ids)

    @property
    def n_vocab(self) -> int:
        return self.tokenizer.n_vocab

    def demolish(self, ids) -> np.ndarray:
        """``ids`` with every scaffold token replaced by its merge parents, recursively (int64)."""
        arr = self.tokenizer._check_ids(list(ids) if not isinstance(ids, np.ndarray) else ids)
        if not len(self.scaffold_ids) or not len(arr):
            return arr
        return demolish_kernel(arr, self.is_scaffold, self.left, self.right, np.maximum(self.tokenizer._tok_len, 0))

    def encode_bytes(self, data: bytes) -> list[int]:
        """Token ids of raw bytes: BPE over the expanded vocabulary, then scaffold tokens demolished."""
        ids = self.tokenizer._encode_array(self.tokenizer._as_array(data)).astype(np.int64)
        return self.demolish(ids).tolist()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special-token text is ordinary text); no scaffold id appears."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode() takes a str, got {type(text).__name__}; use encode_bytes() for bytes.")
        return self.encode_bytes(_utf8(text))

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        return self.tokenizer.decode(ids, errors=errors)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self.tokenizer.decode_bytes(ids)

    def id_to_token(self, token_id: int) -> bytes:
        return self.tokenizer.id_to_token(token_id)

    def __repr__(self) -> str:
        return (f"ScaffoldTokenizer({self.tokenizer.name!r}, n_vocab={self.n_vocab}, scaffold={len(self.scaffold_ids)}, "
                f"n_usable={self.n_usable})")


def scaffold_encode(tokenizer: Tokenizer, text: str, scaffold_ids: Iterable[int]) -> list[int]:
    """``text`` encoded by ``tokenizer`` with every token of ``scaffold_ids`` demolished into its merge parents.

    >>> scaffold_encode(tok, "Elizabeth", find_scaffold_tokens(tok, text).ids)     # doctest: +SKIP
    """
    return ScaffoldTokenizer(tokenizer, scaffold_ids).encode(text)


# -- training ----------------------------------------------------------------------------------------------------------
def _schedule(merges: np.ndarray, counts: np.ndarray, applied: np.ndarray, start_freq: np.ndarray, token_len: np.ndarray,
              n_known: int, target: int, exhausted: bool):
    """Replay Scaffold-BPE's bookkeeping over a plain BPE merge sequence.

    ``merges``: int64[n, 3]; ``counts[k]``: the pair count of merge k (its priority); ``applied[k]``: times merge k was
    applied; ``start_freq``: token frequencies before any merge; ``n_known``: tokens before any merge. Returns
    ``(n_merges, scaffold ids, readded, threshold)`` when ``target`` usable tokens are reached, else None. Without
    ``exhausted`` the merge after the last is unknown, so the last merge cannot be judged.
    """
    freq = start_freq.astype(np.int64).copy()
    scaffold = np.zeros(len(freq), np.bool_)
    n_scaffold = 0
    readded = 0
    created = np.zeros(len(freq), np.bool_)
    created[:n_known] = True
    n_tokens = n_known
    heap: list[tuple[int, int]] = []  # (-frequency, id) of scaffold tokens; stale entries are skipped
    n = len(merges)
    if n_tokens >= target:
        return 0, np.zeros(0, np.int64), 0, int(counts[0]) if n else 0
    for k in range(n if exhausted else n - 1):
        a, b, t = (int(x) for x in merges[k])
        c = int(applied[k])
        if not created[t]:
            created[t] = True
            n_tokens += 1
        freq[t] += c
        freq[a] -= c
        freq[b] -= c
        threshold = int(counts[k + 1]) if k + 1 < n else 0  # the head of the queue after this merge
        for x in {a, b, t}:
            if scaffold[x]:
                heapq.heappush(heap, (-int(freq[x]), x))
            elif x != t and token_len[x] >= 2 and freq[x] < threshold:
                scaffold[x] = True
                n_scaffold += 1
                heapq.heappush(heap, (-int(freq[x]), x))
        if n_tokens - n_scaffold >= target:
            return k + 1, np.flatnonzero(scaffold), readded, threshold
        while heap and -heap[0][0] >= threshold:  # scaffold tokens now at the head of the queue come back, one by one
            f, x = heapq.heappop(heap)
            if not scaffold[x] or -f != freq[x]:
                continue
            scaffold[x] = False
            n_scaffold -= 1
            readded += 1
            if n_tokens - n_scaffold >= target:
                return k + 1, np.flatnonzero(scaffold), readded, threshold
    if exhausted:
        return n, np.flatnonzero(scaffold), readded, 0
    return None


def train_scaffold_bpe(corpus, vocab_size: int, *, pretokenizer: str = "gpt2", special_tokens: Iterable[str] = (),
                       name: str = "scaffold-bpe", show_progress: bool = False,
                       lookahead: int | None = None) -> ScaffoldTokenizer:
    """Train Scaffold-BPE: ``vocab_size`` *usable* tokens (256 bytes + non-scaffold merged tokens + special tokens),
    plus the scaffold tokens BPE needed on the way.

    Scaffold-BPE's merges are plain BPE's (scaffold tokens still pair up), only the stopping point and the scaffold
    set differ, so this runs :func:`~workbench.tokenization.train_bpe` far enough ahead, counts how many times each
    merge applied on the corpus (:func:`token_usage`), and replays the scaffold bookkeeping (module docstring) until
    ``vocab_size`` usable tokens exist. A merge that re-makes an existing token (rare) is credited to the first merge
    that made it.

    ``lookahead``: how many tokens beyond ``vocab_size`` the first plain BPE run trains (default: a quarter of
    ``vocab_size``, at least 256); doubled and rerun while too few.

    Returns a :class:`ScaffoldTokenizer` whose ``tokenizer`` holds the expanded vocabulary (ids: bytes, merged tokens
    in merge order, special tokens) and whose ``training`` says what happened.
    """
    specials = list(dict.fromkeys(special_tokens))
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
        raise TrainingError(f"vocab_size must be an integer, got {vocab_size!r}.")
    target = int(vocab_size) - len(specials)
    if target < 256:
        raise TrainingError(f"vocab_size={vocab_size} is smaller than the alphabet: 256 byte tokens"
                            f"{f' + {len(specials)} special tokens' if specials else ''}.")
    if isinstance(corpus, Iterator):
        corpus = list(corpus)  # read more than once
    if lookahead is not None and (isinstance(lookahead, bool) or not isinstance(lookahead, (int, np.integer))
                                  or lookahead < 1):
        raise TrainingError(f"lookahead must be a positive integer, got {lookahead!r}.")
    extra = max(256, target // 4) if lookahead is None else int(lookahead)
    runs = 0
    while True:
        runs += 1
        big = train_bpe(corpus, target + extra, pretokenizer=pretokenizer, name=name, show_progress=show_progress)
        merges = big.merge_triples
        exhausted = big.training_stats.stopped_because != "vocab_size reached"
        usage = token_usage(big, corpus)
        made_by = merge_index(big)
        applied = np.zeros(len(merges), np.int64)
        first = made_by[merges[:, 2]] == np.arange(len(merges))
        applied[first] = usage.formed[merges[first, 2]]
        start_freq = np.zeros(big.n_vocab, np.int64)
        start_freq[:256] = usage.formed[:256]  # bytes are only ever "built" as themselves
        found = _schedule(merges, big.merge_counts, applied, start_freq, big._tok_len, 256, target, exhausted)
        if found is not None:
            break
        extra *= 2
    n_merges, scaffold, readded, threshold = found
    kept = merges[:n_merges]
    n_ordinary = int(kept[:, 2].max()) + 1 if n_merges else 256
    tokens = [big.id_to_token(i) for i in range(n_ordinary)] + [s.encode("utf-8") for s in specials]
    tok = Tokenizer(tokens, kept, pretokenizer=pretokenizer, semantics="merges",
                    special_tokens={s: n_ordinary + i for i, s in enumerate(specials)}, name=name,
                    merge_counts=big.merge_counts[:n_merges])
    tok.training_stats = big.training_stats
    n_usable = n_ordinary - len(scaffold)
    stopped = ("vocab_size reached" if n_usable >= target
               else f"{big.training_stats.stopped_because} before vocab_size usable tokens")
    training = ScaffoldTraining(n_merges, len(scaffold), readded, threshold, stopped, runs)
    return ScaffoldTokenizer(tok, scaffold, training=training)
