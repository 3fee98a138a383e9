"""The register-tiled dot products (`workbench.kvcache.dots`) against a readable in-order reference, and against
torch's CPU matmul, whose arithmetic (one FMA per term, in order) they reproduce bit for bit."""

from __future__ import annotations

import platform
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from llvmlite import binding as llvm

from workbench.kvcache.dots import TILE, key_tiles, tile_dots, tile_max_dots

# The kernels ask LLVM for fused multiply-adds; a CPU without them rounds each product separately.
needs_fma = pytest.mark.skipif("fma" not in llvm.get_host_cpu_features(), reason="the CPU has no FMA instructions")
# torch's CPU matmul sums in order with FMAs in its x86 MKL build; other BLAS builds block the sum differently.
needs_mkl = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or not torch.backends.mkl.is_available(),
                               reason="torch's matmul is not MKL on x86 here")

SHAPES = [(1, 1, 1), (1, 64, 100), (2, 8, 33), (3, 64, 4096), (4, 16, 77), (7, 5, 64), (9, 64, 200)]


def round_f32(x: Fraction) -> np.float32:
    """The float32 nearest to the exact ``x`` (ties to even)."""
    c = np.float32(float(x))  # within an ulp
    near = (c, np.nextafter(c, np.float32(-np.inf)), np.nextafter(c, np.float32(np.inf)))
    return min(near, key=lambda y: (abs(Fraction(float(y)) - x), int(np.array(y).view(np.uint32)) & 1))


def dot_in_order(q: np.ndarray, k: np.ndarray) -> np.float32:
    """q . k summed over d in order, each term one fused multiply-add: the exact acc + q_d k_d rounded once to
    float32 (the first term a plain product)."""
    acc = round_f32(Fraction(float(q[0])) * Fraction(float(k[0])))
    for a, b in zip(q[1:], k[1:], strict=True):
        acc = round_f32(Fraction(float(acc)) + Fraction(float(a)) * Fraction(float(b)))
    return acc


def all_tiles(q, s, tiles, n_tokens):
    """The dot products of the queries ``q[:, s]`` with every key, tile by tile."""
    got = np.empty((q.shape[0], tiles.shape[0] * TILE), np.float32)
    for t in range(tiles.shape[0]):
        tile_dots(q[:, s], tiles, t, got)
    return got[:, :n_tokens]


def test_key_tiles_layout_and_padding():
    keys = np.arange(70 * 3, dtype=np.float32).reshape(70, 3)
    tiles = key_tiles(keys)
    assert tiles.shape == (3, 3, TILE)
    for i in range(70):
        np.testing.assert_array_equal(tiles[i // TILE, :, i % TILE], keys[i])
    assert not tiles[2, :, 70 - 2 * TILE:].any()
    picked = key_tiles(keys, np.array([2, 0]))
    np.testing.assert_array_equal(picked, tiles[:, [2, 0]])


@needs_fma
@given(g=st.integers(1, 5), d=st.integers(1, 12), n=st.integers(1, 70), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_tile_dots_are_in_order_fma_sums(g, d, n, seed):
    rng = np.random.default_rng(seed)
    q = (rng.standard_normal((g, 2, d)) * rng.uniform(0.1, 100)).astype(np.float32)
    keys = (rng.standard_normal((n, d)) * rng.uniform(0.1, 100)).astype(np.float32)
    got = all_tiles(q, 1, key_tiles(keys), n)
    want = np.array([[dot_in_order(q[a, 1], keys[i]) for i in range(n)] for a in range(g)], np.float32)
    np.testing.assert_array_equal(got, want)


@needs_fma
@needs_mkl
@pytest.mark.parametrize("g,d,n", SHAPES)
def test_tile_dots_equal_torch_matmul(g, d, n):
    """torch's CPU matmul (MKL) with at least a few rows sums in order with FMAs: the same bits."""
    rng = np.random.default_rng(g * 1000 + d + n)
    q = rng.standard_normal((g, 16, d)).astype(np.float32)
    keys = rng.standard_normal((n, d)).astype(np.float32)
    want = torch.matmul(torch.from_numpy(q.reshape(-1, d)), torch.from_numpy(keys).T).numpy().reshape(g, 16, n)
    tiles = key_tiles(keys)
    for s in (0, 7, 15):
        np.testing.assert_array_equal(all_tiles(q, s, tiles, n), want[:, s])


@pytest.mark.parametrize("g,d,n", SHAPES)
def test_tile_max_dots_is_the_scaled_group_max(g, d, n):
    """A group of queries (several register passes when g > TILE_HEADS): the float32 max of the scaled products."""
    rng = np.random.default_rng(n)
    q = rng.standard_normal((g, 3, d)).astype(np.float32)
    keys = rng.standard_normal((n, d)).astype(np.float32)
    tiles, scaling = key_tiles(keys), np.float32(0.125)
    dots = all_tiles(q, 2, tiles, n)
    out = np.empty(TILE, np.float32)
    for t in range(tiles.shape[0]):
        tile_max_dots(q[:, 2], tiles, t, scaling, out)
        m = min(TILE, n - t * TILE)
        np.testing.assert_array_equal(out[:m], (dots[:, t * TILE:t * TILE + m] * scaling).max(axis=0))
