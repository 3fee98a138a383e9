"""An n-gram language model counted on a corpus, as a model-free drafter.

The corpus (a shipped one such as ``"code"`` or ``"prose_en"``, a local file or folder, or an array of token ids)
is tokenized with the project's own SmolLM2 tokenizer kernels (``workbench.tokenization``, identical ids to the
Hugging Face tokenizer on the shipped corpora), one document at a time so that no n-gram spans two files. For every
order ``o = 1 .. n`` the o-grams are sorted (``np.lexsort``) and counted by a Numba kernel
(:func:`~workbench.speculative.drafters.kernels.count_sorted_ngrams`) into a table of contexts, each with its next
tokens by count. Tables are kept in memory per (corpus, n, tokenizer) and, when counting took more than about two
seconds (loading the tokenizer usually does), saved under ``workbench.paths.cache_dir() / "speculative"``.

Prediction uses *stupid back-off* (Brants et al., 2007, "Large Language Models in Machine Translation"): the score
of token ``w`` after context ``c`` is ``count(c w) / count(c)`` at the longest order where ``c w`` was seen, times
``backoff`` (0.4) for every order backed off. ``expand`` returns the ``k`` best-scoring tokens with those scores as
probabilities (relative frequencies at the top order; not normalised across orders); ``propose`` is the greedy
chain of ``min(num_pred_tokens, budget)`` tokens, each with its score as ``draft_prob``. There is no official code
to follow: this is the classic back-off n-gram model used as a draft model.

>>> d = CorpusNgramDrafter(corpus=np.array([5, 6, 7, 5, 6, 8, 5, 6, 7]), n=3)
>>> d.expand(np.array([1, 5, 6]), [np.array([], np.int64)], k=2)[0][0].tolist()
[7, 8]
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.errors import SpeculativeError, WorkbenchError
from workbench.paths import cache_dir
from workbench.saving import atomic_path
from workbench.speculative.drafter import Drafter, check_budget, check_context, register_drafter
from workbench.speculative.drafters.kernels import (
    backoff_take,
    check_ids,
    check_paths,
    count_sorted_ngrams,
    find_context,
    unmark,
)
from workbench.speculative.tree import DraftTree

#: Bump when the saved table layout changes.
CACHE_FORMAT = "1"
DEFAULT_TOKENIZER = "smollm2"
SAVE_AFTER_S = 2.0
SEPARATOR = -1  # between documents in the id stream; no n-gram crosses it


@dataclass
class NgramTable:
    """Counted n-grams of orders ``1..n``: for order ``o``, ``contexts[o - 1]`` int64 [U, o - 1] (sorted), and the
    next tokens of context ``u``: ``next_tok[o - 1][ptr[o - 1][u]:ptr[o - 1][u + 1]]`` with ``counts`` (by count,
    descending); ``totals[o - 1][u]`` is the context's count."""

    n: int
    contexts: list[np.ndarray]
    ptr: list[np.ndarray]
    next_tok: list[np.ndarray]
    counts: list[np.ndarray]
    totals: list[np.ndarray]
    n_tokens: int
    _mark: np.ndarray | None = field(default=None, repr=False, compare=False)

    def lookup(self, context) -> dict[tuple[int, ...], int]:
        """``{(token,): count}`` after ``context`` (its last ``n - 1`` tokens or fewer; exact order, no back-off)."""
        ctx = np.asarray(context, np.int64)
        o = ctx.shape[0] + 1
        if o > self.n:
            raise SpeculativeError(f"a context of {ctx.shape[0]} tokens needs n >= {o}, the table has n={self.n}")
        u = find_context(self.contexts[o - 1], ctx)
        if u < 0:
            return {}
        lo, hi = int(self.ptr[o - 1][u]), int(self.ptr[o - 1][u + 1])
        return {int(t): int(c) for t, c in zip(self.next_tok[o - 1][lo:hi], self.counts[o - 1][lo:hi])}

    def ngram_counts(self, order: int) -> dict[tuple[int, ...], int]:
        """``{ngram: count}`` for one order (plain Python; for tests and small tables)."""
        o = order - 1
        out = {}
        for u in range(self.contexts[o].shape[0]):
            ctx = tuple(int(x) for x in self.contexts[o][u])
            for j in range(int(self.ptr[o][u]), int(self.ptr[o][u + 1])):
                out[ctx + (int(self.next_tok[o][j]),)] = int(self.counts[o][j])
        return out

    def top(self, seq: np.ndarray, k: int, backoff: float) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best next tokens after ``seq`` under stupid back-off: (tokens int64, scores float32); ties go
        to the higher order, then the larger count, then the smaller token id."""
        if self._mark is None:
            top_id = max((int(t.max()) for t in self.next_tok if t.size), default=0)
            self._mark = np.zeros(top_id + 1, np.uint8)  # tokens seen at a higher order in this query
        toks, scores, ranges = [], [], []
        try:
            for o in range(self.n, 0, -1):
                c = o - 1
                if seq.shape[0] < c:
                    continue
                u = find_context(self.contexts[o - 1], seq[seq.shape[0] - c:])
                if u < 0:
                    continue
                lo, hi = int(self.ptr[o - 1][u]), int(self.ptr[o - 1][u + 1])
                weight = backoff ** (self.n - o) / float(self.totals[o - 1][u])
                t, s = backoff_take(self.next_tok[o - 1], self.counts[o - 1], lo, hi, k, weight, self._mark, o > 1)
                if o > 1:
                    ranges.append((o - 1, lo, hi))
                toks.append(t)
                scores.append(s)
        finally:
            for o, lo, hi in ranges:
                unmark(self.next_tok[o], lo, hi, self._mark)
        if not toks:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        toks, vals = np.concatenate(toks), np.concatenate(scores)
        order = np.argsort(-vals, kind="stable")[:k]  # stable: ties keep (order, count, token) order
        return toks[order], vals[order].astype(np.float32)

    # -- (de)serialisation ----------------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"n": np.array(self.n), "n_tokens": np.array(self.n_tokens)}
        for o in range(self.n):
            out[f"contexts{o}"] = self.contexts[o]
            out[f"ptr{o}"] = self.ptr[o]
            out[f"next_tok{o}"] = self.next_tok[o]
            out[f"counts{o}"] = self.counts[o]
        return out

    @classmethod
    def from_arrays(cls, arrays) -> NgramTable:
        n = int(arrays["n"])
        ptr = [np.asarray(arrays[f"ptr{o}"]) for o in range(n)]
        counts = [np.asarray(arrays[f"counts{o}"]) for o in range(n)]
        return cls(n=n, contexts=[np.asarray(arrays[f"contexts{o}"]) for o in range(n)], ptr=ptr,
                   next_tok=[np.asarray(arrays[f"next_tok{o}"]) for o in range(n)], counts=counts,
                   totals=[_totals(p, c) for p, c in zip(ptr, counts)], n_tokens=int(arrays["n_tokens"]))


def _totals(ptr: np.ndarray, counts: np.ndarray) -> np.ndarray:
    csum = np.concatenate([[0], np.cumsum(counts)])
    return csum[ptr[1:]] - csum[ptr[:-1]]


def count_ngrams(ids, n: int) -> NgramTable:
    """Count every o-gram (``o = 1 .. n``) of ``ids`` int [T]; ``-1`` entries separate documents and no n-gram
    spans one. ``ids=[5, 6, 5, 6, 7], n=2``: bigram context ``(5,)`` -> ``{6: 2}``, ``(6,)`` -> ``{5: 1, 7: 1}``."""
    arr = np.ascontiguousarray(ids, dtype=np.int64)
    if arr.ndim != 1:
        raise SpeculativeError(f"ids must be a 1-D array, got shape {arr.shape}")
    contexts, ptrs, next_toks, counts = [], [], [], []
    for o in range(1, n + 1):
        if arr.shape[0] >= o:
            windows = np.lib.stride_tricks.sliding_window_view(arr, o)
            rows = windows[(windows >= 0).all(axis=1)]
        else:
            rows = np.zeros((0, o), np.int64)
        rows = np.ascontiguousarray(rows[np.lexsort(rows.T[::-1])]) if rows.shape[0] else rows.reshape(0, o)
        ctx, ptr, nt, ct = count_sorted_ngrams(rows)
        contexts.append(ctx)
        ptrs.append(ptr)
        next_toks.append(nt)
        counts.append(ct)
    return NgramTable(n=n, contexts=contexts, ptr=ptrs, next_tok=next_toks, counts=counts,
                      totals=[_totals(p, c) for p, c in zip(ptrs, counts)], n_tokens=int((arr >= 0).sum()))


# -- corpora -> ids -> tables (cached) ----------------------------------------------------------------------------
_TABLES: dict[str, NgramTable] = {}
_TOKENIZERS: dict[str, object] = {}


def _default_tokenizer():
    if DEFAULT_TOKENIZER not in _TOKENIZERS:
        from workbench.tokenization.io import load_tokenizer

        try:
            _TOKENIZERS[DEFAULT_TOKENIZER] = load_tokenizer(DEFAULT_TOKENIZER)
        except WorkbenchError as exc:
            raise SpeculativeError(f"corpus_ngram needs the SmolLM2 tokenizer: {exc}") from exc
    return _TOKENIZERS[DEFAULT_TOKENIZER]


def _corpus_documents(corpus) -> list[bytes]:
    from workbench.data import load_corpus

    try:
        docs = [doc.data for doc in load_corpus(corpus).documents()]
    except WorkbenchError as exc:
        raise SpeculativeError(f"corpus_ngram: {exc}") from exc
    if not docs:
        raise SpeculativeError(f"corpus {str(corpus)!r} holds no files")
    return docs


def tokenize_documents(docs: list[bytes], tokenizer) -> np.ndarray:
    """The documents' token ids, joined with ``-1`` separators."""
    from workbench.data.loaders import decode_text

    parts = []
    for data in docs:
        parts.append(np.asarray(tokenizer.encode(decode_text(data)[0]), np.int64))
        parts.append(np.array([SEPARATOR], np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _cache_path(key: str) -> Path:
    return cache_dir() / "speculative" / f"ngram-{key}.npz"


def _save(path: Path, table: NgramTable) -> None:
    """Atomic write (`workbench.saving.atomic_path`); a failure to write only costs the next recount."""
    try:
        with atomic_path(path, overwrite=True) as tmp, open(tmp, "wb") as handle:  # np.savez would add .npz to a name
            np.savez(handle, **table.to_arrays())
    except OSError:
        pass


def _load(path: Path) -> NgramTable | None:
    try:
        with np.load(path) as data:
            return NgramTable.from_arrays({k: data[k] for k in data.files})
    except (OSError, KeyError, ValueError):
        return None


def count_ngram_table(corpus, n: int, tokenizer=None) -> NgramTable:
    """The n-gram table of a corpus (name, path, or an int array of ids with ``-1`` document separators), from
    memory, from the disk cache, or counted now."""
    if isinstance(corpus, np.ndarray):
        ids = check_ids_or_separators(corpus)
        key = "ids-" + hashlib.sha256(ids.tobytes()).hexdigest()[:24] + f"-n{n}"
        if key not in _TABLES:
            _TABLES[key] = count_ngrams(ids, n)
        return _TABLES[key]
    docs = _corpus_documents(corpus)
    custom = tokenizer is not None
    h = hashlib.sha256(f"{CACHE_FORMAT}|{DEFAULT_TOKENIZER if not custom else id(tokenizer)}|{n}|".encode())
    for data in docs:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    key = h.hexdigest()[:24]
    if key in _TABLES:
        return _TABLES[key]
    path = _cache_path(key)
    table = None if custom or not path.is_file() else _load(path)
    if table is None or table.n != n:
        start = time.perf_counter()
        ids = tokenize_documents(docs, tokenizer if custom else _default_tokenizer())
        table = count_ngrams(ids, n)
        if not custom and time.perf_counter() - start > SAVE_AFTER_S:
            _save(path, table)
    _TABLES[key] = table
    return table


def check_ids_or_separators(ids) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise SpeculativeError(f"a corpus given as ids must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.size and int(arr.min()) < SEPARATOR:
        raise SpeculativeError(f"corpus ids must be >= 0 (or -1 between documents), got {int(arr.min())}")
    if not (arr >= 0).any():
        raise SpeculativeError("the corpus holds no tokens")
    return arr


@register_drafter("corpus_ngram")
class CorpusNgramDrafter(Drafter):
    """n-gram drafter counted on a corpus; see the module docstring.

    Parameters: ``corpus`` (``"code"``): a shipped corpus name, a local file/folder, or an int array of token ids;
    ``n`` (3): the order (contexts of up to ``n - 1`` tokens); ``backoff`` (0.4): stupid back-off's factor per order
    dropped; ``num_pred_tokens`` (5): length of the greedy chain ``propose`` drafts (also capped by the budget);
    ``tokenizer`` (None = the project's SmolLM2 tokenizer): anything with ``encode(text) -> list[int]``.
    The table is counted (or loaded) on first use, or by :meth:`warm`.
    """

    name = "corpus_ngram"

    def __init__(self, corpus="code", n: int = 3, backoff: float = 0.4, num_pred_tokens: int = 5, tokenizer=None):
        self.n = check_budget(n, "n")
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float, np.number)) or not 0 <= backoff <= 1:
            raise SpeculativeError(f"backoff must lie in [0, 1], got {backoff!r}")
        self.backoff = float(backoff)
        self.num_pred_tokens = check_budget(num_pred_tokens, "num_pred_tokens")
        if tokenizer is not None and not callable(getattr(tokenizer, "encode", None)):
            raise SpeculativeError("tokenizer must have an encode(text) -> list[int] method")
        self.tokenizer = tokenizer
        if isinstance(corpus, np.ndarray):
            check_ids_or_separators(corpus)
        elif isinstance(corpus, (str, os.PathLike)):
            _corpus_documents(corpus)  # fail now on an unknown name or a missing path
        else:
            raise SpeculativeError(f"corpus must be a corpus name, a path or an array of token ids, got {corpus!r}")
        self.corpus = corpus
        self._table: NgramTable | None = None

    def params(self) -> dict:
        return {"corpus": self.corpus, "n": self.n, "backoff": self.backoff,
                "num_pred_tokens": self.num_pred_tokens, "tokenizer": self.tokenizer}

    @property
    def table(self) -> NgramTable:
        if self._table is None:
            self._table = count_ngram_table(self.corpus, self.n, self.tokenizer)
        return self._table

    def warm(self) -> CorpusNgramDrafter:
        """Count (or load) the table now rather than on the first draft."""
        _ = self.table
        return self

    def propose(self, context_ids, budget: int) -> DraftTree:
        ctx = check_ids(check_context(context_ids))
        budget = check_budget(budget)
        table = self.table
        keep = self.n - 1
        seq = ctx[max(0, ctx.shape[0] - keep):].tolist()
        tokens, probs = [], []
        for _ in range(min(self.num_pred_tokens, budget)):
            tok, score = table.top(np.asarray(seq[max(0, len(seq) - keep):], np.int64), 1, self.backoff)
            if tok.size == 0:
                break
            tokens.append(int(tok[0]))
            probs.append(float(score[0]))
            seq.append(int(tok[0]))
        return DraftTree.chain(np.asarray(tokens, np.int64), np.asarray(probs, np.float32), drafter=self.name)

    def expand(self, context_ids, paths, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        ctx = check_ids(check_context(context_ids))
        k = check_budget(k, "k")
        table = self.table
        keep = self.n - 1
        out = []
        for path in check_paths(paths):
            seq = np.concatenate([ctx, path]) if path.size else ctx
            out.append(table.top(seq[max(0, seq.shape[0] - keep):], k, self.backoff))
        return out
