"""Balance metrics against the torch reference and their defining cases: uniform routing gives a Switch loss of
exactly 1.0, global-batch vs sequence-level balancing, drop rate by position, and the errors bad inputs raise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.workbench.routing import reference as R
from workbench.errors import RoutingError
from workbench.routing import (
    balance_summary,
    capacity_topk,
    deepseek_v3,
    drop_rate_by_position,
    load_balancing_loss,
    load_cv,
    load_entropy,
    max_violation,
    router_z_loss,
    synthetic_trace,
)


def _uniform(n_tokens: int, n_experts: int, k: int):
    probs = np.full((n_tokens, n_experts), 1.0 / n_experts)
    assignments = (np.arange(n_tokens * k) % n_experts).reshape(n_tokens, k)
    return probs, assignments


@pytest.mark.parametrize("n_experts, k", [(2, 1), (4, 2), (8, 2), (8, 1), (16, 4), (64, 8)])
@pytest.mark.parametrize("scope", ["micro", "sequence", "global"])
def test_uniform_routing_gives_exactly_one(n_experts, k, scope):
    n = 4 * n_experts
    probs, assignments = _uniform(n, n_experts, k)
    seq = np.repeat(np.arange(2), n // 2)
    assert load_balancing_loss(probs, assignments, n_experts, scope=scope, sequence_ids=seq) == 1.0
    assert load_balancing_loss(np.zeros((n, n_experts)), assignments, from_logits=True, scope=scope) == 1.0


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.integers(1, 5))
def test_uniform_routing_is_one_for_any_size(n_experts, k, reps):
    probs, assignments = _uniform(n_experts * reps, n_experts, k)
    assert load_balancing_loss(probs, assignments) == pytest.approx(1.0, rel=1e-12)


def test_collapsed_routing_gives_n_experts():
    probs = np.tile([1.0, 0.0, 0.0, 0.0], (6, 1))
    assert load_balancing_loss(probs, np.zeros((6, 1), int)) == 4.0


@pytest.mark.parametrize("seed", range(4))
def test_loss_matches_reference_per_scope(seed):
    rng = np.random.default_rng(seed)
    n, e, k = 60, 8, 2
    logits = rng.normal(size=(n, e))
    probs = R.softmax(logits).numpy()
    a = capacity_topk(logits, k=k, capacity_factor=1.0).assignments  # some -1 (dropped) slots
    seq = np.sort(rng.integers(0, 5, n))
    seq[:3] = 0
    assert load_balancing_loss(probs, a, scope="global") == pytest.approx(R.switch_loss(probs, a), abs=1e-12)
    assert load_balancing_loss(logits, a, from_logits=True, scope="global") == pytest.approx(
        R.switch_loss(probs, a), abs=1e-12)
    per_seq = [R.switch_loss(probs[seq == s], a[seq == s]) for s in np.unique(seq)]
    assert load_balancing_loss(probs, a, scope="sequence", sequence_ids=seq) == pytest.approx(np.mean(per_seq))
    chunks = np.array_split(np.arange(n), 3)
    per_micro = [R.switch_loss(probs[c], a[c]) for c in chunks]
    assert load_balancing_loss(probs, a, scope="micro", micro_batches=3) == pytest.approx(np.mean(per_micro))
    # micro-batches of whole sequences
    order = list(dict.fromkeys(seq.tolist()))
    groups = [np.isin(seq, g) for g in np.array_split(order, 2)]
    want = np.mean([R.switch_loss(probs[g], a[g]) for g in groups])
    assert load_balancing_loss(probs, a, micro_batches=2, sequence_ids=seq) == pytest.approx(want)
    assert load_balancing_loss(probs, a, micro_batches=1) == load_balancing_loss(probs, a, scope="global")


def test_global_batch_balance_tolerates_specialised_sequences():
    # "Demons in the Detail": two sequences, each routed entirely to its own expert. Each sequence alone is
    # maximally unbalanced; over the global batch the load is perfectly balanced.
    probs = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)
    a = np.array([0] * 4 + [1] * 4)
    seq = np.array([0] * 4 + [1] * 4)
    assert load_balancing_loss(probs, a, scope="sequence", sequence_ids=seq) == 2.0
    assert load_balancing_loss(probs, a, scope="micro", micro_batches=2, sequence_ids=seq) == 2.0
    assert load_balancing_loss(probs, a, scope="global", sequence_ids=seq) == 1.0


def test_z_loss_matches_reference():
    assert router_z_loss([[0.0, 0.0]]) == pytest.approx(math.log(2) ** 2)
    x = np.random.default_rng(1).normal(size=(3, 20, 8)) * 5
    assert router_z_loss(x) == pytest.approx(R.z_loss(x), rel=1e-12)
    assert router_z_loss(torch.as_tensor(x[0])) == pytest.approx(R.z_loss(x[0]), rel=1e-6)


def test_load_spread_metrics():
    assert load_cv([2, 2, 2]) == 0.0 and load_cv([4, 0]) == 1.0
    assert max_violation([3, 1]) == 0.5 and max_violation([5, 5]) == 0.0
    assert load_entropy([1, 1, 1, 1]) == pytest.approx(1.0)
    assert load_entropy([1, 1], normalized=False) == pytest.approx(math.log(2))
    assert load_entropy([7, 0, 0]) == 0.0 and load_entropy([3]) == 1.0
    loads = np.array([5, 1, 0, 2])
    p = torch.tensor(loads / loads.sum())
    h = float(-(p[p > 0] * torch.log(p[p > 0])).sum())
    assert load_entropy(loads, normalized=False) == pytest.approx(h)
    assert load_entropy(loads) == pytest.approx(h / math.log(4))
    assert load_cv(loads) == pytest.approx(float(torch.tensor(loads, dtype=torch.float64).std(correction=0)) / 2.0)


def test_drop_rate_by_position():
    d = drop_rate_by_position([False, False, True, True], [0, 1, 2, 3], bins=2)
    assert d.rate.tolist() == [0.0, 1.0] and d.slots.tolist() == [2, 2] and "PositionDrops" in repr(d)
    d = drop_rate_by_position(np.array([[True, False], [False, False], [True, True]]), [0, 5, 9], bins=[0, 4, 8, 20])
    assert d.slots.tolist() == [2, 2, 2] and d.dropped.tolist() == [1, 0, 2]
    np.testing.assert_allclose(d.rate, [0.5, 0.0, 1.0])
    d = drop_rate_by_position([True, False], [0, 10], bins=[0, 2, 5, 11])
    assert np.isnan(d.rate[1]) and d.rate[0] == 1.0
    d = drop_rate_by_position([True, True], [0, 50], bins=[0, 10])  # 50 lies outside the edges
    assert d.slots.tolist() == [1]


def test_drop_rate_from_a_routing():
    tr = synthetic_trace(n_tokens=96, n_sequences=3, seed=2)
    r = capacity_topk(tr.layer(0), k=2, capacity_factor=0.6, drop_policy="position")
    d = drop_rate_by_position(r, tr.positions, bins=4)
    assert d.dropped.sum() == r.n_dropped and d.slots.sum() == r.k * r.n_tokens
    # with position priority the later tokens of the batch are the ones dropped
    late = drop_rate_by_position(r, np.arange(r.n_tokens), bins=2).rate
    assert late[1] > late[0]


def test_balance_summary():
    x = synthetic_trace(n_tokens=64, seed=1).layer(1)
    s = balance_summary(capacity_topk(x, k=2, capacity_factor=1.0))
    assert s.router == "capacity_topk" and s.load_balancing_loss >= 1.0 - 1e-9 and 0 < s.load_entropy <= 1
    s = balance_summary(deepseek_v3(x, k=2), scope="micro", micro_batches=2)
    assert s.drop_rate == 0.0 and s.mean_experts_per_token == 2.0


P = np.full((4, 2), 0.5)
A = np.array([[0], [1], [0], [1]])


@pytest.mark.parametrize("call, match", [
    (lambda: load_balancing_loss(np.array([[np.nan, 1.0]] * 4), A), "NaN"),
    (lambda: load_balancing_loss(-P, A), ">= 0"),
    (lambda: load_balancing_loss(np.zeros((0, 2)), A), "non-empty"),
    (lambda: load_balancing_loss(P, A[:3]), "4 tokens"),
    (lambda: load_balancing_loss(P, A + 5), r"\[0, 2\)"),
    (lambda: load_balancing_loss(P, A - 3), r"\[0, 2\)"),
    (lambda: load_balancing_loss(P, A.astype(float)), "integer"),
    (lambda: load_balancing_loss(P, A, n_experts=3), "n_experts=3"),
    (lambda: load_balancing_loss(P, A, scope="local"), "scope"),
    (lambda: load_balancing_loss(P, A, scope="sequence", sequence_ids=[0, 1]), "sequence_ids"),
    (lambda: load_balancing_loss(P, A, micro_batches=0), "micro_batches"),
    (lambda: load_balancing_loss(P, A, micro_batches=5), "micro_batches=5"),
    (lambda: load_balancing_loss(P, A, micro_batches=3, sequence_ids=[0, 0, 1, 1]), "sequences"),
    (lambda: router_z_loss(np.zeros((3, 0))), "non-empty"),
    (lambda: router_z_loss([[np.inf, 0.0]]), "NaN or infinite"),
    (lambda: load_cv([]), "one count per expert"),
    (lambda: load_cv([0, 0]), "every load is 0"),
    (lambda: max_violation([1, -1]), ">= 0"),
    (lambda: load_entropy([[1, 2]]), "1-D"),
    (lambda: drop_rate_by_position([True, False], [0, 1, 2]), "one entry per token"),
    (lambda: drop_rate_by_position([], []), "no tokens"),
    (lambda: drop_rate_by_position([True], [0], bins=0), "bins"),
    (lambda: drop_rate_by_position([True], [0], bins=[3, 1]), "increasing"),
    (lambda: drop_rate_by_position([True], [0], valid=[[True, False]]), "valid"),
])
def test_bad_inputs_raise_routing_error(call, match):
    with pytest.raises(RoutingError, match=match):
        call()


def test_transition_matrix_and_its_mutual_information():
    from workbench.routing.metrics import mutual_information, transition_matrix

    m = transition_matrix(np.array([0, 0, 1]), np.array([1, 1, -1]), 2)
    np.testing.assert_array_equal(m, [[0, 2, 0], [0, 0, 1], [0, 0, 0]])
    mi, h = mutual_information(np.array([[5, 0], [0, 5]]))
    assert mi == pytest.approx(1.0) and h == pytest.approx(1.0)  # the first expert fixes the second
    mi, h = mutual_information(np.array([[2, 2], [2, 2]]))
    assert mi == pytest.approx(0.0) and h == pytest.approx(1.0)  # independent
    assert mutual_information(np.zeros((2, 2))) == (0.0, 0.0)
