"""The one Numba heap (workbench.tokenization.heap) under the three orderings that use it: each pops in its order,
and equal keys come out exactly as from the plain array heap written out in Python (the oracle has no tie-break)."""

from __future__ import annotations

import numpy as np

from workbench.tokenization import encoder as E
from workbench.tokenization import mixture_kernels as MK
from workbench.tokenization import trainer_kernels as TK


def _ops(seed: int, entries: list[tuple]) -> list[tuple | None]:
    """Push every entry, popping now and then (None), then pop what is left."""
    rng = np.random.default_rng(seed)
    ops: list[tuple | None] = []
    for e in entries:
        ops.append(e)
        if rng.random() < 0.3:
            ops.append(None)
    return ops + [None] * (len(entries) - ops.count(None))


def _python_heap(ops, first) -> list[tuple]:
    """The array heap written out in Python (push: sift up; pop: swap the top to the end, sift down)."""
    heap, out = [], []
    for entry in ops:
        if entry is not None:
            heap.append(entry)
            i = len(heap) - 1
            while i > 0 and first(heap[i], heap[(i - 1) >> 1]):
                heap[i], heap[(i - 1) >> 1] = heap[(i - 1) >> 1], heap[i]
                i = (i - 1) >> 1
            continue
        heap[0], heap[-1] = heap[-1], heap[0]
        out.append(heap.pop())
        i = 0
        while 2 * i + 1 < len(heap):
            child = 2 * i + 1
            if child + 1 < len(heap) and first(heap[child + 1], heap[child]):
                child += 1
            if not first(heap[child], heap[i]):
                break
            heap[i], heap[child] = heap[child], heap[i]
            i = child
    return out


def _encoder(ops, n):
    hp, hpos, hl, hr = (np.empty(n, np.int64) for _ in range(4))
    size, popped = 0, []
    for e in ops:
        if e is not None:
            size = E._heap_push(hp, hpos, hl, hr, size, *e)
        else:
            size = E._heap_pop(hp, hpos, hl, hr, size)
            popped.append((int(hp[size]), int(hpos[size]), int(hl[size]), int(hr[size])))
    assert size == 0
    return popped


def _trainer(ops, n, pa, pb):
    h_count, h_pair, h_pos = (np.empty(n, np.int64) for _ in range(3))
    size, popped = 0, []
    for e in ops:
        if e is not None:
            h_count[size], h_pair[size], h_pos[size] = e
            TK._sift_up(h_count, h_pair, h_pos, pa, pb, size)
            size += 1
        else:
            size = TK._pop(h_count, h_pair, h_pos, pa, pb, size)
            popped.append((int(h_count[size]), int(h_pair[size]), int(h_pos[size])))
    assert size == 0
    return popped


def _oracle(ops, n):
    hp = np.empty(n, np.float64)
    hid, hver = np.empty(n, np.int64), np.empty(n, np.int64)
    size, popped = 0, []
    for e in ops:
        if e is not None:
            size = MK._heap_push(hp, hid, hver, size, *e)
        else:
            popped.append((float(hp[0]), int(hid[0]), int(hver[0])))  # the oracle reads the top, then pops
            size = MK._heap_pop(hp, hid, hver, size)
    assert size == 0
    return popped


def test_encoder_queue_pops_lowest_priority_then_position():
    rng = np.random.default_rng(1)
    n = 400
    entries = [(int(p), int(q), i, -i) for i, (p, q) in enumerate(zip(rng.integers(0, 8, n), rng.permutation(n)))]
    assert _encoder(entries + [None] * n, n) == sorted(entries)
    ops = _ops(2, entries)
    assert _encoder(ops, n) == _python_heap(ops, lambda a, b: a[:2] < b[:2])


def test_trainer_queue_pops_highest_count_then_lowest_pair():
    rng = np.random.default_rng(3)
    n = 400
    pa, pb = rng.integers(0, 6, n), rng.integers(0, 6, n)   # pair ids 0..n-1, many with equal (left, right)
    entries = [(int(c), p, int(w)) for p, (c, w) in enumerate(zip(rng.integers(0, 5, n), rng.integers(0, 99, n)))]
    key = lambda e: (-e[0], pa[e[1]], pb[e[1]])  # noqa: E731
    assert [key(e) for e in _trainer(entries + [None] * n, n, pa, pb)] == sorted(map(key, entries))
    ops = _ops(4, entries)
    assert _trainer(ops, n, pa, pb) == _python_heap(ops, lambda a, b: key(a) < key(b))


def test_oracle_queue_pops_highest_score_ties_as_they_fall():
    rng = np.random.default_rng(5)
    n = 400
    entries = [(float(s), i, int(v)) for i, (s, v) in enumerate(zip(rng.integers(0, 6, n) / 4, rng.integers(0, 9, n)))]
    popped = _oracle(entries + [None] * n, n)
    assert [e[0] for e in popped] == sorted((e[0] for e in entries), reverse=True)
    ops = _ops(6, entries)
    assert _oracle(ops, n) == _python_heap(ops, lambda a, b: a[0] > b[0])
