"""One binary heap for the Numba kernels: the BPE encoder's merge queue (:mod:`~workbench.tokenization.encoder`),
the BPE trainer's pair queue (:mod:`~workbench.tokenization.trainer_kernels`) and the mixture oracle's score queue
(:mod:`~workbench.tokenization.mixture_kernels`).

The three order different entries differently (lowest ``(priority, position)``; highest count, then lowest
``(left id, right id)`` looked up through the pair id; highest float score, ties as they fall), so the heap is
written once over what they have in common:

- ``cols``: a tuple of parallel arrays, entry ``i`` being ``(cols[0][i], cols[1][i], ...)``;
- ``first(cols, ctx, i, j)``: a strict order, True when entry ``i`` leaves the heap before entry ``j``
  (``ctx``: whatever else it reads, such as the trainer's pair tables; 0 when nothing);
- ``swap(cols, i, j)``: exchange entries ``i`` and ``j`` in every column.

A push writes the entry at index ``size`` and calls :func:`sift_up`; :func:`pop` moves the top entry to the end.
Lazy deletion (stale entries, versions) stays with each caller. The sift steps make the same comparisons and swaps
as the three hand-written heaps they replace, so every kernel pops in the same order as before, equal keys
included (the oracle's pop used to copy the last entry to the top instead of swapping: the same heap).

How to call it, for speed and for Numba's cache:

- These are ``inline="always"``: each caller's copy calls its own ``first`` and ``swap`` directly. (A dispatcher
  passed to a call that LLVM does not inline is a process address in the code, and Numba will not cache it.)
- Call them from a small ``@njit(cache=True, _nrt=False)`` push/pop of the caller's own, as Numba does for its own
  string helpers: with reference counting on, Numba increfs and decrefs the arrays around each sift loop, which
  cost the encoder's long pieces two thirds of their time.
"""

from __future__ import annotations

from numba import njit


@njit(inline="always")
def sift_up(cols, ctx, first, swap, i):
    """Move entry ``i`` up until its parent leaves before it (a push: the new entry was written at ``i = size``)."""
    while i > 0:
        parent = (i - 1) >> 1
        if first(cols, ctx, i, parent):
            swap(cols, i, parent)
            i = parent
        else:
            break


@njit(inline="always")
def sift_down(cols, ctx, first, swap, size):
    """Move the entry at the top down until no child of it leaves first, within the heap ``[0, size)``."""
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and first(cols, ctx, left + 1, left):
            child = left + 1
        if first(cols, ctx, child, i):
            swap(cols, i, child)
            i = child
        else:
            break


@njit(inline="always")
def pop(cols, ctx, first, swap, size):
    """Move the top entry to index ``size - 1`` and restore the heap on ``[0, size - 1)``; returns ``size - 1``."""
    last = size - 1
    swap(cols, 0, last)
    sift_down(cols, ctx, first, swap, last)
    return last
