"""Register-tiled float32 dot products for numba kernels, summed over the dimensions in order (one FMA per term):
the arithmetic of torch's CPU ``matmul`` (MKL), so numba and torch agree bit for bit, and about as fast as BLAS.

Keys are laid out in tiles of `TILE` positions, transposed: ``tiles`` float32 [ceil(T / TILE), D, TILE] (`key_tiles`,
the last tile zero-padded), so that one tile's dot products with `TILE_HEADS` queries run as TILE_HEADS x TILE
independent FMA chains held in registers. Numba arrays live on the heap, where LLVM cannot keep an accumulator in a
register; `stack_empty` allocates one on the stack instead (a constant size), which LLVM promotes to registers once
the fixed-length loops over it are unrolled.

Example: ``tile_dots(q, s, key_tiles(keys), t, out)`` sets ``out[g, i] = q[g, s] . keys[t * TILE + i]``.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

TILE = 32       # positions per key tile (4 AVX2 vectors)
TILE_HEADS = 3  # queries per pass over a tile: 3 x 4 accumulators + 4 key vectors fill the 16 AVX2 registers
_ACC = TILE * TILE_HEADS
_EXACT = {"nnan", "ninf", "nsz", "contract"}  # fast-math without reassociation: the sum keeps its order


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
def key_tiles(keys):
    """``keys`` float32 [T, D] -> float32 [ceil(T / TILE), D, TILE]: position ``t * TILE + i`` at ``[t, :, i]``,
    the positions after T zero."""
    n, d = keys.shape
    out = np.zeros(((n + TILE - 1) // TILE, d, TILE), np.float32)
    for t in range(out.shape[0]):
        for j in range(min(TILE, n - t * TILE)):
            row = keys[t * TILE + j]
            for c in range(d):
                out[t, c, j] = row[c]
    return out


@njit(inline="always", fastmath=_EXACT)
def _accumulate(q, s, tiles, t, g0, acc):
    """``acc[h, i] = q[g0 + h, s] . tiles[t, :, i]`` for the `TILE_HEADS` queries from ``g0`` (the last query
    repeated past the end of ``q``), summed over d in order, one FMA per term. Inlined into the caller, whose
    stack array ``acc`` LLVM then keeps in registers."""
    n_g, _, d = q.shape
    for i in range(TILE):
        k0 = tiles[t, 0, i]
        for h in range(TILE_HEADS):
            acc[h, i] = q[min(g0 + h, n_g - 1), s, 0] * k0
    for c in range(1, d):
        for i in range(TILE):
            kc = tiles[t, c, i]
            for h in range(TILE_HEADS):
                acc[h, i] += q[min(g0 + h, n_g - 1), s, c] * kc


@njit(cache=True, fastmath=_EXACT)
def tile_dots(q, s, tiles, t, out):
    """``out[g, i] = q[g, s] . tiles[t, :, i]`` for every query ``g`` of ``q`` float32 [G, S, D] and the `TILE`
    positions of tile ``t``; ``out`` float32 [G, TILE]. Each product is summed over d in order with one FMA per
    term (the first term a plain product), in registers, `TILE_HEADS` queries per pass."""
    n_g = q.shape[0]
    acc = carray(stack_empty(_ACC, np.float32), (TILE_HEADS, TILE))
    for g0 in range(0, n_g, TILE_HEADS):
        _accumulate(q, s, tiles, t, g0, acc)
        for h in range(min(TILE_HEADS, n_g - g0)):
            for i in range(TILE):
                out[g0 + h, i] = acc[h, i]


@njit(cache=True, fastmath=_EXACT)
def tile_max_dots(q, s, tiles, t, scaling, out):
    """``out[i] = max over g of scaling * (q[g, s] . tiles[t, :, i])`` (each product rounded to float32, then
    scaled): the `tile_dots` products of a query group reduced to one score per position; ``out`` float32
    [TILE]."""
    n_g = q.shape[0]
    acc = carray(stack_empty(_ACC, np.float32), (TILE_HEADS, TILE))
    for g0 in range(0, n_g, TILE_HEADS):
        _accumulate(q, s, tiles, t, g0, acc)
        for i in range(TILE):
            v = acc[0, i] * scaling
            for h in range(1, TILE_HEADS):
                v = max(v, acc[h, i] * scaling)
            out[i] = v if g0 == 0 else max(out[i], v)
