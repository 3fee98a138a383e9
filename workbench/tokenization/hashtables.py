"""Open-addressing hash tables for Numba kernels: int64 keys, and byte strings stored in an arena.

Numba's typed dict costs ~100 ns an operation; these flat-array tables cost a few ns and can be passed between
kernels and kept on Python objects. Capacities are powers of two; ``EMPTY`` (-1) marks a free slot.

>>> keys, vals = int_table(4)
>>> slot = int_slot(keys, 42); keys[slot] = 42; vals[slot] = 7
>>> int(vals[int_slot(keys, 42)]), int(keys[int_slot(keys, 5)])
(7, -1)
"""

from __future__ import annotations

import numpy as np
from numba import njit

EMPTY = -1
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_S33 = np.uint64(33)


def table_capacity(n_items: int, load: float = 0.5) -> int:
    """Smallest power of two holding ``n_items`` at the given load factor (at least 16)."""
    cap = 16
    while cap * load < n_items:
        cap *= 2
    return cap


@njit(cache=True, inline="always")
def mix64(x):
    """murmur3's 64-bit finalizer: a well-spread hash of a uint64."""
    x ^= x >> _S33
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


@njit(cache=True, inline="always")
def hash_bytes(data, start, end):
    """FNV-1a over ``data[start:end]`` (uint8), finalised with :func:`mix64`."""
    h = _FNV_OFFSET
    for i in range(start, end):
        h ^= np.uint64(data[i])
        h *= _FNV_PRIME
    return mix64(h ^ np.uint64(end - start))


def int_table(capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty int64 -> int64 table: ``(keys, values)``; ``capacity`` is rounded up to a power of two."""
    cap = table_capacity(capacity, 1.0)
    return np.full(cap, EMPTY, np.int64), np.zeros(cap, np.int64)


@njit(cache=True, inline="always")
def int_slot(keys, key):
    """Slot holding ``key`` or the free slot where it would go (linear probing)."""
    mask = keys.shape[0] - 1
    slot = np.int64(mix64(np.uint64(key)) & np.uint64(mask))
    while keys[slot] != EMPTY and keys[slot] != key:
        slot = (slot + 1) & mask
    return slot


@njit(cache=True, inline="always")
def bytes_equal(a, a_start, b, b_start, length):
    for i in range(length):
        if a[a_start + i] != b[b_start + i]:
            return False
    return True


@njit(cache=True, inline="always")
def bytes_slot(hashes, offsets, lengths, arena, data, start, end, h):
    """Slot whose stored string (``arena[offsets[s]:offsets[s]+lengths[s]]``) equals ``data[start:end]``,
    or the free slot where it would go. ``hashes`` uses 0 for free slots, so ``h`` must be non-zero."""
    mask = hashes.shape[0] - 1
    n = end - start
    slot = np.int64(h & np.uint64(mask))
    while hashes[slot] != 0:
        if hashes[slot] == h and lengths[slot] == n and bytes_equal(arena, offsets[slot], data, start, n):
            return slot
        slot = (slot + 1) & mask
    return slot


@njit(cache=True)
def build_bytes_table(arena, offsets, lengths, capacity):
    """Index strings ``arena[offsets[i]:offsets[i]+lengths[i]]`` -> ``i``. Returns ``(hashes, slot_off, slot_len, slot_val)``.
    A repeated string keeps its first index."""
    hashes = np.zeros(capacity, np.uint64)
    slot_off = np.zeros(capacity, np.int64)
    slot_len = np.zeros(capacity, np.int64)
    slot_val = np.full(capacity, EMPTY, np.int64)
    for i in range(offsets.shape[0]):
        start = offsets[i]
        end = start + lengths[i]
        h = hash_bytes(arena, start, end) | np.uint64(1)
        slot = bytes_slot(hashes, slot_off, slot_len, arena, arena, start, end, h)
        if hashes[slot] == 0:
            hashes[slot] = h
            slot_off[slot] = start
            slot_len[slot] = lengths[i]
            slot_val[slot] = i
    return hashes, slot_off, slot_len, slot_val
