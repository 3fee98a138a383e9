"""Fused numba kernels for the query-aware selection policies (TokenSelect, FASA, HISA): from ``q . k`` logits to
the kept mask in one pass per decode step, without materialising a [heads, steps, positions] score array (TokenSelect
takes the caller's BLAS logits; FASA and HISA compute theirs here with the register-tiled in-order FMA dot products of
`dots`, FASA over a few dimensions, HISA for its candidate blocks only). Same conventions as `kernels` (selection
keeps the current position plus the ``budget - 1`` best earlier positions, ties to the oldest); the same scores, in
the same arithmetic, as the torch path (`torch_replay`), and the tests' readable reference.

Shapes: ``G`` query heads aggregated together, ``S`` decode steps, ``T`` positions; TokenSelect's ``logits`` float32
[G, S, T] holds the raw products (``scaling`` is applied here). Positions after a step's own query never count
(the tiled kernels compute whole 32-position tiles and ignore the products past it).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from workbench.kvcache.dots import EXACT_MATH, TILE, TILE_HEADS, key_tiles, tile_dots, tile_max_dots
from workbench.kvcache.kernels import SCRATCH, _topk_into

AGG_SUM, AGG_MEAN, AGG_MAX = 0, 1, 2


# exp(v) = 2^k * exp(r), k = round(v / ln 2), r = v - k ln 2 in two parts (Cody-Waite, fdlibm's constants)
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


_SHIFTER = 6755399441055744.0  # 2^52 + 2^51: k + _SHIFTER holds the integer k in its low mantissa bits
# exp(r) = sum r^j / j!, j <= 11 (relative error < 1e-14 for |r| <= ln(2)/2), evaluated by Estrin's scheme
_C = [1.0 / f for f in (1, 1, 2, 6, 24, 120, 720, 5040, 40320, 362880, 3628800, 39916800)]
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11 = _C


@njit(cache=True, fastmath=True)
def _max_scaled(x, n, scaling):
    """``max(x[:n] * scaling)``, eight running maxima so that the loop vectorises."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = np.float32(-np.inf)
    i = 0
    while i + 8 <= n:
        m0 = max(m0, x[i] * scaling)
        m1 = max(m1, x[i + 1] * scaling)
        m2 = max(m2, x[i + 2] * scaling)
        m3 = max(m3, x[i + 3] * scaling)
        m4 = max(m4, x[i + 4] * scaling)
        m5 = max(m5, x[i + 5] * scaling)
        m6 = max(m6, x[i + 6] * scaling)
        m7 = max(m7, x[i + 7] * scaling)
        i += 8
    while i < n:
        m0 = max(m0, x[i] * scaling)
        i += 1
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@intrinsic
def _bits(typingctx, x):
    """The bits of a float64 as an int64 (a bitcast, free in a vector register)."""
    if x != types.float64:
        return None
    return types.int64(types.float64), lambda context, builder, sig, args: builder.bitcast(args[0], ir.IntType(64))


@intrinsic
def _from_bits(typingctx, x):
    """The float64 whose bits are the int64 ``x`` (a bitcast)."""
    if x != types.int64:
        return None
    return types.float64(types.int64), lambda context, builder, sig, args: builder.bitcast(args[0], ir.DoubleType())


@njit(cache=True, fastmath=EXACT_MATH)
def _exps(x, n, scaling, m, out):
    """``out[i] = exp(v)`` for ``v = float64(x[i] * scaling) - m`` (float64): exp(r) by the polynomial, times 2^k
    by adding k to the exponent bits. ``k + _SHIFTER`` holds k in its low mantissa bits, so shifting its bits by
    52 gives k << 52 (mod 2^64) without a float -> int64 conversion (AVX2 has none). Float arithmetic, integer adds
    and bitcasts only, no calls and no branches, so the loop vectorises (numba has no vector exp without Intel's
    SVML)."""
    for i in range(n):
        v = max(np.float64(x[i] * scaling) - m, -700.0)  # exp(-700) rounds to 0 in float32; k stays > -1022
        k = np.floor(v * _LOG2E + 0.5)
        r = (v - k * _LN2_HI) - k * _LN2_LO
        r2 = r * r
        r4 = r2 * r2
        a = (_C0 + _C1 * r) + r2 * (_C2 + _C3 * r)
        b = (_C4 + _C5 * r) + r2 * (_C6 + _C7 * r)
        c = (_C8 + _C9 * r) + r2 * (_C10 + _C11 * r)
        out[i] = _from_bits(_bits(a + r4 * (b + r4 * c)) + (_bits(k + _SHIFTER) << 52))


@njit(cache=True, fastmath=True)
def _sum(e64, n):
    """``sum(e64[:n])``, reassociated so that it vectorises."""
    z = 0.0
    for i in range(n):
        z += e64[i]
    return z


STORE, ADD, MAX = 0, 1, 2


@njit(cache=True, fastmath=EXACT_MATH)
def _combine(e64, n, zf, mode, e):
    """``float32(e64[i]) / zf`` stored into (STORE), added to (ADD) or maxed with (MAX) ``e[i]``."""
    if mode == STORE:
        for i in range(n):
            e[i] = np.float32(e64[i]) / zf
    elif mode == ADD:
        for i in range(n):
            e[i] += np.float32(e64[i]) / zf
    else:
        for i in range(n):
            e[i] = max(e[i], np.float32(e64[i]) / zf)


@njit(cache=True)
def _softmax_into(x, n, scaling, e, work, mode=STORE):
    """``e[:n] = softmax(scaling * x[:n])`` as float32 (``mode`` ADD / MAX: added to / maxed with ``e``): the max
    and the exponentials in float64 (each exponential rounded to float32, the sum kept in float64), divided in
    float32 by the rounded sum. ``work``: float64 scratch of n. Vectorised, and bit-identical to the scalar
    ``np.exp`` loop in all but ~1e-7 of the cells."""
    e64 = work[:n]
    _exps(x, n, scaling, np.float64(_max_scaled(x, n, scaling)), e64)
    _combine(e64, n, np.float32(_sum(e64, n)), mode, e)


@njit(cache=True)
def _add_softmax(row, n, scaling, how, first, acc, work):
    """Aggregate ``softmax(scaling * row[:n])`` into ``acc[:n]`` (``first``: it becomes ``acc``); AGG_MEAN sums here
    and divides once all heads are in (`_finish_mean`)."""
    mode = STORE if first else (MAX if how == AGG_MAX else ADD)
    _softmax_into(row, n, scaling, acc, work, mode)


@njit(cache=True)
def _finish_mean(acc, n, how, n_g):
    if how == AGG_MEAN:
        for i in range(n):
            acc[i] /= n_g


@njit(cache=True)
def _vote_step(logits, s, p, scaling, how, budget, acc, work, buf, kept_row):
    """One decode step of `softmax_select_head`: aggregate the softmax of ``logits[g, s, :p + 1]`` over the heads
    and keep position ``p`` plus the ``budget - 1`` best earlier positions in ``kept_row``."""
    n_g = logits.shape[0]
    for g in range(n_g):
        _add_softmax(logits[g, s], p + 1, scaling, how, g == 0, acc, work)
    _finish_mean(acc, p + 1, how, n_g)
    _topk_into(acc, p, budget - 1, buf, kept_row)
    kept_row[p] = True


@njit(cache=True)
def softmax_select_head(logits, n_pre, scaling, how, budget, kept):
    """Aggregate ``softmax(scaling * logits)`` of the G query heads (``how``: AGG_SUM, AGG_MEAN or AGG_MAX) at each
    step and keep the current position plus the ``budget - 1`` best earlier positions. ``kept`` bool [S, T] (out,
    must start all False)."""
    t = logits.shape[2]
    acc = np.empty(t, np.float32)
    buf = np.empty(t + SCRATCH, np.float32)
    work = np.empty(t, np.float64)
    for s in range(logits.shape[1]):
        p = n_pre + s
        if p + 1 <= budget:
            kept[s, : p + 1] = True
        else:
            _vote_step(logits, s, p, scaling, how, budget, acc, work, buf, kept[s])


@njit(cache=True, parallel=True)
def softmax_select_heads(logits, group, n_pre, scaling, how, budget, kept):
    """`softmax_select_head` for every KV head: ``logits`` [H * group, S, T], ``kept`` [H, S, T]."""
    for h in prange(kept.shape[0]):
        softmax_select_head(logits[h * group:(h + 1) * group], n_pre, scaling, how, budget, kept[h])


STEPS = TILE_HEADS  # decode steps whose partial logits `partial_softmax_select_head` computes in one pass


@njit(cache=True)
def partial_softmax_select_head(q, tiles, n_pre, scaling, how, budget, kept):
    """`softmax_select_head` on logits computed here from a few dimensions only (FASA's dominant frequency chunks):
    ``q`` float32 [G, S, d'] the decode queries' chosen dimensions, ``tiles`` float32 [G, ceil(T / TILE), d', TILE]
    the keys' same dimensions per query head (`dots.key_tiles`). The logits of `STEPS` consecutive steps come
    from one pass over the key tiles (`dots.tile_dots`, in-order FMA sums); never materialises the [G, S, T]
    logits."""
    n_g, n_s, _ = q.shape
    t = kept.shape[1]
    rows = np.empty((n_g, STEPS, tiles.shape[1] * TILE), np.float32)  # the logits of steps s0 .. s0 + STEPS - 1
    acc = np.empty(t, np.float32)
    buf = np.empty(t + SCRATCH, np.float32)
    work = np.empty(t, np.float64)
    for s0 in range(0, n_s, STEPS):
        s1 = min(s0 + STEPS, n_s)
        last = n_pre + s1 - 1  # the last step's position
        if last + 1 > budget:
            for g in range(n_g):
                for tt in range(last // TILE + 1):
                    tile_dots(q[g, s0:s1], tiles[g], tt, rows[g])
        for s in range(s0, s1):
            p = n_pre + s
            if p + 1 <= budget:
                kept[s, : p + 1] = True
            else:
                _vote_step(rows, s - s0, p, scaling, how, budget, acc, work, buf, kept[s])


@njit(cache=True, parallel=True)
def partial_softmax_select_heads(q, tiles, group, n_pre, scaling, how, budget, kept):
    """`partial_softmax_select_head` for every KV head: ``q`` [H * group, S, d'], ``tiles`` [H * group, nt, d',
    TILE]."""
    for h in prange(kept.shape[0]):
        partial_softmax_select_head(q[h * group:(h + 1) * group], tiles[h * group:(h + 1) * group], n_pre, scaling,
                                    how, budget, kept[h])


@njit(cache=True)
def _hisa_coarse(q, rep_tiles, n_blocks, out):
    """``out[s, b] = max over g of q[g, s] . rep_b`` (unscaled) for the ``n_blocks`` block means in ``rep_tiles``
    (`dots.key_tiles` layout); ``q`` float32 [G, S, D], ``out`` float32 [S, B]."""
    dots = np.empty(TILE, np.float32)
    for s in range(q.shape[1]):
        for t in range(rep_tiles.shape[0]):
            tile_max_dots(q[:, s], rep_tiles, t, np.float32(1.0), dots)
            m = min(TILE, n_blocks - t * TILE)
            out[s, t * TILE:t * TILE + m] = dots[:m]


@njit(cache=True)
def _hisa_candidates(q, s, tiles, chosen, avail, cur, block, p, scaling, dots, vals, run_pos, run_at):
    """Score HISA's candidate positions of step ``s``: the ``chosen`` complete earlier blocks, then the current
    block up to ``p``, in position order. ``vals[c]``: the max over the group of the scaled logit of the c-th
    candidate. The candidates form runs of consecutive positions: run r starts at position ``run_pos[r]`` and
    candidate ``run_at[r]`` (``run_at[r + 1]``: its end). Each key tile is multiplied once. Returns the number of
    runs."""
    c = 0
    r = 0
    done = -1  # the tile whose scores `dots` holds
    for b in range(cur + 1):
        if b < avail and not chosen[b]:
            continue
        lo, hi = b * block, min((b + 1) * block, p)
        if r == 0 or run_pos[r - 1] + c - run_at[r - 1] != lo:  # a new run (else the block extends the last)
            run_pos[r] = lo
            run_at[r] = c
            r += 1
        while lo < hi:  # the part of [lo, hi) in one tile
            t = lo // TILE
            e = min(hi, (t + 1) * TILE)
            if t != done:
                tile_max_dots(q[:, s], tiles, t, scaling, dots)
                done = t
            j0 = lo - t * TILE
            for j in range(e - lo):
                vals[c + j] = dots[j0 + j]
            c += e - lo
            lo = e
    run_at[r] = c
    return r


@njit(cache=True)
def hisa_select_head(q, keys, reps, n_pre, scaling, block, n_blocks, budget, kept):
    """HISA for one KV head. ``q`` float32 [G, S, D] the group's decode queries, ``keys`` float32 [T, D], ``reps``
    float32 [B, D] the mean key of each complete block of ``block`` positions. At each step the ``n_blocks`` best
    complete earlier blocks (by q . mean key, max over the group) plus the current block are the candidates,
    ranked by the max over the group of ``scaling * q . k``; positions outside them rank -inf (kept, oldest first,
    only when there are fewer candidates than ``budget - 1``). ``kept`` bool [S, T] (out, all False). Every
    product is an in-order FMA sum (`dots`), computed for the candidates only."""
    n_s = q.shape[1]
    t = keys.shape[0]
    nb = reps.shape[0]
    tiles = key_tiles(keys)
    coarse = np.empty((n_s, nb), np.float32)
    _hisa_coarse(q, key_tiles(reps), nb, coarse)
    dots = np.empty(TILE, np.float32)
    vals = np.empty(t, np.float32)
    top = np.zeros(t, np.bool_)
    run_pos = np.empty(nb + 2, np.int64)
    run_at = np.empty(nb + 3, np.int64)
    buf = np.empty(t + SCRATCH, np.float32)
    bbuf = np.empty(nb + SCRATCH, np.float32)
    chosen = np.zeros(max(nb, 1), np.bool_)
    for s in range(n_s):
        p = n_pre + s
        if p + 1 <= budget:
            kept[s, : p + 1] = True
            continue
        cur = p // block
        avail = min(cur, nb)
        chosen[:] = False
        if avail > 0:
            _topk_into(coarse[s], avail, min(n_blocks, avail), bbuf, chosen)
        runs = _hisa_candidates(q, s, tiles, chosen, avail, cur, block, p, scaling, dots, vals, run_pos, run_at)
        c = run_at[runs]
        top[:c] = False
        _topk_into(vals, c, budget - 1, buf, top)
        for r in range(runs):
            kept[s, run_pos[r]:run_pos[r] + run_at[r + 1] - run_at[r]] = top[run_at[r]:run_at[r + 1]]
        short = budget - 1 - c  # too few candidates: the oldest other positions, as -inf ties
        i = 0
        while short > 0:
            if not kept[s, i]:
                kept[s, i] = True
                short -= 1
            i += 1
        kept[s, p] = True


@njit(cache=True, parallel=True)
def hisa_select_heads(q, keys, reps, group, n_pre, scaling, block, n_blocks, budget, kept):
    """`hisa_select_head` for every KV head: ``q`` [H * group, S, D], ``keys`` [H, T, D], ``reps`` [H, B, D],
    ``kept`` [H, S, T]."""
    for h in prange(kept.shape[0]):
        hisa_select_head(q[h * group:(h + 1) * group], keys[h], reps[h], n_pre, scaling, block, n_blocks, budget,
                         kept[h])
