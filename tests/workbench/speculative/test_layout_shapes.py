"""What the lab's views draw, computed in the core: tree layouts, one step's drawing, builders planned from one
acceptance vector, and the expected speedup curve."""

import itertools

import numpy as np
import pytest

from workbench.errors import SpeculativeError
from workbench.speculative.costs import expected_speedups
from workbench.speculative.layout import step_layout, tree_layout
from workbench.speculative.run import StepRecord, expected_chain_length
from workbench.speculative.sequoia import sequoia_plan
from workbench.speculative.shapes import (
    SHAPE_BUILDERS,
    builder_shape,
    calibrated_expand,
    compare_builders,
    monotone_acceptance,
)
from workbench.speculative.tree import DraftTree


def _random_parents(rng, n):
    return np.array([-1] + [int(rng.integers(-1, i)) for i in range(1, n)], np.int32)


def test_tree_layout_is_tidy():
    x, y = tree_layout(np.array([-1, 0, 0, -1]))
    assert x.tolist() == [0, 1, 2, 2, 1] and y.tolist() == [1.25, 0.5, 0.0, 1.0, 2.0]
    rng = np.random.default_rng(0)
    for n in (1, 5, 30, 80):
        par = _random_parents(rng, n)
        x, y = tree_layout(par)
        slots = np.concatenate([[-1], par + 1])          # parent slot of every slot; the root has none
        kids = {i: [j for j in range(1, n + 1) if slots[j] == i] for i in range(n + 1)}
        leaves = [i for i in range(n + 1) if not kids[i]]
        assert sorted(y[leaves].tolist()) == list(range(len(leaves)))     # leaves on consecutive rows
        for i, k in kids.items():
            if k:
                assert y[i] == pytest.approx((y[k[0]] + y[k[-1]]) / 2)  # a parent centred on its children
                assert all(y[a] < y[b] for a, b in zip(k, k[1:]))       # siblings in order
                assert all(x[j] == x[i] + 1 for j in k)
    assert tree_layout(np.zeros(0, np.int32))[0].tolist() == [0]
    with pytest.raises(SpeculativeError):
        tree_layout(np.array([1, -1]))                    # a parent after its child


def test_step_layout_marks_path_rejections_and_bonus():
    t = DraftTree.from_parents([5, 6, 7, 8, 9], [-1, 0, 0, -1, 1], [0.5, 0.3, 0.2, 0.1, 0.4])
    s = StepRecord(tree=t, accepted=np.array([0, 2]), bonus=42, draft_seconds=0.001, verify_seconds=0.02,
                   target_prob=np.array([1, 0, 1, 0, 0.]), target_top=np.zeros(6, np.int64))
    lay = step_layout(s)
    assert lay["state"].tolist() == ["root", "accepted", "rejected", "accepted", "rejected", "unreached", "bonus"]
    assert lay["token"].tolist() == [-1, 5, 6, 7, 8, 9, 42]
    assert lay["parent"].tolist() == [-1, 0, 1, 1, 0, 2, 3]     # the bonus hangs below the last accepted node
    assert lay["x"][-1] == 3 and lay["y"][-1] == lay["y"][3]
    assert lay["on_path"].tolist() == [True, True, False, True, False, False, True]
    empty = StepRecord(tree=DraftTree.empty(), accepted=np.zeros(0, np.int32), bonus=3, draft_seconds=0,
                       verify_seconds=0.02, target_prob=np.zeros(0), target_top=np.zeros(1, np.int64))
    lay = step_layout(empty)
    assert lay["state"].tolist() == ["root", "bonus"] and lay["parent"].tolist() == [-1, 0]


@pytest.mark.parametrize("acceptance", [[0.6, 0.2, 0.1, 0.05], [0.3, 0.25, 0.2, 0.1, 0.05], [0.9, 0.05],
                                        [0.385, 0.077, 0.038, 0.038, 0.0, 0.038, 0.038]])   # measured: not monotone
def test_sequoia_is_best_of_every_builder_at_equal_budget(acceptance):
    for budget in (1, 4, 9, 16, 33):
        rows = compare_builders(acceptance, budget, SHAPE_BUILDERS)
        by = {r.name: r for r in rows}
        assert all(r.size <= budget for r in rows)
        best = max(r.expected for r in rows)
        assert by["sequoia"].expected == pytest.approx(best)        # the DP is optimal for this model
        mono = np.minimum.accumulate(acceptance)
        assert by["sequoia"].expected == pytest.approx(sequoia_plan(mono, budget, min(budget, 16)).expected)
        # a chain's expectation is the chain formula under p[0]
        assert by["chain"].expected == pytest.approx(expected_chain_length(acceptance[0], by["chain"].size))


def test_calibrated_expand_and_bad_input():
    expand = calibrated_expand([0.5, 0.2, 0.0, 0.1])
    (toks, probs), = expand([np.zeros(0, np.int64)], 5)
    assert toks.tolist() == [0, 1] and probs.tolist() == pytest.approx([0.5, 0.2])   # ranks from the first 0 on: not offered
    assert monotone_acceptance([0.4, 0.1, 0.0, 0.04]).tolist() == [0.4, 0.1, 0.0, 0.0]
    shape = builder_shape("kary", [0.5, 0.3], 6, max_depth=3)
    assert shape.size == 6 and shape.depth <= 3
    with pytest.raises(SpeculativeError, match="cannot be planned"):
        builder_shape("goose", [0.5], 4)
    with pytest.raises(SpeculativeError, match="budget"):
        builder_shape("sequoia", [0.5], 0)
    with pytest.raises(SpeculativeError, match="cannot exceed"):
        builder_shape("sequoia", [0.5], 4, max_depth=5)
    with pytest.raises(SpeculativeError):
        builder_shape("sequoia", [1.5], 4)


def test_expected_speedups_follow_the_cost_curve():
    flat = {0: 0.02, 16: 0.02}
    for alpha, g in itertools.product((0.0, 0.5, 0.8), (0, 1, 4, 8)):
        assert expected_speedups(flat, alpha, [g])[0] == pytest.approx(expected_chain_length(alpha, g))
    cliff = {0: 0.02, 4: 0.021, 5: 0.04, 16: 0.05}
    sp = expected_speedups(cliff, 0.8, range(0, 17))
    assert int(np.argmax(sp)) == 4                      # the cliff after 4 nodes makes 4 the best length
    assert expected_speedups(flat, 0.8, [4], draft_seconds_per_token=0.005)[0] == pytest.approx(3.3616 / 2)
    with pytest.raises(SpeculativeError):
        expected_speedups(flat, 1.5, [1])
    with pytest.raises(SpeculativeError):
        expected_speedups(flat, 0.5, [])
