"""BoundlessBPE training: the merge list behind :func:`workbench.tokenization.boundless.train_boundless`.

A complete pre-token has no pair left inside it, so supermerges never change ordinary pair
counts: the ordinary merges come out in exactly plain BPE's order with plain BPE's counts. They are taken from
:func:`~workbench.tokenization.trainer.train_bpe` (Numba, merge-identical to Hugging Face), and the supermerges are
interleaved: at each step the next ordinary merge is taken when its count is at least the best supermerge
candidate's (ties go to the ordinary merge; equal supermerge candidates to the smaller ``(left id, right id)``).
Candidates are counted on the corpus's sequence of pre-tokens (a doubly linked list of units, one entry per
pre-token occurrence); when an ordinary merge completes a word, each occurrence of it pairs up with its complete
neighbours, and a supermerge updates only the pairs around the occurrences it joins (lazy max-heap, as the BPE
trainer). Every candidate is a bigram of adjacent units, counted once per occurrence.

:func:`train_boundless_merges` returns the vocabulary, the merges in order and which of them are supermerges;
:mod:`workbench.tokenization.boundless` wraps them in a :class:`~workbench.tokenization.boundless.BoundlessTokenizer`
(that module imports this one, so nothing here imports it back). The plain-BPE helpers at the end (encode given
pieces, tokens per piece, replay a word's merges) serve the encoder there too.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

import numpy as np

from workbench.data.loaders import corpus_items
from workbench.errors import CorpusError, TrainingError
from workbench.tokenization import encoder as K
from workbench.tokenization.bytelevel import BYTE_ORDER, BYTE_RANK
from workbench.tokenization.pretokenize import check_pretokenizer, split_bytes
from workbench.tokenization.tokenizer import Tokenizer
from workbench.tokenization.trainer import TrainingProgress, TrainingStats, train_bpe

PROGRESS_EVERY = 256


def train_boundless_merges(
    corpus,
    vocab_size: int,
    *,
    pretokenizer: str = "gpt2",
    progress: Callable[[TrainingProgress], None] | None = None,
    show_progress: bool = False,
    name: str = "boundless",
) -> tuple[list[bytes], list[tuple[int, int, int]], list[bool], np.ndarray, TrainingStats]:
    """The training of :func:`~workbench.tokenization.boundless.train_boundless` (same arguments, same checks):
    ``(tokens, merges, is_super, merge_counts, stats)``, the arguments of
    :class:`~workbench.tokenization.boundless.BoundlessTokenizer` and its ``training_stats``.
    """
    pretokenizer = check_pretokenizer(pretokenizer)
    if not isinstance(vocab_size, (int, np.integer)) or isinstance(vocab_size, bool):
        raise TrainingError(f"vocab_size must be an integer, got {vocab_size!r}.")
    if vocab_size < 256:
        raise TrainingError(f"vocab_size={vocab_size} is smaller than the alphabet: 256 byte tokens.")
    stats = TrainingStats()
    start = time.perf_counter()
    docs = _read_documents(corpus)
    stats.documents = len(docs)
    stats.corpus_bytes = sum(len(d) for d in docs)
    if stats.corpus_bytes == 0:
        raise TrainingError("The corpus is empty: every document has zero bytes.")

    # 1. the pre-token sequence: word id of every piece, documents one after another
    word_of: dict[bytes, int] = {}
    seq: list[int] = []
    doc_starts: list[int] = []
    for doc in docs:
        doc_starts.append(len(seq))
        bounds = split_bytes(doc, pretokenizer).tolist()
        seq.extend(word_of.setdefault(doc[a:b], len(word_of)) for a, b in zip(bounds[:-1], bounds[1:]))
    words = list(word_of)
    stats.pieces, stats.unique_words = len(seq), len(words)
    if progress is not None:
        progress(TrainingProgress(stats.corpus_bytes, stats.corpus_bytes, "count", time.perf_counter() - start))

    # 2. the ordinary merges: plain BPE's, in plain BPE's order, with their counts
    ordinary = train_bpe(docs, vocab_size, pretokenizer=pretokenizer, name=f"{name}-ordinary")
    stats.seconds_count = time.perf_counter() - start
    start = time.perf_counter()

    # 3. when each word becomes one token (index among ordinary merges; -1: a single byte)
    completes, final = _completion_steps(ordinary, words)
    by_step: dict[int, list[int]] = {}
    for w, k in enumerate(completes):
        if k is not None:
            by_step.setdefault(k, []).append(w)
    occurrences: dict[int, list[int]] = {}
    for p, w in enumerate(seq):
        occurrences.setdefault(w, []).append(p)

    loop = _SuperLoop(seq, doc_starts, vocab_size)
    result = loop.run(ordinary, final, by_step, occurrences, progress, show_progress, start)
    tokens, triples, flags, counts, stopped = result
    stats.merges = len(triples)
    stats.seconds_merge = time.perf_counter() - start
    stats.stopped_because = stopped
    n_super = int(sum(flags))
    stats.extra.update(ordinary_merges=len(triples) - n_super, supermerges=n_super,
                       tokens_after_training=loop.final_token_count(ordinary, words, len(triples) - n_super))
    return tokens, triples, flags, counts, stats


class _SuperLoop:
    """The merge loop: ordinary merges from plain BPE interleaved with supermerges counted on the pre-token list."""

    def __init__(self, seq: list[int], doc_starts: list[int], vocab_size: int):
        n = len(seq)
        self.seq = seq
        self.vocab_size = vocab_size
        self.tok = [-1] * n  # token of the unit starting at each position, -1 while not complete
        self.alive = [True] * n
        self.nxt = list(range(1, n + 1))
        self.prv = list(range(-1, n - 1))
        for s in doc_starts:  # documents do not touch
            if s > 0:
                self.nxt[s - 1] = -1
            if s < n:
                self.prv[s] = -1
        if n:
            self.nxt[n - 1] = -1
        self.key = max(vocab_size, 256) + 1
        self.count: dict[int, int] = {}
        self.where: dict[int, list[int]] = {}
        self.done: set[int] = set()  # pairs already supermerged: later occurrences are not candidates
        self.dirty: set[int] = set()
        self.heap: list[tuple[int, int, int]] = []

    # candidate bookkeeping
    def _add(self, a: int, b: int, pos: int) -> None:
        key = a * self.key + b
        if key in self.done:
            return
        self.count[key] = self.count.get(key, 0) + 1
        self.where.setdefault(key, []).append(pos)
        self.dirty.add(key)

    def _sub(self, a: int, b: int) -> None:
        key = a * self.key + b
        if key not in self.done:
            self.count[key] -= 1

    def _flush(self) -> None:
        for key in self.dirty:
            c = self.count.get(key, 0)
            if c > 0:
                heapq.heappush(self.heap, (-c, key // self.key, key % self.key))
        self.dirty.clear()

    def _best(self):
        """(count, left, right) of the best supermerge candidate, or None (lazy heap: stale entries are fixed here)."""
        heap = self.heap
        while heap:
            neg, a, b = heap[0]
            key = a * self.key + b
            c = self.count.get(key, 0)
            if c <= 0 or key in self.done:
                heapq.heappop(heap)
            elif c != -neg:
                heapq.heapreplace(heap, (-c, a, b))
            else:
                return c, a, b
        return None

    def _complete(self, positions: list[int], t: int) -> None:
        """Occurrences of a word that just became token ``t``: pair them with their complete neighbours."""
        tok, prv, nxt = self.tok, self.prv, self.nxt
        for p in positions:
            tok[p] = t
            left, right = prv[p], nxt[p]
            if left >= 0 and tok[left] >= 0:
                self._add(tok[left], t, left)
            if right >= 0 and tok[right] >= 0:
                self._add(t, tok[right], p)

    def _supermerge(self, a: int, b: int, new: int) -> int:
        """Join every occurrence of complete units ``(a, b)``, left to right; returns how many were joined."""
        key = a * self.key + b
        positions = sorted(set(self.where.pop(key, ())))
        self.done.add(key)
        self.count.pop(key, None)
        tok, prv, nxt, alive = self.tok, self.prv, self.nxt, self.alive
        made = 0
        for p in positions:
            if not alive[p] or tok[p] != a:
                continue
            q = nxt[p]
            if q < 0 or tok[q] != b:
                continue
            left, right = prv[p], nxt[q]
            tl = tok[left] if left >= 0 else -1
            tr = tok[right] if right >= 0 else -1
            if tl >= 0:
                self._sub(tl, a)
            if tr >= 0:
                self._sub(b, tr)
            tok[p] = new
            alive[q] = False
            nxt[p] = right
            if right >= 0:
                prv[right] = p
            if tl >= 0:
                self._add(tl, new, left)
            if tr >= 0:
                self._add(new, tr, p)
            made += 1
        return made

    def run(self, ordinary: Tokenizer, final: list[int], by_step: dict[int, list[int]],
            occurrences: dict[int, list[int]], progress, show_progress: bool, start: float):
        """Merge until ``vocab_size``. ``final[w]``: plain BPE id of word ``w``'s single token; ``by_step[k]``: words
        that become one token at ordinary merge ``k`` (-1: from the start); ``occurrences[w]``: their positions."""
        tokens: list[bytes] = [bytes([b]) for b in BYTE_ORDER]
        index = {t: i for i, t in enumerate(tokens)}
        cid = list(range(256)) + [-1] * (ordinary.n_vocab - 256)  # plain BPE id -> id here
        o_triples = ordinary.merge_triples.tolist()
        o_counts = ordinary.merge_counts.tolist()
        triples: list[tuple[int, int, int]] = []
        flags: list[bool] = []
        counts: list[int] = []
        total = self.vocab_size - 256
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="merge", desc="merging (boundless)")
        for w in by_step.get(-1, ()):  # single-byte words are complete from the start
            self._complete(occurrences[w], cid[final[w]])
        self._flush()
        k = 0
        stopped = "vocab_size reached"
        while len(tokens) < self.vocab_size:
            best = self._best()
            c_ord = o_counts[k] if k < len(o_triples) else 0
            if c_ord <= 0 and best is None:
                stopped = "no pairs left (every pre-token and superword run is a single token)"
                break
            if best is None or c_ord >= best[0]:
                a_o, b_o, new_o = o_triples[k]
                a, b = cid[a_o], cid[b_o]
                if cid[new_o] < 0:
                    cid[new_o] = _token_id(tokens, index, tokens[a] + tokens[b])
                triples.append((a, b, cid[new_o]))
                flags.append(False)
                counts.append(c_ord)
                for w in by_step.get(k, ()):
                    self._complete(occurrences[w], cid[final[w]])
                k += 1
            else:
                c, a, b = best
                new = _token_id(tokens, index, tokens[a] + tokens[b])
                self._supermerge(a, b, new)  # joins up to c occurrences (fewer when they overlap: x x x)
                triples.append((a, b, new))
                flags.append(True)
                counts.append(c)
            self._flush()
            done = len(tokens) - 256
            if bar is not None and done > bar.n:
                bar.update(done - bar.n)
            if progress is not None and len(triples) % PROGRESS_EVERY == 0:
                progress(TrainingProgress(done, total, "merge", time.perf_counter() - start))
        if bar is not None:
            bar.close()
        if progress is not None:
            progress(TrainingProgress(len(tokens) - 256, total, "merge", time.perf_counter() - start))
        return tokens, triples, flags, np.array(counts, np.int64), stopped

    def final_token_count(self, ordinary: Tokenizer, words: list[bytes], n_ordinary: int) -> int:
        """Tokens in the training corpus at the end: complete units, plus the tokens of every unfinished pre-token
        (encoded with the ordinary merges that were taken)."""
        n = sum(1 for p, t in enumerate(self.tok) if self.alive[p] and t >= 0)
        unfinished: dict[int, int] = {}
        for p, t in enumerate(self.tok):
            if t < 0:
                w = self.seq[p]
                unfinished[w] = unfinished.get(w, 0) + 1
        if unfinished:
            ids = list(unfinished)
            lengths = _encoded_lengths(ordinary, [words[w] for w in ids], max_merges=n_ordinary)
            n += sum(unfinished[w] * m for w, m in zip(ids, lengths))
        return n


def _token_id(tokens: list[bytes], index: dict[bytes, int], piece: bytes) -> int:
    """Id of token ``piece``, appending it when new (a merge that makes existing bytes reuses their id, as HF)."""
    i = index.get(piece)
    if i is None:
        i = index[piece] = len(tokens)
        tokens.append(piece)
    return i


def _completion_steps(ordinary: Tokenizer, words: list[bytes]) -> tuple[list[int | None], list[int]]:
    """For each word: the index of the ordinary merge after which it is one token (-1: a single byte; None: never),
    and that token (plain BPE id; -1 if none)."""
    if not words:
        return [], []
    arena = np.frombuffer(b"".join(words), np.uint8)
    bounds = np.zeros(len(words) + 1, np.int64)
    bounds[1:] = np.cumsum([len(w) for w in words])
    ids = encode_pieces(ordinary, arena, bounds)
    lengths = np.array([len(ordinary.id_to_token(i)) for i in range(ordinary.n_vocab)], np.int64)
    n_tok = tokens_per_piece(lengths, ids, bounds)
    first = np.concatenate([[0], np.cumsum(n_tok)[:-1]])
    triples = ordinary.merge_triples
    creators: dict[int, list[int]] = {}
    for j, new in enumerate(triples[:, 2].tolist()):
        creators.setdefault(new, []).append(j)
    pairs = {(a, b): (j, new) for j, (a, b, new) in enumerate(triples.tolist())}
    final: list[int] = [-1] * len(words)
    out: list[int | None] = [None] * len(words)
    for w, (m, f) in enumerate(zip(n_tok.tolist(), first.tolist())):
        if m != 1:
            continue
        t = int(ids[f])
        final[w] = t
        if t < 256:
            out[w] = -1
        elif len(creators[t]) == 1:
            out[w] = creators[t][0]
        else:  # two merges make these bytes: replay the word to see which one finished it
            out[w] = replay_last(words[w], pairs)
    return out, final


def _encoded_lengths(tok: Tokenizer, words: list[bytes], max_merges: int) -> list[int]:
    arena = np.frombuffer(b"".join(words), np.uint8)
    bounds = np.zeros(len(words) + 1, np.int64)
    bounds[1:] = np.cumsum([len(w) for w in words])
    ids = encode_pieces(tok, arena, bounds, max_merges)
    lengths = np.array([len(tok.id_to_token(i)) for i in range(tok.n_vocab)], np.int64)
    return tokens_per_piece(lengths, ids, bounds).tolist()


def _read_documents(corpus) -> list[bytes]:
    """Every document of ``corpus`` as bytes (`workbench.data.corpus_items`' rule; files read whole)."""
    docs: list[bytes] = []
    for kind, item in corpus_items(corpus, error=TrainingError):
        if kind == "bytes":
            docs.append(item)
            continue
        try:
            docs.append(item.read_bytes())
        except OSError as exc:
            raise CorpusError(f"Cannot read corpus file {str(item)!r}: {exc.strerror or exc}.") from exc
    return docs


# -- plain BPE on given pieces (the encoder in boundless.py uses these too) -----------------------------------------
def replay_last(piece: bytes, pairs: dict) -> int:
    """Index of the last merge BPE (merge semantics) applies to ``piece``."""
    parts = [int(BYTE_RANK[b]) for b in piece]
    last = -1
    while len(parts) > 1:
        best = None
        for i in range(len(parts) - 1):
            hit = pairs.get((parts[i], parts[i + 1]))
            if hit is not None and (best is None or hit[0] < best[0][0]):
                best = (hit, i)
        if best is None:
            break
        (last, new), i = best
        parts[i:i + 2] = [new]
    return last


def encode_pieces(tok: Tokenizer, data: np.ndarray, bounds: np.ndarray, max_merges: int | None = None) -> np.ndarray:
    """Token ids of every piece ``data[bounds[i]:bounds[i+1]]`` (pieces given, not re-split)."""
    if max_merges is None:
        keys, prio, merged, cache = tok._mt_keys, tok._mt_prio, tok._mt_merged, tok._cache
    else:
        (keys, prio, merged), cache = tok._truncated_table(max_merges), K.new_piece_cache(1 << 12, 1 << 16)
    return K.encode_kernel(data, bounds, tok._byte_tok, keys, prio, merged, False, tok._v_hash, tok._v_off,
                           tok._v_len, tok._v_val, tok._arena, *cache)


def tokens_per_piece(lengths: np.ndarray, ids: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """How many of ``ids`` fall in each piece (tokens never cross piece bounds)."""
    ends = np.cumsum(lengths[ids])
    return np.diff(np.concatenate([[0], np.searchsorted(ends, bounds[1:], side="right")]))
