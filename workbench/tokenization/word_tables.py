"""Counted words: `WordCounter` (unique pre-tokenized words and their counts, in growable flat arrays filled by
Numba) and `WordTable` (the same, compact: what a Dask worker sends back instead of the text it counted).

>>> import numpy as np
>>> c = WordCounter(); data = np.frombuffer(b"ab ab c", np.uint8)
>>> c.add(data, np.array([0, 2, 5, 7])); c.n_words, c.table().counts.tolist()
(3, [1, 1, 1])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.tokenization import trainer_kernels as TK


class WordCounter:
    """Unique pre-tokenized words and their counts, in growable flat arrays."""

    def __init__(self):
        self.w_hash = np.zeros(1 << 16, np.uint64)
        self.w_slot = np.zeros(1 << 16, np.int64)
        self.w_off = np.zeros(1 << 15, np.int64)
        self.w_len = np.zeros(1 << 15, np.int64)
        self.w_count = np.zeros(1 << 15, np.int64)
        self.arena = np.zeros(1 << 20, np.uint8)
        self.st = np.zeros(2, np.int64)
        self.pieces = 0

    def add(self, data: np.ndarray, bounds: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Count the pieces ``data[bounds[k]:bounds[k + 1]]``, each once or ``weights[k]`` times."""
        weighted = weights is not None
        w = np.ascontiguousarray(weights, dtype=np.int64) if weighted else np.ones(1, np.int64)
        self.pieces += int(w.sum()) if weighted else len(bounds) - 1
        k = 0
        while True:
            k = TK.add_words(data, bounds, w, weighted, k, self.w_hash, self.w_slot, self.w_off, self.w_len,
                             self.w_count, self.arena, self.st)
            if k == len(bounds) - 1:
                return
            n_words, used = int(self.st[0]), int(self.st[1])
            if n_words >= len(self.w_off):
                size = 2 * len(self.w_off)
                for name in ("w_off", "w_len", "w_count"):
                    old = getattr(self, name)
                    new = np.zeros(size, np.int64)
                    new[:n_words] = old[:n_words]
                    setattr(self, name, new)
            if 2 * (n_words + 1) > len(self.w_hash):
                self.w_hash, self.w_slot = TK.rehash_words(self.w_off, self.w_len, self.arena, n_words,
                                                           2 * len(self.w_hash))
            piece = int(bounds[k + 1] - bounds[k])
            if used + piece > len(self.arena):
                new = np.zeros(max(2 * len(self.arena), used + piece), np.uint8)
                new[:used] = self.arena[:used]
                self.arena = new

    @property
    def n_words(self) -> int:
        return int(self.st[0])

    def table(self) -> WordTable:
        """The counted words as a compact `WordTable` (copies)."""
        n, used = self.n_words, int(self.st[1])
        return WordTable(self.arena[:used].copy(), self.w_len[:n].copy(), self.w_count[:n].copy(), self.pieces)

    def add_table(self, table: WordTable) -> None:
        """Add another counter's words with their counts."""
        if len(table.lengths):
            bounds = np.zeros(len(table.lengths) + 1, np.int64)
            np.cumsum(table.lengths, out=bounds[1:])
            pieces = self.pieces
            self.add(table.arena, bounds, table.counts)
            self.pieces = pieces + table.pieces


@dataclass
class WordTable:
    """Unique words and their counts, compact: the words laid end to end in ``arena`` (uint8), their ``lengths`` and
    ``counts`` (int64 [n_words]), how many ``pieces`` (occurrences) they stand for and how many ``bytes_counted``
    of text. What a Dask worker sends back instead of the text it counted."""

    arena: np.ndarray
    lengths: np.ndarray
    counts: np.ndarray
    pieces: int = 0
    bytes_counted: int = 0

    @property
    def nbytes(self) -> int:
        return int(self.arena.nbytes + self.lengths.nbytes + self.counts.nbytes)
