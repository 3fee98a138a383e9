"""Every router against the slow torch reference (tests/workbench/routing/reference.py) on random and tie-heavy
logits, the invariants the routers promise (capacity, balance, bias updates), and the errors bad inputs raise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.workbench.routing import reference as R
from workbench.errors import RoutingError, WorkbenchError
from workbench.routing import (
    ROUTER_NAMES,
    capacity_aware,
    capacity_for,
    capacity_topk,
    deepseek_v3,
    expert_choice,
    grouped_topk,
    max_violation,
    null_experts,
    route,
    switch_top1,
    topk_softmax,
    update_bias,
)

SHAPES = [(1, 1), (1, 4), (5, 4), (17, 8), (40, 16), (23, 6)]


def _logits(shape, seed: int, ties: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: ties inside tokens and whole tied (or permuted) tokens
        return rng.integers(-2, 3, size=shape).astype(np.float32)
    return rng.normal(size=shape).astype(np.float32)


def _configs(n_experts: int) -> list[tuple[str, dict]]:
    e = n_experts
    out = []
    for k in (1, 2, 3):
        out += [("topk_softmax", {"k": k, "renormalize": r}) for r in (True, False)]
        for policy in ("position", "probability", "score"):
            out += [("capacity_topk", {"k": k, "capacity_factor": cf, "drop_policy": policy}) for cf in (0.5, 1.0, 1.25)]
        out += [("capacity_topk", {"k": k, "capacity": 2, "renormalize": False})]
        for overflow in ("drop", "reroute"):
            out += [("capacity_aware", {"k": k, "capacity_factor": cf, "overflow": overflow}) for cf in (0.5, 1.0)]
            out += [("capacity_aware", {"k": k, "capacity_factor": 0.7, "overflow": overflow,
                                        "drop_policy": "position", "renormalize": False})]
        out += [("expert_choice", {"k": k, "capacity_factor": cf}) for cf in (0.5, 1.0, 2.0)]
        out += [("null_experts", {"k": k, "n_null": m, "null_logit": nl}) for m in (1, 3) for nl in (0.0, 0.8)]
        out += [("null_experts", {"k": k, "n_null": 2, "null_logit": [0.3, -0.2], "renormalize": False})]
        for g in (1, 2, 4):
            for tg in (1, 2):
                if e % g == 0 and tg <= g and k <= tg * (e // g):
                    out += [("deepseek_v3", {"k": k, "n_groups": g, "topk_groups": tg, "route_scale": 2.5})]
    out += [("deepseek_v3", {"k": 1, "normalize": False})]
    out += [("switch_top1", {}), ("switch_top1", {"capacity_factor": 1.0}),
            ("switch_top1", {"capacity_factor": 0.5, "drop_policy": "probability"})]
    for g in (1, 2, 4):
        for k in (g, 2 * g):
            if e % g == 0 and k <= e:
                out += [("grouped_topk", {"k": k, "n_groups": g, "renormalize": r}) for r in (False, True)]
    ok = []
    for name, params in out:
        real = e + params.get("n_null", 0)
        if params.get("k", 1) <= real:
            ok.append((name, params))
    return ok


def _with_bias(name, params, n_experts, seed):
    if name == "deepseek_v3" and seed % 2:
        params = dict(params, bias=np.random.default_rng(seed).normal(scale=0.3, size=n_experts))
    return params


def _compare(got, want, label):
    for key in ("requested", "assignments", "kept", "dropped", "loads"):
        np.testing.assert_array_equal(getattr(got, key), want[key], err_msg=f"{label}: {key}")
    np.testing.assert_allclose(got.weights, want["weights"], atol=1e-6, err_msg=f"{label}: weights")
    np.testing.assert_allclose(got.probs, want["probs"].numpy(), atol=1e-6, err_msg=f"{label}: probs")
    assert got.capacity == want["capacity"], label


@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{t}x{e}" for t, e in SHAPES])
def test_routers_match_reference(shape, ties):
    for seed in range(2):
        x = _logits(shape, seed, ties)
        for name, params in _configs(shape[1]):
            params = _with_bias(name, params, shape[1], seed)
            label = f"{name}{params} seed={seed}"
            _compare(route(x, name, **params), R.ROUTERS[name](x, **params), label)


def test_every_router_is_covered_by_the_reference():
    assert set(ROUTER_NAMES) == set(R.ROUTERS)
    assert {name for name, _ in _configs(8)} == set(ROUTER_NAMES)


def test_ties_go_as_torch_topk_and_to_the_earlier_token():
    # top-k ties: torch.topk's CPU order (was: the lower expert index, [0, 1] here)
    x = np.zeros((4, 4), np.float32)
    r = topk_softmax(x, k=2)
    assert (r.assignments == torch.topk(torch.zeros(4), 2).indices.numpy()).all()
    assert (r.assignments == [2, 3]).all()
    r = capacity_topk(x, k=1, capacity=1, drop_policy="probability")
    assert r.kept[:, 0].tolist() == [True, False, False, False]
    r = capacity_topk(x, k=1, capacity=1, drop_policy="score")
    assert r.kept[:, 0].tolist() == [True, False, False, False]
    r = expert_choice(x, capacity=1)
    assert r.assignments[0].tolist() == [0, 1, 2, 3] and (r.assignments[1:] == -1).all()
    # permuted rows tie exactly after softmax, so the earlier token wins
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float32)
    r = capacity_topk(y, k=1, capacity=1, drop_policy="probability")
    assert r.kept[:, 0].tolist() == [True, True, True, False]


def test_docstring_examples():
    r = capacity_topk(np.array([[2., 1., 0.], [2., 0., 1.], [2., 1., 0.]]), k=1, capacity_factor=1.0)
    assert r.assignments.ravel().tolist() == [0, -1, -1] and r.loads.tolist() == [1, 0, 0] and r.capacity == 1
    assert r.dropped[:, 0].tolist() == [False, True, True] and r.drop_rate == pytest.approx(2 / 3)
    np.testing.assert_allclose(topk_softmax([[0, np.log(3), 0]], k=1, renormalize=False).weights, [[0.6]])
    np.testing.assert_allclose(switch_top1([[0, np.log(3)]]).weights, [[0.75]])
    assert capacity_aware([[2, 1, 0], [2, 1, 0]], k=1, capacity=1, overflow="reroute").assignments.ravel().tolist() == [0, 1]
    r = expert_choice([[1, 0], [0, 1], [2, 0]], k=1, capacity=1)
    assert r.assignments.ravel().tolist() == [-1, 1, 0] and r.extra["tokens_without_expert"] == 1
    r = deepseek_v3([[0, 0, 0, 0]], k=1, bias=[0, 0, 1, 0])
    assert r.assignments.tolist() == [[2]] and r.weights.tolist() == [[1.0]]
    np.testing.assert_allclose(update_bias([0, 0, 0], [5, 1, 0], 0.1), [-0.1, 0.1, 0.1])
    assert null_experts([[1, -5]], k=2).assignments.tolist() == [[0, -1]]
    assert grouped_topk([[3, 2, 1, 0]], k=2).assignments.tolist() == [[0, 2]]
    assert capacity_for(10, 4, 2, 1.25) == 7 and capacity_for(10, 1, 1, 1.1) == 11


def test_routing_views():
    r = capacity_topk(_logits((12, 4), 0, False), k=2, capacity_factor=1.0)
    dense = r.dense_weights()
    assert dense.shape == (12, 4)
    np.testing.assert_allclose(dense.sum(axis=1), r.weights.sum(axis=1), atol=1e-6)
    assert ((dense > 0).sum(axis=0) == r.loads).all()
    assert (r.experts_per_token == r.kept.sum(axis=1)).all()
    assert "capacity_topk" in repr(r) and "capacity 6" in repr(r)


def test_weights_are_normalised():
    x = _logits((30, 8), 3, False)
    np.testing.assert_allclose(topk_softmax(x, k=3).weights.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(deepseek_v3(x, k=3, route_scale=2.5).weights.sum(axis=1), 2.5, rtol=1e-6)
    r = null_experts(x, k=3, n_null=2)
    assert (r.weights.sum(axis=1) <= 1.0 + 1e-6).all()


def test_torch_tensor_input():
    x = torch.randn(9, 6, dtype=torch.bfloat16, requires_grad=True)
    r = topk_softmax(x, k=2)
    want = R.topk_softmax(x.detach().float().numpy(), k=2)
    np.testing.assert_array_equal(r.assignments, want["assignments"])


# --------------------------------------------------------------------------------------------------- invariants

small_logits = st.tuples(st.integers(1, 24), st.integers(1, 8), st.integers(0, 2**16), st.booleans())


@settings(max_examples=40, deadline=None)
@given(small_logits, st.integers(1, 3), st.sampled_from([0.25, 0.5, 1.0, 1.5]),
       st.sampled_from(["position", "probability", "score"]), st.sampled_from(["drop", "reroute"]))
def test_no_expert_exceeds_capacity(spec, k, cf, policy, overflow):
    n, e, seed, ties = spec
    k = min(k, e)
    x = _logits((n, e), seed, ties)
    for r in (capacity_topk(x, k, capacity_factor=cf, drop_policy=policy),
              capacity_aware(x, k, capacity_factor=cf, drop_policy=policy, overflow=overflow),
              switch_top1(x, capacity_factor=cf, drop_policy=policy)):
        assert r.capacity == capacity_for(n, e, r.k, cf)
        assert (r.loads <= r.capacity).all()
        assert r.loads.sum() == r.kept.sum()
        np.testing.assert_array_equal(np.bincount(r.assignments[r.kept], minlength=e), r.loads)
        assert ((r.assignments >= 0) == r.kept).all() and (r.weights[~r.kept] == 0).all()
        for row in r.assignments:  # an expert serves a token at most once
            used = row[row >= 0]
            assert len(set(used.tolist())) == used.size
    dropped = capacity_aware(x, k, capacity_factor=cf, drop_policy=policy).n_dropped
    rerouted = capacity_aware(x, k, capacity_factor=cf, drop_policy=policy, overflow="reroute")
    assert rerouted.n_dropped <= dropped
    assert rerouted.extra["rerouted"] == dropped - rerouted.n_dropped


@settings(max_examples=40, deadline=None)
@given(small_logits, st.integers(1, 3), st.sampled_from([0.3, 1.0, 2.0, 50.0]))
def test_expert_choice_loads_equal_capacity(spec, k, cf):
    n, e, seed, ties = spec
    k = min(k, e)
    r = expert_choice(_logits((n, e), seed, ties), k=k, capacity_factor=cf)
    assert r.capacity == min(n, capacity_for(n, e, k, cf))
    assert (r.loads == r.capacity).all()
    assert r.kept.sum() == r.capacity * e
    assert r.n_dropped == 0


@settings(max_examples=30, deadline=None)
@given(small_logits, st.sampled_from([(2, 2), (2, 4), (4, 4), (1, 3)]))
def test_grouped_topk_balances_groups(spec, groups_k):
    n, _, seed, ties = spec
    g, k = groups_k
    e = 8 if g != 1 else 5
    r = grouped_topk(_logits((n, e), seed, ties), k=k, n_groups=g)
    per_group = r.loads.reshape(g, -1).sum(axis=1)
    assert (per_group == n * k // g).all()
    for row in r.assignments:  # k / g experts inside every group
        assert (np.bincount(row // (e // g), minlength=g) == k // g).all()


def test_group_limited_routing_stays_inside_the_best_groups():
    x = _logits((50, 16), 4, False)
    r = deepseek_v3(x, k=4, n_groups=4, topk_groups=2)
    assert all(len(set((row // 4).tolist())) <= 2 for row in r.assignments)


def test_null_experts_adapt_the_number_of_real_experts():
    x = _logits((200, 8), 5, False)
    low = null_experts(x, k=4, n_null=4, null_logit=-10.0)
    mid = null_experts(x, k=4, n_null=4, null_logit=0.5)
    high = null_experts(x, k=4, n_null=4, null_logit=10.0)
    assert low.extra["mean_real_experts"] == 4.0 and high.extra["mean_real_experts"] == 0.0
    assert 0.0 < mid.extra["mean_real_experts"] < 4.0
    assert mid.extra["mean_real_experts"] == pytest.approx(mid.experts_per_token.mean())
    assert len(set(mid.experts_per_token.tolist())) > 1  # the count adapts per token
    assert (mid.weights[mid.extra["null_slots"]] == 0).all() and mid.n_dropped == 0


def test_bias_update_moves_loads_toward_balance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)) + np.linspace(2.0, 0.0, 8)  # expert 0 strongly preferred
    bias = np.zeros(8)
    vios = []
    for _ in range(30):
        r = deepseek_v3(x, k=2, bias=bias)
        vios.append(max_violation(r.loads))
        bias = update_bias(bias, r.loads, rate=0.02)
    assert vios[-1] < 0.3 * vios[0]
    assert min(vios[-5:]) < vios[0] / 4
    # overloaded experts were pushed down, underloaded ones up
    assert bias[0] < 0 < bias[-1]


# --------------------------------------------------------------------------------------------------- bad inputs

X = np.zeros((4, 4), np.float32)


@pytest.mark.parametrize("call, match", [
    (lambda: topk_softmax(np.array([[0.0, np.nan]])), "NaN"),
    (lambda: topk_softmax(np.array([[0.0, np.inf]])), "infinite"),
    (lambda: topk_softmax(np.zeros((0, 4))), "empty batch"),
    (lambda: topk_softmax(np.zeros((3, 0))), "0 experts"),
    (lambda: topk_softmax(np.zeros((2, 3, 4))), "2-D"),
    (lambda: topk_softmax(np.zeros(4)), "2-D"),
    (lambda: topk_softmax([["a", "b"]]), "numeric"),
    (lambda: topk_softmax(X, k=0), "k=0"),
    (lambda: topk_softmax(X, k=5), "k=5"),
    (lambda: topk_softmax(X, k=1.5), "integer"),
    (lambda: topk_softmax(X, k=True), "integer"),
    (lambda: capacity_topk(X, capacity_factor=0), "capacity_factor"),
    (lambda: capacity_topk(X, capacity_factor=-1.0), "capacity_factor"),
    (lambda: capacity_topk(X, capacity_factor=float("nan")), "capacity_factor"),
    (lambda: capacity_topk(X, capacity_factor="big"), "capacity_factor"),
    (lambda: capacity_topk(X, capacity=0), "capacity=0"),
    (lambda: capacity_topk(X, drop_policy="random"), "drop_policy"),
    (lambda: switch_top1(X, capacity_factor=0.0), "capacity_factor"),
    (lambda: capacity_aware(X, overflow="spill"), "overflow"),
    (lambda: expert_choice(X, capacity_factor=0), "capacity_factor"),
    (lambda: expert_choice(X, k=9), "k=9"),
    (lambda: deepseek_v3(X, bias=np.zeros(3)), "bias must have shape"),
    (lambda: deepseek_v3(X, bias=[0, 0, np.nan, 0]), "bias contains NaN"),
    (lambda: deepseek_v3(X, n_groups=3), "equal groups"),
    (lambda: deepseek_v3(X, n_groups=2, topk_groups=3), "topk_groups=3"),
    (lambda: deepseek_v3(X, k=3, n_groups=2, topk_groups=1), "eligible"),
    (lambda: deepseek_v3(X, route_scale=0), "route_scale"),
    (lambda: update_bias(np.zeros(3), np.zeros(4)), "bias must have shape"),
    (lambda: update_bias(np.zeros(4), np.zeros((2, 2))), "loads"),
    (lambda: update_bias(np.zeros(4), np.ones(4), rate=0), "rate"),
    (lambda: null_experts(X, n_null=0), "n_null=0"),
    (lambda: null_experts(X, k=6, n_null=1), "k=6"),
    (lambda: null_experts(X, n_null=2, null_logit=[0.0, 1.0, 2.0]), "null_logit"),
    (lambda: null_experts(X, null_logit=np.nan), "null_logit"),
    (lambda: grouped_topk(X, k=3, n_groups=2), "must divide"),
    (lambda: grouped_topk(np.zeros((2, 6)), k=2, n_groups=4), "must divide"),
    (lambda: route(X, "hash"), "unknown router"),
    (lambda: route(X, "topk_softmax", capacity_factor=1.0), "does not take"),
])
def test_bad_inputs_raise_routing_error(call, match):
    with pytest.raises(RoutingError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError) and isinstance(info.value, WorkbenchError)


def test_routing_derived_views():
    """What the MoE views draw is computed on `Routing`: first serving expert, served mask, drops per expert."""
    from workbench.routing import capacity_topk

    r = capacity_topk(np.array([[2., 1., 0.], [2., 0., 1.], [2., 1., 0.]]), k=2, capacity=1)
    # slot order "position": every first choice (expert 0) before any second; expert 0 takes token 0 only,
    # then the second choices: token 0 -> 1, token 1 -> 2, token 2 -> 1 (full: dropped)
    assert r.assignments.tolist() == [[0, 1], [-1, 2], [-1, -1]]
    assert r.first_experts().tolist() == [0, 2, -1]
    assert r.served_mask().tolist() == [[True, True, False], [False, False, True], [False, False, False]]
    assert r.drops_per_expert().tolist() == [2, 1, 0] and r.drops_per_expert().sum() == r.n_dropped
