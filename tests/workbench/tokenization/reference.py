"""Tiny, readable reference implementations the Numba kernels are checked against."""

from __future__ import annotations

from collections import Counter

from workbench.tokenization.bytelevel import BYTE_ORDER, BYTE_RANK


def reference_train(pieces: list[bytes], vocab_size: int) -> list[tuple[bytes, bytes]]:
    """Byte-level BPE training, the slow obvious way: recount every pair each step, merge the most frequent one
    (ties: the smaller pair in HF's ids = bytes in byte-level-alphabet order, then merges by age)."""
    tokens = [bytes([b]) for b in BYTE_ORDER]
    index = {t: i for i, t in enumerate(tokens)}
    words = Counter(tuple(int(BYTE_RANK[b]) for b in piece) for piece in pieces)
    merges = []
    while len(tokens) < vocab_size:
        pairs = Counter()
        for word, count in words.items():
            for a, b in zip(word, word[1:]):
                pairs[a, b] += count
        if not pairs:
            break
        (a, b), count = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
        merged = tokens[a] + tokens[b]
        if merged not in index:
            index[merged] = len(tokens)
            tokens.append(merged)
        new = index[merged]
        merges.append((tokens[a], tokens[b]))
        updated = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            updated[tuple(out)] += count
        words = updated
    return merges


def reference_bpe(piece: bytes, priority: dict[tuple[bytes, bytes], int]) -> list[bytes]:
    """Merge the adjacent pair of lowest priority, leftmost first, until none applies (tiktoken's loop)."""
    parts = [bytes([b]) for b in piece]
    while len(parts) > 1:
        best = None
        for i in range(len(parts) - 1):
            p = priority.get((parts[i], parts[i + 1]))
            if p is not None and (best is None or p < best[0]):
                best = (p, i)
        if best is None:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts
