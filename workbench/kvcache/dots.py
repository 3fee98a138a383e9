"""Register-tiled float32 dot products for numba kernels, summed over the dimensions in order (one FMA per term):
the arithmetic of torch's CPU ``matmul`` (MKL), so numba and torch agree bit for bit, and about as fast as BLAS.

Keys are laid out in tiles of `TILE` positions, transposed: ``tiles`` float32 [ceil(T / TILE), D, TILE] (`key_tiles`,
the last tile zero-padded), so that one tile's dot products with `TILE_HEADS` queries run as TILE_HEADS x TILE
independent FMA chains held in registers. Numba arrays live on the heap, where LLVM cannot keep an accumulator in a
register; `stack_empty` allocates one on the stack instead (a constant size), which LLVM promotes to registers once
the fixed-length loops over it are unrolled.

Example: ``tile_dots(q, key_tiles(keys), t, out)`` sets ``out[r, t * TILE + i] = q[r] . keys[t * TILE + i]``.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

TILE = 32       # positions per key tile (4 AVX2 vectors)
TILE_HEADS = 3  # queries per pass over a tile: 3 x 4 accumulators + 4 key vectors fill the 16 AVX2 registers.
# `_accumulate` writes exactly three rows out (constant indices keep the tile in registers): changing TILE_HEADS
# means writing it again.
_ACC = TILE * TILE_HEADS
EXACT_MATH = {"nnan", "ninf", "nsz", "contract"}  # fast-math without reassociation or reciprocals: exact order


@intrinsic
def stack_empty(typingctx, size, dtype):
    """A pointer to ``size`` (a compile-time constant) uninitialised elements of ``dtype`` on the stack frame of
    the calling function; wrap it with ``numba.carray``. Valid until that function returns."""
    if not isinstance(size, types.IntegerLiteral):
        return None

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(dtype.dtype), size=size.literal_value)

    return types.CPointer(dtype.dtype)(size, dtype), codegen


@njit(cache=True)
def key_tiles(keys, dims=None):
    """``keys`` float32 [T, D] -> float32 [ceil(T / TILE), D', TILE]: position ``t * TILE + i`` at ``[t, :, i]``,
    the positions after T zero. ``dims`` (int [D'], optional): only those dimensions, in that order."""
    n, d = keys.shape
    cols = np.arange(d) if dims is None else dims
    out = np.zeros(((n + TILE - 1) // TILE, cols.shape[0], TILE), np.float32)
    for t in range(out.shape[0]):
        for j in range(min(TILE, n - t * TILE)):
            row = keys[t * TILE + j]
            for c in range(cols.shape[0]):
                out[t, c, j] = row[cols[c]]
    return out


@njit(inline="always", fastmath=EXACT_MATH)
def _accumulate(q, r0, tiles, t, acc):
    """``acc[h, i] = q[r0 + h] . tiles[t, :, i]`` for the `TILE_HEADS` (3) query rows of ``q`` [R, D] from ``r0``
    (the last row repeated past the end), summed over d in order, one FMA per term. Inlined into the caller, whose
    stack array ``acc`` LLVM then keeps in registers (the three rows written out, so that nothing but the
    fixed-length loops over positions remains)."""
    n_r, d = q.shape
    a, b, c = r0, min(r0 + 1, n_r - 1), min(r0 + 2, n_r - 1)
    qa, qb, qc = q[a, 0], q[b, 0], q[c, 0]
    for i in range(TILE):
        k = tiles[t, 0, i]
        acc[0, i] = qa * k
        acc[1, i] = qb * k
        acc[2, i] = qc * k
    for j in range(1, d):
        qa, qb, qc = q[a, j], q[b, j], q[c, j]
        for i in range(TILE):
            k = tiles[t, j, i]
            acc[0, i] += qa * k
            acc[1, i] += qb * k
            acc[2, i] += qc * k


@njit(inline="always", fastmath=EXACT_MATH)
def tile_dots(q, tiles, t, out):
    """``out[r, t * TILE + i] = q[r] . tiles[t, :, i]`` for every row of ``q`` float32 [R, D] and the `TILE`
    positions of tile ``t``; ``out`` float32 [R, >= (t + 1) * TILE]. Each product is summed over d in order with
    one FMA per term (the first term a plain product), in registers, `TILE_HEADS` rows per pass."""
    acc = carray(stack_empty(_ACC, np.float32), (TILE_HEADS, TILE))
    n_r = q.shape[0]
    for r0 in range(0, n_r, TILE_HEADS):
        _accumulate(q, r0, tiles, t, acc)
        for h in range(TILE_HEADS):  # constant indices into acc only: a variable one would keep it in memory
            if r0 + h < n_r:
                for i in range(TILE):
                    out[r0 + h, t * TILE + i] = acc[h, i]


@njit(inline="always", fastmath=EXACT_MATH)
def tile_max_dots(q, tiles, t, scaling, out):
    """``out[i] = max over r of scaling * (q[r] . tiles[t, :, i])`` for the `TILE` positions of tile ``t`` and the
    rows of ``q`` float32 [R, D] (a query group), the products as in `tile_dots`, then scaled (float32);
    ``out`` float32 [TILE]."""
    acc = carray(stack_empty(_ACC, np.float32), (TILE_HEADS, TILE))
    for r0 in range(0, q.shape[0], TILE_HEADS):
        _accumulate(q, r0, tiles, t, acc)
        for i in range(TILE):
            v = acc[0, i] * scaling
            for h in range(1, TILE_HEADS):
                v = max(v, acc[h, i] * scaling)
            out[i] = v if r0 == 0 else max(out[i], v)
