"""Sequoia's DP (`workbench.speculative.sequoia`): brute force over all trees, the readable reference, the tree
expectation, and the hardware-aware choice of budget and depth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.workbench.speculative import sequoia_reference as R
from workbench.errors import SpeculativeError
from workbench.speculative.sequoia import (
    SequoiaPlan,
    choose_budget,
    expected_accepted,
    positional_from_conditional,
    sequoia_plan,
    sequoia_table,
    sibling_ranks,
    warm_up,
)

ACCEPTANCES = [
    [0.8],
    [0.5, 0.3],
    [0.6, 0.2, 0.1],
    [0.3, 0.25, 0.2, 0.15],
    [0.9, 0.05, 0.05],
    [0.4, 0.0, 0.3],          # a zero in the middle: Sequoia's 0 * -inf case
    [0.0, 0.0],
    [1.0, 0.0],
]


# -- brute force -----------------------------------------------------------------------------------------------
def forests(size: int, depth: int, width: int, room: int | None = None):
    """Every ordered forest of `size` nodes, at most `room` (default `width`) trees, each at most `depth` deep
    and no node with more than `width` children, as nested tuples (a tree is the tuple of its children's
    trees)."""
    room = width if room is None else room
    if size == 0:
        yield ()
        return
    if depth == 0 or room == 0:
        return
    for first in range(1, size + 1):
        for children in forests(first - 1, depth - 1, width):
            for rest in forests(size - first, depth, width, room - 1):
                yield (children,) + rest


def forest_value(forest, acc, reach=1.0) -> float:
    total = 0.0
    for rank, children in enumerate(forest):
        r = reach * acc[rank]
        total += r + forest_value(children, acc, r)
    return total


def brute_force_best(acc, budget: int, depth: int) -> float:
    return 1.0 + max(forest_value(f, acc) for n in range(budget + 1) for f in forests(n, depth, len(acc)))


def test_forest_enumeration_counts_catalan():
    # ordered trees with n + 1 nodes (the root and n below it): Catalan(n)
    for n in range(7):
        assert sum(1 for _ in forests(n, n, n)) == math.comb(2 * n, n) // (n + 1)
    # binary trees of depth <= 2 below the root: at most 6 nodes, one shape of 6
    assert sum(1 for _ in forests(6, 2, 2)) == 1 and sum(1 for _ in forests(7, 2, 2)) == 0


@pytest.mark.parametrize("acc", ACCEPTANCES)
@pytest.mark.parametrize("budget", [1, 2, 3, 5, 7])
def test_dp_equals_brute_force(acc, budget):
    for depth in sorted({1, 2, 3, budget}):
        if depth > budget:
            continue
        plan = sequoia_plan(acc, budget, depth)
        assert plan.expected == pytest.approx(brute_force_best(acc, budget, depth), abs=1e-12)
        # the tree it returns is a valid tree within the limits and is worth what it says
        assert plan.size <= budget
        if plan.size:
            assert plan.depth.max() <= depth
            assert np.bincount(plan.parents + 1).max() <= len(acc)
            assert np.all(plan.parents < np.arange(plan.size))
        assert expected_accepted(plan.parents, plan.ranks, acc) == pytest.approx(plan.expected, abs=1e-12)
        assert np.array_equal(plan.ranks, sibling_ranks(plan.parents))


def test_chain_example_and_capacity():
    plan = sequoia_plan([0.8], 3)
    assert plan.parents.tolist() == [-1, 0, 1] and plan.ranks.tolist() == [0, 0, 0]
    assert plan.expected == pytest.approx(1 + 0.8 + 0.64 + 0.512)
    # width 1 and depth 3 hold 3 nodes: a budget of 5 gives the 3-node chain
    plan = sequoia_plan([0.8], 5, 3)
    assert plan.size == 3 and plan.summary()["nodes"] == 3
    # width 2 and depth 2 hold 6 nodes
    assert sequoia_plan([0.5, 0.3], 10, 2).size == 6


def test_wide_vector_prefers_breadth():
    plan = sequoia_plan([0.3, 0.3, 0.3, 0.05], 3, 3)
    assert plan.parents.tolist() == [-1, -1, -1]  # three root children beat a chain at 0.3
    assert plan.summary()["root_children"] == 3


# -- the Numba DP equals the readable reference -----------------------------------------------------------------
def _random_vector(rng, w):
    kind = rng.integers(3)
    if kind == 0:
        return rng.dirichlet(np.ones(w + 1))[:w]
    if kind == 1:
        return np.sort(rng.uniform(0, 1, w))[::-1] / w
    v = rng.uniform(0, 1, w)
    v[rng.uniform(size=w) < 0.3] = 0.0
    return v


def test_numba_dp_equals_reference_on_random_vectors():
    rng = np.random.default_rng(7)
    for _ in range(40):
        w = int(rng.integers(1, 9))
        acc = _random_vector(rng, w)
        budget = int(rng.integers(1, 30))
        depth = int(rng.integers(1, min(budget, 8) + 1))
        p = [0.0] + acc.tolist()
        T, best, best_b, choice_y = sequoia_table(p, budget + 1, depth + 1)
        T_ref, best_ref, y_ref = R.sequoia_table_reference(p, budget + 1, depth + 1)
        assert np.array_equal(T, np.array(T_ref))          # same table, bit for bit, -inf included
        assert np.array_equal(best, np.array(best_ref))
        assert np.array_equal(choice_y, np.array(y_ref))
        assert all(best_b[m, lv] == R.first_argmax(T_ref[m][lv])
                   for m in range(budget + 2) for lv in range(depth + 2))
        plan = sequoia_plan(acc, budget, depth)
        parents, ranks, expected = R.sequoia_plan_reference(acc, budget, depth)
        assert plan.parents.tolist() == parents and plan.ranks.tolist() == ranks
        assert plan.expected == expected
        assert np.array_equal(plan.table, np.array(T_ref))


def test_plan_table_layout_and_best_by_size():
    acc = [0.6, 0.2]
    plan = sequoia_plan(acc, 6, 3)
    assert isinstance(plan, SequoiaPlan)
    assert plan.table.shape == (8, 5, 3)          # [budget + 2, max_depth + 2, W + 1]
    by_size = plan.best_by_size()
    assert by_size.shape == (7, 4)
    assert by_size[0, 0] == 1.0 and by_size[6, 3] == plan.expected
    for n in range(1, 7):
        assert by_size[n, 3] == pytest.approx(brute_force_best(acc, n, 3))
    warm_up()


# -- expected_accepted ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("a", [0.0, 0.3, 0.7, 0.95, 1.0])
@pytest.mark.parametrize("g", [1, 4, 9])
def test_chain_formula(a, g):
    parents = np.arange(-1, g - 1)
    expected = g + 1 if a == 1.0 else (1 - a ** (g + 1)) / (1 - a)
    assert expected_accepted(parents, np.zeros(g, int), [a]) == pytest.approx(expected, rel=1e-12)
    assert expected_accepted(parents, None, [a]) == pytest.approx(expected, rel=1e-12)


def test_expected_accepted_matches_monte_carlo():
    """Simulate positional acceptance: at every accepted node the target accepts its rank-i child with
    probability p[i] (at most one child), i.e. it walks the children in order and accepts each with the
    conditional probability p[i] / (1 - p[0] - ... - p[i-1])."""
    acc = np.array([0.5, 0.25, 0.15])
    parents = np.array([-1, -1, -1, 0, 0, 1, 3, 3, 6])
    ranks = sibling_ranks(parents)
    kids = {p: [i for i in range(len(parents)) if parents[i] == p] for p in range(-1, len(parents))}
    rng = np.random.default_rng(0)
    n_sims = 40_000
    total = 0
    for _ in range(n_sims):
        node, tokens = -1, 1                 # the bonus token always comes
        while True:
            left, nxt = 1.0, None
            for child in kids[node]:
                cond = acc[ranks[child]] / left
                if rng.random() < cond:
                    nxt = child
                    break
                left -= acc[ranks[child]]
            if nxt is None:
                break
            node, tokens = nxt, tokens + 1
        total += tokens
    exact = expected_accepted(parents, ranks, acc)
    assert total / n_sims == pytest.approx(exact, abs=0.02)
    # the formula by hand: 1 + sum of path products
    # nodes 0-2: 0.5, 0.25, 0.15; 3, 4 under 0: 0.5 * (0.5, 0.25); 5 under 1: 0.25 * 0.5;
    # 6, 7 under 3: 0.25 * (0.5, 0.25); 8 under 6: 0.125 * 0.5
    assert exact == pytest.approx(1 + 0.5 + 0.25 + 0.15 + 0.25 + 0.125 + 0.125 + 0.125 + 0.0625 + 0.0625)


def test_expected_accepted_with_a_medusa_matrix():
    acc = np.array([[0.6, 0.2], [0.5, 0.1]])
    assert expected_accepted([-1, -1, 0], [0, 1, 0], acc) == pytest.approx(1 + 0.6 + 0.2 + 0.3)
    assert expected_accepted([], [], [0.5]) == 1.0
    with pytest.raises(SpeculativeError, match="depth rows"):
        expected_accepted([-1, 0, 1], [0, 0, 0], acc)
    with pytest.raises(SpeculativeError, match="rank"):
        expected_accepted([-1, -1, -1], [0, 1, 2], [0.5, 0.2])
    with pytest.raises(SpeculativeError):
        expected_accepted([-1, 0], [0, -1], [0.5])
    with pytest.raises(SpeculativeError):
        expected_accepted([-1, 5], [0, 0], [0.5])


def test_positional_from_conditional():
    assert positional_from_conditional([0.5, 0.5]).tolist() == [0.5, 0.25]
    assert positional_from_conditional([1.0, 0.7]).tolist() == [1.0, 0.0]


# -- hardware-aware choice ------------------------------------------------------------------------------------
def _speedup_table(acc, verify, draft, max_budget, max_depth, extra=0):
    out = {}
    for n in range(1, max_budget + 1):
        for d in range(1, min(max_depth, n) + 1):
            e = sequoia_plan(acc, n, d).expected
            if sequoia_plan(acc, n, d).size < n:
                continue  # n nodes do not fit: not a candidate of this size
            out[(n, d)] = verify(0) * e / (verify(n) + (d + extra) * draft)
    return out


@pytest.mark.parametrize("acc", [[0.7, 0.15, 0.05], [0.3, 0.2, 0.2, 0.1], [0.95]])
def test_choose_budget_is_the_argmax_of_the_speedup(acc):
    def verify(n):  # a flat-then-linear verify curve, like a GPU's
        return 0.020 + 0.0004 * max(0, n - 8) ** 1.5

    draft = 0.002
    table = _speedup_table(acc, verify, draft, 24, 8)
    budget, depth, speedup = choose_budget(acc, verify, draft, 24, 8)
    best = max(table.values())
    assert speedup == pytest.approx(best, rel=1e-12)
    assert table[(budget, depth)] == pytest.approx(best, rel=1e-12)
    # the same times as an array and as a mapping give the same answer
    times = np.array([verify(n) for n in range(25)])
    assert choose_budget(acc, times, draft, 24, 8) == (budget, depth, pytest.approx(speedup))
    measured = {n: verify(n) for n in (0, 1, 2, 4, 8, 16)}
    b2, d2, s2 = choose_budget(acc, measured, draft, 24, 8)
    assert b2 in measured and s2 == pytest.approx(max(v for (n, d), v in table.items() if n in measured))
    # Sequoia's own cost (its level index counts the root level): one more draft step per round
    table_seq = _speedup_table(acc, verify, draft, 24, 8, extra=1)
    assert choose_budget(acc, verify, draft, 24, 8, sequoia_levels=True)[2] == pytest.approx(
        max(table_seq.values()))


def test_choose_budget_expensive_drafting_prefers_shallow_trees():
    acc = [0.6, 0.2, 0.1]
    cheap = choose_budget(acc, lambda n: 0.02, 0.0001, 32, 10)
    costly = choose_budget(acc, lambda n: 0.02, 0.02, 32, 10)
    assert costly[1] < cheap[1] and costly[2] < cheap[2]


def test_choose_budget_bad_input():
    acc = [0.5]
    with pytest.raises(SpeculativeError, match="key 0"):
        choose_budget(acc, {4: 0.02}, 0.001, 8, 4)
    with pytest.raises(SpeculativeError, match="positive"):
        choose_budget(acc, lambda n: -1.0, 0.001, 8, 4)
    with pytest.raises(SpeculativeError):
        choose_budget(acc, [0.02], 0.001, 8, 4)
    with pytest.raises(SpeculativeError, match="draft_time"):
        choose_budget(acc, lambda n: 0.02, -1, 8, 4)
    with pytest.raises(SpeculativeError, match="larger than the budget"):
        choose_budget(acc, lambda n: 0.02, 0.001, 4, 8)
    with pytest.raises(SpeculativeError):
        choose_budget(acc, {0: 0.02, 50: 0.03}, 0.001, 8, 4)   # no size within max_budget


# -- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("acc", [[1.2], [-0.1, 0.5], [np.nan], [], [[0.5]], "0.5", None, [0.5, np.inf]])
def test_bad_acceptance(acc):
    with pytest.raises(SpeculativeError):
        sequoia_plan(acc, 4, 2)
    with pytest.raises(SpeculativeError):
        expected_accepted([-1], [0], acc if np.ndim(acc) != 2 else [[2.0]])


@pytest.mark.parametrize("budget, depth", [(0, 1), (-3, 1), (4, 0), (4, -1), (3, 5), (True, 1), (2.5, 1), (4, 1.5)])
def test_bad_budget_or_depth(budget, depth):
    with pytest.raises(SpeculativeError):
        sequoia_plan([0.5, 0.2], budget, depth)


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        sequoia_plan([2.0], 3, 1)


def test_literal_transcription_gives_the_same_table():
    p = [0.0, 0.5, 0.2, 0.1, 0.05]
    T_ref, _, _ = R.sequoia_table_reference(p, 12, 4)
    assert R.sequoia_table_literal(p, 12, 4) == T_ref
    T, _, _, _ = sequoia_table(p, 12, 4)
    assert np.array_equal(T, np.array(T_ref))


@settings(max_examples=60, deadline=None)
@given(acc=st.lists(st.floats(0, 1), min_size=1, max_size=6), budget=st.integers(1, 14), depth=st.integers(1, 14))
def test_plan_properties(acc, budget, depth):
    depth = min(depth, budget)
    plan = sequoia_plan(acc, budget, depth)
    parents, ranks, expected = R.sequoia_plan_reference(acc, budget, depth)
    assert plan.parents.tolist() == parents and plan.ranks.tolist() == ranks and plan.expected == expected
    assert expected_accepted(plan.parents, plan.ranks, acc) == pytest.approx(plan.expected, rel=1e-12)
    # more nodes or more depth never hurt (where the trees fit)
    by_size = plan.best_by_size()
    feasible = by_size[:, depth][np.isfinite(by_size[:, depth])]
    assert np.all(np.diff(feasible) >= -1e-12)
    assert np.all(np.diff(by_size[plan.size, 1:][np.isfinite(by_size[plan.size, 1:])]) >= -1e-12)
