"""DraftTree: the numba tree kernels against readable references, and validation of malformed trees."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import SpeculativeError
from workbench.speculative.tree import DraftTree, tree_children


def random_parents(draw_or_rng, n):
    rng = draw_or_rng
    return np.array([-1] + [int(rng.integers(-1, i)) for i in range(1, n)], np.int32)


def ref_ancestors(parents, i):
    out = []
    while i >= 0:
        out.append(i)
        i = parents[i]
    return out[::-1]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(0, 10_000))
def test_kernels_equal_readable_references(n, seed):
    parents = random_parents(np.random.default_rng(seed), n)
    t = DraftTree.from_parents(np.arange(n), parents)
    mask = t.attention_mask()
    for i in range(n):
        anc = ref_ancestors(parents, i)
        assert t.depth[i] == len(anc)
        assert sorted(np.flatnonzero(mask[i]).tolist()) == sorted(anc)
    np.testing.assert_array_equal(t.position_ids(offset=10), 10 + t.depth - 1)
    leaves = [i for i in range(n) if i not in set(parents.tolist())]
    assert t.paths() == [ref_ancestors(parents, i) for i in leaves]
    for node in range(-1, n):
        assert t.children(node).tolist() == [j for j in range(n) if parents[j] == node]
    ptr, child = tree_children(parents)
    assert ptr[-1] == n and sorted(child.tolist()) == list(range(n))


def test_feed_puts_the_root_first():
    t = DraftTree.from_parents([5, 7, 9], [-1, 0, -1], [0.5, 0.25, 0.1])
    tokens, parents = t.feed(3)
    assert tokens.tolist() == [3, 5, 7, 9] and parents.tolist() == [-1, 0, 1, 0]
    assert t.depth.tolist() == [1, 2, 1] and t.max_depth == 2 and t.path_to(1) == [0, 1]
    chain = DraftTree.chain([1, 2, 3])
    assert chain.parents.tolist() == [-1, 0, 1] and chain.draft_prob.tolist() == [1, 1, 1]
    assert DraftTree.empty().size == 0 and DraftTree.empty().paths() == []


def test_malformed_trees_are_refused():
    with pytest.raises(SpeculativeError, match="cycle"):
        DraftTree.from_parents([1, 2, 3], [-1, 2, 1])
    with pytest.raises(SpeculativeError, match="topological"):
        DraftTree.from_parents([1, 2], [1, -1])
    with pytest.raises(SpeculativeError, match="outside the tree"):
        DraftTree.from_parents([1, 2], [-1, 5])
    with pytest.raises(SpeculativeError, match="outside the tree"):
        DraftTree.from_parents([1, 2], [-1, -3])
    with pytest.raises(SpeculativeError, match="expected"):
        DraftTree.from_parents([1, 2, 3], [-1, 0])
    with pytest.raises(SpeculativeError, match="negative"):
        DraftTree.from_parents([1, -2], [-1, 0])
    with pytest.raises(SpeculativeError, match="probabilities"):
        DraftTree.from_parents([1, 2], [-1, 0], [0.5, 1.5])
    with pytest.raises(SpeculativeError, match="integers"):
        DraftTree.from_parents([1, 2], [-1.0, 0.0])
    with pytest.raises(SpeculativeError, match="vocabulary"):
        DraftTree.from_parents([1, 9], [-1, 0], draft_dists=np.full((3, 4), 0.25))
    t = DraftTree.chain([1, 70000])
    with pytest.raises(SpeculativeError, match="vocabulary of 49152"):
        t.check_vocab(49152)
