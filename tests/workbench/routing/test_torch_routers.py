"""The torch routers (`workbench.routing.torch_routers`) give exactly the numba path's decisions for every
router: on the shapes, seeds, k values and tie-heavy logits of test_routers, on larger batches (64 experts, k
up to 8, heavy dropping and rerouting), on CUDA when a GPU is present; `route(..., backend=...)` dispatches to
them; and they refuse bad input with the same `RoutingError`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.workbench.routing.test_routers import SHAPES, _configs, _logits, _with_bias
from workbench import backends
from workbench.errors import RoutingError
from workbench.routing import ROUTER_NAMES, kernels, route, routers
from workbench.routing import torch_routers as TR

EXACT = ("requested", "assignments", "kept", "dropped", "loads")


def assert_same(got, want, label: str) -> None:
    """``got`` (torch) == ``want`` (numba): decisions exactly, weights/probs to 1e-6, params and extras
    equal."""
    for key in EXACT:
        a, b = getattr(got, key), getattr(want, key)
        assert a.dtype == b.dtype and a.shape == b.shape, (
            f"{label}: {key} {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
        where = np.argwhere(a != b)
        assert where.size == 0, f"{label}: {key} differs at {len(where)} places, first {where[:5].tolist()}"
    np.testing.assert_allclose(got.weights, want.weights, rtol=0, atol=1e-6, err_msg=f"{label}: weights")
    np.testing.assert_allclose(got.probs, want.probs, rtol=0, atol=1e-6, err_msg=f"{label}: probs")
    assert got.weights.dtype == want.weights.dtype == np.float32 and got.probs.dtype == np.float32, label
    assert got.capacity == want.capacity and got.router == want.router, label
    assert got.params.keys() == want.params.keys(), label
    for key, value in want.params.items():
        np.testing.assert_array_equal(got.params[key], value, err_msg=f"{label}: params[{key!r}]")
    assert got.extra.keys() == want.extra.keys(), label
    for key, value in want.extra.items():
        np.testing.assert_array_equal(got.extra[key], value, err_msg=f"{label}: extra[{key!r}]")


def _check(x, name: str, params: dict, device=None) -> None:
    want = route(x, name, backend="numba", **params)
    got = route(x, name, backend="torch", device="cpu" if device is None else device, **params)
    assert_same(got, want, f"{name}{params}")


@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{t}x{e}" for t, e in SHAPES])
def test_torch_matches_numba_on_every_config(shape, ties):
    """Every router configuration of test_routers (k 1..3, every drop policy / overflow / group setting)."""
    for seed in range(2):
        x = _logits(shape, seed, ties)
        for name, params in _configs(shape[1]):
            _check(x, name, _with_bias(name, params, shape[1], seed))


def _big_configs(k: int, e: int) -> list[tuple[str, dict]]:
    out = [("topk_softmax", {"k": k}), ("topk_softmax", {"k": k, "renormalize": False})]
    for cf in (0.25, 1.0):
        out += [("capacity_topk", {"k": k, "capacity_factor": cf, "drop_policy": p})
                for p in ("position", "probability", "score")]
        out += [("capacity_aware", {"k": k, "capacity_factor": cf, "overflow": o, "drop_policy": p})
                for o in ("drop", "reroute") for p in ("score", "position", "probability")]
        out += [("expert_choice", {"k": k, "capacity_factor": cf})]
    out += [("capacity_aware", {"k": k, "capacity": 1, "overflow": "reroute"}),
            ("deepseek_v3", {"k": k, "n_groups": 8, "topk_groups": 4, "route_scale": 2.5}),
            ("deepseek_v3", {"k": k, "n_groups": 4, "topk_groups": 4, "normalize": False}),
            ("null_experts", {"k": k, "n_null": 4, "null_logit": 0.5}),
            ("grouped_topk", {"k": 8, "n_groups": 4, "renormalize": True})]
    if k == 1:
        out += [("switch_top1", {"capacity_factor": cf, "drop_policy": p}) for cf in (0.5, 1.0)
                for p in ("position", "probability", "score")]
    return out


@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("k", [1, 2, 8])
def test_torch_matches_numba_on_larger_batches(k, ties):
    """600 tokens x 64 experts: many equal logits per token (ties), capacities that drop most slots, rerouting
    that fills every expert."""
    x = _logits((600, 64), 10 + k, ties)
    for name, params in _big_configs(k, 64):
        if name == "deepseek_v3":
            params = dict(params, bias=np.random.default_rng(k).normal(scale=0.05, size=64))
        _check(x, name, params)


def test_torch_matches_numba_on_permuted_and_repeated_tokens():
    """Tokens that are permutations of each other tie exactly on both paths; the earlier token wins."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=(5, 16)).astype(np.float32)
    x = np.concatenate([base[:, rng.permutation(16)] for _ in range(20)])
    for name, params in [("capacity_topk", {"k": 2, "capacity": 3, "drop_policy": "probability"}),
                         ("capacity_topk", {"k": 2, "capacity": 3, "drop_policy": "score"}),
                         ("capacity_aware", {"k": 3, "capacity": 4, "overflow": "reroute"}),
                         ("expert_choice", {"k": 2, "capacity": 7})]:
        _check(x, name, params)


def test_route_backend_dispatch(monkeypatch):
    x = _logits((23, 6), 1, True)
    for name in ROUTER_NAMES:
        assert_same(route(x, name, backend="torch"), route(x, name, backend="numba"), name)
    # "auto" is numba without a GPU and torch with one
    calls = []
    real = TR.ROUTERS["capacity_topk"]
    monkeypatch.setitem(TR.ROUTERS, "capacity_topk", lambda x, p: calls.append(p) or real(x, p))
    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    route(x, "capacity_topk", k=2)
    routers.capacity_topk(x, k=2, backend="numba")
    assert calls == []
    monkeypatch.setattr(backends, "cuda_available", lambda: True)
    r = route(x, "capacity_topk", k=2, capacity_factor=0.5, drop_policy="score", device="cpu")
    # the torch executor gets the parameters checked and resolved once, by the dispatch
    assert len(calls) == 1 and calls[0]["drop_policy"] == "score" and calls[0]["capacity_factor"] == 0.5
    assert calls[0]["capacity"] == r.capacity
    want = routers.capacity_topk(x, k=2, capacity_factor=0.5, drop_policy="score", backend="numba")
    assert_same(r, want, "auto")


def test_bad_backend_raises_routing_error():
    with pytest.raises(RoutingError, match="backend"):
        route(np.zeros((2, 2)), "topk_softmax", backend="jax")
    with pytest.raises(RoutingError, match="backend"):
        routers.expert_choice(np.zeros((2, 2)), backend="cuda")


X = np.zeros((4, 4), np.float32)


@pytest.mark.parametrize("name, logits, params, match", [
    ("topk_softmax", np.array([[0.0, np.nan]]), {}, "NaN"),
    ("topk_softmax", torch.tensor([[0.0, float("inf")]]), {}, "infinite"),
    ("topk_softmax", torch.zeros((0, 4)), {}, "empty batch"),
    ("topk_softmax", torch.zeros(4), {}, "2-D"),
    ("topk_softmax", X, {"k": 5}, "k=5"),
    ("capacity_topk", X, {"capacity_factor": 0}, "capacity_factor"),
    ("capacity_topk", X, {"drop_policy": "random"}, "drop_policy"),
    ("capacity_aware", X, {"overflow": "spill"}, "overflow"),
    ("switch_top1", X, {"capacity": 0}, "capacity=0"),
    ("expert_choice", X, {"k": 9}, "k=9"),
    ("deepseek_v3", X, {"bias": np.zeros(3)}, "bias must have shape"),
    ("deepseek_v3", X, {"n_groups": 3}, "equal groups"),
    ("deepseek_v3", X, {"k": 3, "n_groups": 2, "topk_groups": 1}, "eligible"),
    ("null_experts", X, {"null_logit": [0.0, 1.0]}, "null_logit"),
    ("grouped_topk", X, {"k": 3, "n_groups": 2}, "must divide"),
])
def test_torch_refuses_what_numba_refuses(name, logits, params, match):
    with pytest.raises(RoutingError, match=match):
        route(logits, name, backend="numba", **params)
    with pytest.raises(RoutingError, match=match):
        route(logits, name, backend="torch", **params)


def test_torch_tensor_input():
    x = torch.randn(33, 8, dtype=torch.bfloat16, requires_grad=True)
    for name, params in [("capacity_aware", {"k": 2, "overflow": "reroute", "capacity_factor": 0.5}),
                         ("expert_choice", {"k": 2}),
                         ("deepseek_v3", {"k": 2, "n_groups": 4, "topk_groups": 2})]:
        want = route(x, name, backend="numba", **params)
        assert_same(route(x, name, backend="torch", **params), want, name)


# --------------------------------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("k", [1, 2, 3, 4, 6, 8])
def test_top_mask_and_topk_indices_take_ties_in_index_order(k):
    rng = np.random.default_rng(k)
    x = rng.integers(0, 4, size=(50, 8)).astype(np.float64)
    want = np.array([sorted(range(8), key=lambda i, r=r: (-r[i], i))[:k] for r in x])
    # ties="lowest_index" (the reroute's rule); the default is torch.topk's CPU order, as the numba kernel
    got = TR.topk_indices(torch.from_numpy(x), k, ties="lowest_index").numpy()
    np.testing.assert_array_equal(got, want)
    torch_order = TR.topk_indices(torch.from_numpy(x), k).numpy()
    np.testing.assert_array_equal(torch_order, torch.topk(torch.from_numpy(x), k).indices.numpy())
    np.testing.assert_array_equal(torch_order, kernels.topk_rows(x, k))
    mask = TR.top_mask(torch.from_numpy(x), k).numpy()
    assert (mask.sum(axis=1) == k).all()
    picked = np.argwhere(mask)[:, 1].reshape(50, k)
    np.testing.assert_array_equal(np.sort(picked, axis=1), np.sort(want, axis=1))
    cols = TR.top_mask(torch.from_numpy(x), k, dim=0).numpy()  # along the tokens: ties to the earlier one
    want_cols = np.zeros_like(cols)
    for e in range(8):
        want_cols[sorted(range(50), key=lambda t, e=e: (-x[t, e], t))[:k], e] = True
    np.testing.assert_array_equal(cols, want_cols)


def test_rank_in_group():
    keys = torch.tensor([2, 0, 2, 2, 0, 1])
    assert TR._rank_in_group(keys, 3).tolist() == [0, 0, 1, 2, 1, 0]


@pytest.mark.parametrize("c", [1, 2, 5, 99, 100])
def test_kth_largest_kernel(c):
    rng = np.random.default_rng(c)
    col = np.concatenate([rng.normal(size=60), rng.integers(-2, 3, size=36).astype(float),
                          [0.0, -0.0, 1e-310, -1e-310]])
    n = col.size
    got = kernels.kth_largest(col, c, np.empty(n, np.int64), np.empty(65536, np.int64), np.empty(n))
    assert got == np.sort(col)[::-1][c - 1]
    for kth in (0, c - 1, n - c, n - 1):
        a = col.copy()
        assert kernels.nth_smallest(a, n, kth) == np.sort(col)[kth]
        assert sorted(a.tolist()) == sorted(col.tolist())  # only reordered
    same = np.full(50, 0.25)
    assert kernels.nth_smallest(same, 50, 17) == 0.25


# --------------------------------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
def test_torch_on_cuda_matches_numba(ties):
    if not torch.cuda.is_available():  # the gpu marker skips this already (tests/conftest.py)
        pytest.skip("needs a CUDA GPU; none is available here")
    for shape in SHAPES[2:]:
        x = _logits(shape, 0, ties)
        for name, params in _configs(shape[1]):
            _check(x, name, _with_bias(name, params, shape[1], 1), device="cuda")
    for k in (1, 2, 8):
        x = _logits((4096, 64), k, ties)
        for name, params in _big_configs(k, 64):
            if name == "deepseek_v3":
                params = dict(params, bias=np.random.default_rng(k).normal(scale=0.05, size=64))
            _check(x, name, params, device="cuda")
    # a tensor already on the GPU, and backend="auto" choosing torch
    xt = torch.from_numpy(_logits((512, 16), 5, ties)).cuda()
    want = route(xt.cpu(), "capacity_aware", k=2, overflow="reroute", backend="numba")
    assert_same(route(xt, "capacity_aware", k=2, overflow="reroute"), want, "auto on cuda")
