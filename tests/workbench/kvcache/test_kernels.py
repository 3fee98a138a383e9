"""The building blocks under the policies, each against a tiny readable reference: the radix top-k
(`kernels._topk_into`, `_kth_largest_f32`), the vectorised softmax (`select_kernels._softmax_into`, which must equal
the scalar ``np.exp`` loop it replaced), the kept-cell count
(`kernels.count_rows`) and Quest's page extremes (`kernels.page_min_max`)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from workbench.kvcache.kernels import SCRATCH, _kth_largest_f32, _topk_into
from workbench.kvcache.select_kernels import _softmax_into

SPECIAL = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, 1e-45, -1e-45, 1e-38, 3.4e38, -3.4e38]


def topk_reference(vals: np.ndarray, k: int) -> np.ndarray:
    """The k largest, ties to the lowest index (a stable sort on -value)."""
    order = sorted(range(len(vals)), key=lambda i: (-float(vals[i]), i))
    out = np.zeros(len(vals), bool)
    out[order[:k]] = True
    return out


@njit
def softmax_scalar(x, n, scaling, e):
    """The scalar softmax the vectorised one replaced: float64 max and exponentials, float64 sum, float32 divide."""
    m = -np.inf
    for i in range(n):
        v = x[i] * scaling
        m = v if v > m else m
    z = 0.0
    for i in range(n):
        v = np.exp(x[i] * scaling - m)
        e[i] = v
        z += v
    zf = np.float32(z)
    for i in range(n):
        e[i] = e[i] / zf


rows = st.one_of(
    st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=300),
    st.lists(st.sampled_from(SPECIAL), min_size=1, max_size=300),
    st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=3000),
)


@settings(max_examples=300, deadline=None)
@given(rows, st.data())
def test_topk_matches_a_stable_sort(values, data):
    vals = np.asarray(values, np.float32)
    k = data.draw(st.integers(0, len(vals) + 1))
    out = np.zeros(len(vals), bool)
    _topk_into(vals, len(vals), k, np.empty(len(vals) + SCRATCH, np.float32), out)
    np.testing.assert_array_equal(out, topk_reference(vals, min(k, len(vals))))


@settings(max_examples=300, deadline=None)
@given(rows, st.data())
def test_kth_largest_is_the_sorted_value(values, data):
    vals = np.asarray(values, np.float32)
    k = data.draw(st.integers(1, len(vals)))
    before = vals.copy()
    got = _kth_largest_f32(vals, len(vals), k, np.empty(len(vals) + SCRATCH, np.float32))
    assert got == np.sort(vals)[::-1][k - 1]
    np.testing.assert_array_equal(vals, before)  # the row is not reordered


@pytest.mark.parametrize("n", [1, 63, 64, 65, 2049, 40_000])
def test_topk_on_rows_that_need_every_radix_level(n):
    """All values in one top-level bin (then one second-level bin): the deeper levels must still find the k-th."""
    rng = np.random.default_rng(n)
    for vals in (np.full(n, 0.5, np.float32), (1.0 + rng.integers(0, 3, n) * 2.0 ** -23).astype(np.float32),
                 (1.0 + rng.integers(0, 5000, n) * 2.0 ** -23).astype(np.float32)):
        for k in {1, n // 3 + 1, n - 1, n}:
            if k < 1:
                continue
            out = np.zeros(n, bool)
            _topk_into(vals, n, k, np.empty(n + SCRATCH, np.float32), out)
            np.testing.assert_array_equal(out, topk_reference(vals, k))


@pytest.mark.parametrize("scale", [0.01, 1.0, 30.0, 1000.0])
def test_vectorised_softmax_equals_the_scalar_loop(scale):
    rng = np.random.default_rng(int(scale * 100))
    for n in (1, 2, 7, 100, 4096):
        x = (rng.standard_normal(n) * scale).astype(np.float32)
        for scaling in (np.float32(0.125), np.float32(0.0883883)):
            want = np.empty(n, np.float32)
            got = np.empty(n, np.float32)
            softmax_scalar(x, n, scaling, want)
            _softmax_into(x, n, scaling, got, np.empty(2 * n))
            np.testing.assert_array_equal(got, want)
            v = (x * scaling).astype(np.float64)  # the product is float32, as in the kernels' callers
            ref = np.exp(v - v.max())
            np.testing.assert_allclose(got, ref / ref.sum(), rtol=4e-7, atol=1e-44)


def test_softmax_of_a_huge_spread_underflows_to_zero_not_garbage():
    x = np.array([0.0, -5e3, -1e4, -1e6, 10.0], np.float32)
    got = np.empty(5, np.float32)
    _softmax_into(x, 5, np.float32(1.0), got, np.empty(10))
    want = np.empty(5, np.float32)
    softmax_scalar(x, 5, np.float32(1.0), want)
    np.testing.assert_array_equal(got, want)
    assert got[1:4].tolist() == [0, 0, 0] and abs(got[0] - np.exp(-10) / (1 + np.exp(-10))) < 1e-9


def test_count_rows_counts_the_true_cells():
    from workbench.kvcache.kernels import count_rows

    mask = np.random.default_rng(3).random((7, 5, 301)) < 0.4
    out = np.full(35, -1, np.int32)
    count_rows(mask.reshape(-1, 301), out)
    np.testing.assert_array_equal(out, [sum(bool(x) for x in row) for row in mask.reshape(-1, 301)])


def test_page_min_max_is_the_per_dimension_extreme_of_each_page():
    from workbench.kvcache.kernels import page_min_max

    keys = np.random.default_rng(4).standard_normal((70, 6)).astype(np.float32)  # 4 pages of 16 + 6 left over
    kmin, kmax = np.empty((4, 6), np.float32), np.empty((4, 6), np.float32)
    page_min_max(keys, 16, kmin, kmax)
    for j in range(4):
        np.testing.assert_array_equal(kmin[j], [min(keys[j * 16:(j + 1) * 16, d]) for d in range(6)])
        np.testing.assert_array_equal(kmax[j], [max(keys[j * 16:(j + 1) * 16, d]) for d in range(6)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quest_page_bounds_follow_the_definition(dtype):
    from workbench.kvcache.scores import quest_page_bounds

    rng = np.random.default_rng(5)
    h, g, t, d, n_pre, page = 2, 3, 37, 4, 30, 8
    queries = rng.standard_normal((h, g, t, d)).astype(dtype)
    keys = rng.standard_normal((h, t, d)).astype(dtype)
    got = quest_page_bounds(queries, keys, n_pre, page)
    assert got.shape == (h, t - n_pre, t // page)
    for hh in range(h):
        for s in range(t - n_pre):
            for j in range(t // page):
                pk = keys[hh, j * page:(j + 1) * page]
                want = max(sum(float(max(q * pk[:, c].min(), q * pk[:, c].max()))  # products in `dtype`
                               for c, q in enumerate(queries[hh, gg, n_pre + s]))
                           for gg in range(g))
                assert got[hh, s, j] == want  # the same products, summed in float64 in the same order
