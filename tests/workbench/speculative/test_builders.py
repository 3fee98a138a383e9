"""Tree builders (`workbench.speculative.builders`) on toy expand functions: valid trees within the budget and
depth, level-batched expand calls, and each dynamic builder against a brute-force / literal reference."""

from __future__ import annotations

import heapq

import numpy as np
import pytest

from workbench.errors import SpeculativeError
from workbench.speculative.builders import (
    BUILDERS,
    Builder,
    DySpecBuilder,
    Eagle2Builder,
    GooseBuilder,
    SequoiaBuilder,
    make_builder,
    medusa_template,
)
from workbench.speculative.drafter import Drafter
from workbench.speculative.sequoia import expected_accepted, sequoia_plan
from workbench.speculative.tree import DraftTree


class Toy:
    """expand(paths, k) over a vocabulary of `vocab` tokens: after every path a fixed, path-seeded distribution
    (Dirichlet(alpha)); the candidates are its top-k, best first. Records every call."""

    def __init__(self, vocab: int = 30, seed: int = 0, alpha: float = 0.3):
        self.vocab, self.seed, self.alpha = vocab, seed, alpha
        self.calls: list[list[tuple[int, ...]]] = []
        self.ks: list[int] = []
        self._cache: dict[tuple[int, ...], np.ndarray] = {}

    def dist(self, path) -> np.ndarray:
        key = tuple(int(t) for t in path)
        if key not in self._cache:
            rng = np.random.default_rng([self.seed, len(key), *key])
            self._cache[key] = rng.dirichlet(np.full(self.vocab, self.alpha)).astype(np.float32)
        return self._cache[key]

    def top(self, path, k):
        d = self.dist(path)
        order = np.argsort(-d, kind="stable")[:k]
        return order.astype(np.int64), d[order]

    def __call__(self, paths, k):
        self.calls.append([tuple(int(t) for t in p) for p in paths])
        self.ks.append(k)
        return [self.top(p, k) for p in paths]

    def prob(self, path, token) -> np.float32:
        return self.dist(path)[token]


def node_paths(tree: DraftTree) -> list[tuple[int, ...]]:
    return [tuple(int(tree.tokens[j]) for j in tree.path_to(i)) for i in range(tree.size)]


def check_tree(tree: DraftTree, budget: int, toy: Toy | None = None, max_depth: int | None = None,
               name: str | None = None):
    assert isinstance(tree, DraftTree)
    assert tree.size <= budget
    assert np.all(tree.parents < np.arange(tree.size))                   # parents before children
    pairs = list(zip(tree.parents.tolist(), tree.tokens.tolist()))
    assert len(set(pairs)) == len(pairs)                                  # no repeated sibling token
    if max_depth is not None and tree.size:
        assert tree.max_depth <= max_depth
    if toy is not None:
        for path in node_paths(tree):
            assert tree.draft_prob[node_paths(tree).index(path)] == toy.prob(path[:-1], path[-1])
    for key in ("builder", "params", "expand_calls", "expand_paths", "ranks"):
        assert key in tree.meta
    assert len(tree.meta["ranks"]) == tree.size
    if name is not None:
        assert tree.meta["builder"] == name
    # every sibling list is in rank order
    for p in set(tree.parents.tolist()):
        kids = tree.children(p)
        assert [tree.meta["ranks"][c] for c in kids] == sorted(tree.meta["ranks"][c] for c in kids)


def assert_level_batched(toy: Toy):
    """Each call holds paths of one length (one level), and no level is asked twice."""
    lengths = []
    for call in toy.calls:
        assert len({len(p) for p in call}) == 1
        lengths.append(len(call[0]))
    assert lengths == sorted(set(lengths))


# -- chain and k-ary --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma, budget", [(5, 10), (5, 3), (1, 1), (8, 8)])
def test_chain(gamma, budget):
    toy = Toy()
    tree = make_builder("chain", gamma=gamma).build(toy, budget)
    check_tree(tree, budget, toy, name="chain")
    assert tree.size == min(gamma, budget)
    assert tree.parents.tolist() == list(range(-1, tree.size - 1))
    for path in node_paths(tree):                       # top-1 everywhere
        assert path[-1] == toy.top(path[:-1], 1)[0][0]
    assert tree.meta["expand_calls"] == tree.size == len(toy.calls)
    assert toy.ks == [1] * tree.size


def test_chain_stops_when_the_drafter_has_nothing():
    def expand(paths, k):
        return [(np.array([7]), np.array([0.9], np.float32)) if len(p) < 2 else
                (np.zeros(0, np.int64), np.zeros(0, np.float32)) for p in paths]

    tree = make_builder("chain", gamma=6).build(expand, 6)
    assert tree.tokens.tolist() == [7, 7] and tree.meta["expand_calls"] == 3


def _kary_template(k, depth, budget):
    parents, level = [], [-1]
    for _ in range(depth):
        nxt = []
        for p in level:
            for _ in range(k):
                parents.append(p)
                nxt.append(len(parents) - 1)
        level = nxt
    return parents[:budget]


@pytest.mark.parametrize("k, depth, budget", [(2, 3, 14), (2, 3, 9), (3, 2, 5), (1, 4, 10), (4, 3, 40)])
def test_kary_is_the_bfs_truncated_template(k, depth, budget):
    toy = Toy()
    tree = make_builder("kary", k=k, depth=depth).build(toy, budget)
    check_tree(tree, budget, toy, max_depth=depth, name="kary")
    assert tree.parents.tolist() == _kary_template(k, depth, budget)
    for i, path in enumerate(node_paths(tree)):  # the rank-r node is the drafter's r-th candidate
        assert path[-1] == toy.top(path[:-1], k)[0][tree.meta["ranks"][i]]
    assert_level_batched(toy)
    assert len(toy.calls) <= depth


# -- Medusa -----------------------------------------------------------------------------------------------------
def medusa_explore_graph(acc, budget):
    """Literal transcription of Medusa's ``explore_graph`` (rescan of all neighbours each iteration); stops
    where Medusa would fail (no neighbour worth more than 0)."""
    def value(node):
        v = 1.0
        for d, r in enumerate(node):
            v *= acc[d, r]
        return v

    n_depth, n_rank = acc.shape
    accept = [(0,)]
    while len(accept) < budget:
        best, best_v = None, 0.0
        for node in accept:
            neighbours = []
            if node[-1] < n_rank - 1:
                neighbours.append(node[:-1] + (node[-1] + 1,))
            if len(node) < n_depth:
                neighbours.append(node + (0,))
            for nb in neighbours:
                if nb in accept:
                    continue
                if value(nb) > best_v:
                    best, best_v = nb, value(nb)
        if best is None:
            break
        accept.append(best)
    return accept


def test_medusa_template_equals_medusas_explore_graph():
    rng = np.random.default_rng(3)
    for _ in range(25):
        d, k = int(rng.integers(1, 5)), int(rng.integers(1, 6))
        acc = np.sort(rng.uniform(0.01, 1, (d, k)), axis=1)[:, ::-1]
        if rng.uniform() < 0.3:
            acc = np.round(acc, 1) + 0.0  # ties
            acc[acc == 0] = 0.1
        budget = int(rng.integers(1, 40))
        parents, ranks = medusa_template(acc, budget)
        want = medusa_explore_graph(acc, budget)
        got = []
        for i in range(len(parents)):  # back to rank tuples
            node, j = [], i
            while j >= 0:
                node.append(int(ranks[j]))
                j = int(parents[j])
            got.append(tuple(node[::-1]))
        assert sorted(got) == sorted(want)
        assert got == sorted(got, key=lambda t: (len(t), t))  # breadth-first


def test_medusa_template_example_and_builder():
    parents, ranks = medusa_template([[0.6, 0.2], [0.5, 0.1]], 3)
    assert parents.tolist() == [-1, -1, 0] and ranks.tolist() == [0, 1, 0]
    acc = np.array([[0.7, 0.2, 0.1], [0.6, 0.2, 0.1], [0.5, 0.2, 0.1], [0.4, 0.1, 0.1]])
    toy = Toy()
    tree = make_builder("medusa", acceptance=acc).build(toy, 20)
    check_tree(tree, 20, toy, max_depth=4, name="medusa")
    parents, ranks = medusa_template(acc, 20)
    assert tree.parents.tolist() == parents.tolist() and tree.meta["ranks"] == ranks.tolist()
    assert tree.meta["expected"] == pytest.approx(expected_accepted(parents, ranks, acc))
    assert_level_batched(toy)
    assert len(toy.calls) == tree.max_depth


# -- Sequoia ----------------------------------------------------------------------------------------------------
def test_sequoia_builder_fills_the_plan():
    acc = [0.55, 0.2, 0.1, 0.05]
    toy = Toy()
    builder = make_builder("sequoia", acceptance=acc, max_depth=5)
    tree = builder.build(toy, 24)
    plan = sequoia_plan(acc, 24, 5)
    check_tree(tree, 24, toy, max_depth=5, name="sequoia")
    assert tree.parents.tolist() == plan.parents.tolist() and tree.meta["ranks"] == plan.ranks.tolist()
    assert tree.meta["expected"] == pytest.approx(plan.expected)
    assert_level_batched(toy)
    assert len(toy.calls) == tree.max_depth
    assert builder.plan(24) is builder.plan(24)              # cached
    # a budget below max_depth just caps the depth
    small = builder.build(Toy(), 3)
    assert small.size == 3


def test_sequoia_template_with_a_drafter_that_runs_short():
    def two_then_one(paths, k):
        return [(np.array([3, 4][: (2 if len(p) == 0 else 1)]), np.array([0.6, 0.3][: (2 if len(p) == 0 else 1)],
                                                                         np.float32)) for p in paths]

    tree = make_builder("sequoia", acceptance=[0.4, 0.4, 0.1]).build(two_then_one, 12)
    check_tree(tree, 12)
    assert len(tree.children(-1)) <= 2 and all(len(tree.children(i)) <= 1 for i in range(tree.size))


def test_sequoia_hardware_aware():
    builder, budget, speedup = SequoiaBuilder.hardware_aware([0.6, 0.2, 0.1], lambda n: 0.02 + 0.001 * n,
                                                            0.001, 32, 8)
    assert isinstance(builder, SequoiaBuilder) and 1 <= budget <= 32 and speedup > 1
    assert builder.build(Toy(), budget).size <= budget


# -- EAGLE-2 ----------------------------------------------------------------------------------------------------
def eagle2_reference(toy: Toy, topk: int, depth: int, budget: int) -> set[tuple[int, ...]]:
    """Brute force: EAGLE-2's whole candidate pool (every frontier node's top-k, frontier = top-k of each
    level by cumulative probability), then the top `budget` by cumulative probability."""
    pool = []                                   # (score, generation, path)
    frontier = [(1.0, ())]
    for _ in range(depth):
        children = []
        for score, path in frontier:
            tokens, probs = toy.top(path, topk)
            for t, q in zip(tokens.tolist(), probs.tolist()):
                entry = (score * min(q, 1.0), len(pool), path + (t,))
                pool.append(entry)
                children.append(entry)
        children.sort(key=lambda c: (-c[0], c[1]))
        frontier = [(c[0], c[2]) for c in children[:topk]]
    return {c[2] for c in sorted(pool, key=lambda c: (-c[0], c[1]))[:budget]}


@pytest.mark.parametrize("topk, depth, budget, alpha", [(10, 6, 59, 0.3), (4, 5, 20, 0.3), (3, 8, 12, 0.05),
                                                         (2, 3, 100, 1.0), (5, 4, 7, 0.5)])
def test_eagle2_equals_brute_force(topk, depth, budget, alpha):
    for seed in range(3):
        toy = Toy(seed=seed, alpha=alpha)
        tree = make_builder("eagle2", topk=topk, depth=depth).build(toy, budget)
        check_tree(tree, budget, toy, max_depth=depth, name="eagle2")
        assert set(node_paths(tree)) == eagle2_reference(toy, topk, depth, budget)
        assert_level_batched(toy)
        assert len(toy.calls) <= depth
        assert all(len(call) <= topk for call in toy.calls)


def test_eagle2_ties_still_give_a_tree():
    def flat(paths, k):  # every candidate equally likely, probability 1 for the first: many equal scores
        return [(np.arange(k), np.array([1.0] + [0.5] * (k - 1), np.float32)) for _ in paths]

    for budget in (1, 5, 13, 40):
        tree = Eagle2Builder(topk=3, depth=4).build(flat, budget)
        check_tree(tree, budget, max_depth=4)
        assert tree.size == min(budget, 3 + 9 + 9 + 9)


# -- DySpec -----------------------------------------------------------------------------------------------------
def dyspec_reference(toy: Toy, budget, topk, threshold, max_depth):
    """The literal greedy loop: pop the best candidate, add it, expand it at once (one call per node)."""
    k = min(topk, budget)
    nodes: list[tuple[tuple[int, ...], float, int]] = []   # (path, value, depth)
    heap = []
    calls = 1
    for r, (t, q) in enumerate(zip(*toy.top((), k))):
        heapq.heappush(heap, (-float(q), -1, r, int(t), float(q)))
    while len(nodes) < budget and heap:
        if threshold is not None and -heap[0][0] < threshold:
            break
        neg, parent, _, tok, _ = heapq.heappop(heap)
        path = (nodes[parent][0] if parent >= 0 else ()) + (tok,)
        depth = len(path)
        nodes.append((path, -neg, depth))
        if depth < max_depth:
            calls += 1
            for r, (t, q) in enumerate(zip(*toy.top(path, k))):
                heapq.heappush(heap, (neg * float(q), len(nodes) - 1, r, int(t), float(q)))
    return [n[0] for n in nodes], [n[1] for n in nodes], calls


@pytest.mark.parametrize("budget, topk, threshold, max_depth", [
    (30, 4, None, None), (60, 8, None, 6), (25, 3, 0.01, None), (10, 10, None, 2), (1, 8, None, None),
    (40, 2, 0.0, 3)])
def test_dyspec_equals_the_greedy_loop(budget, topk, threshold, max_depth):
    for seed in range(3):
        toy = Toy(seed=seed, alpha=0.2)
        tree = DySpecBuilder(threshold=threshold, topk=topk, max_depth=max_depth).build(toy, budget)
        check_tree(tree, budget, toy, max_depth=max_depth, name="dyspec")
        paths, values, literal_calls = dyspec_reference(toy, budget, topk, threshold, max_depth or budget)
        assert node_paths(tree) == paths                         # same nodes, in the same (pop) order
        assert tree.meta["cumulative"] == pytest.approx(values, rel=1e-12)
        assert all(a >= b for a, b in zip(values, values[1:]))   # decreasing cumulative probability
        if threshold:
            assert min(values) >= threshold
        assert tree.meta["expand_calls"] <= literal_calls
        assert all(len(set(map(len, call))) >= 1 for call in toy.calls)


def test_dyspec_batches_its_expansions():
    toy = Toy(seed=1, alpha=0.2)
    tree = DySpecBuilder(topk=4).build(toy, 40)
    assert tree.size == 40
    assert tree.meta["expand_calls"] < 40 // 2       # far fewer calls than nodes
    assert tree.meta["expand_paths"] >= tree.meta["expand_calls"]


def test_dyspec_threshold_stops_early():
    tree = DySpecBuilder(threshold=0.5).build(Toy(seed=2, alpha=0.05), 50)
    assert tree.size < 50 and all(v >= 0.5 for v in tree.meta["cumulative"])


# -- Goose ------------------------------------------------------------------------------------------------------
class Spine:
    """A context-match-like source: a fixed continuation of `length` tokens, probability `prob` each."""

    def __init__(self, tokens, prob=0.9):
        self.tokens, self.prob = list(tokens), prob
        self.calls = []

    def __call__(self, paths, k):
        self.calls.append([tuple(int(t) for t in p) for p in paths])
        out = []
        for p in paths:
            n = len(p)
            if n < len(self.tokens) and list(p) == self.tokens[:n]:
                out.append((np.array([self.tokens[n]]), np.array([self.prob], np.float32)))
            else:
                out.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
        return out


def _goose_values(spine_tokens, toy, a, width, s):
    """Every candidate's value by the documented rule (spine a^j; branch a^j (1 - a) q, a^S q at the end)."""
    vals = {}
    for j in range(1, s + 1):
        vals[tuple(spine_tokens[:j])] = a ** j
    for j in range(s + 1):
        prefix = tuple(spine_tokens[:j])
        nxt = spine_tokens[j] if j < s else None
        tokens, probs = toy.top(prefix, width + 1)
        kept = [(t, q) for t, q in zip(tokens.tolist(), probs.tolist()) if t != nxt][:width]
        for t, q in kept:
            vals[prefix + (t,)] = a ** j * ((1 - a) if j < s else 1.0) * q
    return vals


@pytest.mark.parametrize("budget, max_spine", [(16, None), (8, 4), (40, None), (3, None)])
def test_goose_spine_and_branches(budget, max_spine):
    toy = Toy(seed=4, alpha=0.3)
    # make the spine repeat the branch source's favourite at the root, to check that it is not drafted twice
    first = int(toy.top((), 1)[0][0])
    spine_tokens = [first, 11, 12, 13, 14, 15, 16]
    spine = Spine(spine_tokens)
    builder = make_builder("goose", spine=spine, branch=toy, max_spine=max_spine, branch_width=3,
                           spine_acceptance=0.7)
    tree = builder.build(None, budget)
    check_tree(tree, budget, name="goose")
    s = min(len(spine_tokens), max_spine or budget, budget)
    paths = node_paths(tree)
    spine_nodes = [i for i, src in enumerate(tree.meta["source"]) if src == "spine"]
    assert [paths[i] for i in spine_nodes] == [tuple(spine_tokens[:j]) for j in range(1, len(spine_nodes) + 1)]
    for i, src in enumerate(tree.meta["source"]):
        if src == "branch":
            assert tree.children(i).size == 0                             # branches are single tokens
            parent = int(tree.parents[i])
            assert parent == -1 or tree.meta["source"][parent] == "spine"
            assert tree.draft_prob[i] == toy.prob(paths[i][:-1], paths[i][-1])
    # the kept nodes are the `budget` most valuable candidates
    vals = _goose_values(spine_tokens, toy, 0.7, 3, s)
    kept = sorted((vals[p] for p in paths), reverse=True)
    dropped = sorted((v for p, v in vals.items() if p not in set(paths)), reverse=True)
    assert len(paths) == min(budget, len(vals))
    if dropped:
        assert kept[-1] >= dropped[0]
    # sources: the spine one path per call, the branches in one call over the root and every spine token
    assert all(len(c) == 1 for c in spine.calls) and len(spine.calls) <= s + 1
    assert len(toy.calls) == 1 and len(toy.calls[0]) == s + 1
    # spine child first among its siblings
    for i in spine_nodes:
        parent = int(tree.parents[i])
        assert tree.children(parent)[0] == i


def test_goose_without_a_spine():
    toy = Toy(seed=5)
    nothing = Spine([])
    tree = GooseBuilder(spine=nothing, branch=toy, branch_width=4).build(None, 10)
    assert tree.size == 4 and set(tree.meta["source"]) == {"branch"} and tree.max_depth == 1
    toy2 = Toy(seed=5)
    tree = GooseBuilder(spine=nothing, branch=toy2, fallback="kary").build(None, 10)
    check_tree(tree, 10, toy2, name="goose")
    assert tree.meta["fallback"] == "kary" and tree.size == 10


class ToyDrafter(Drafter):
    name = "toy"

    def __init__(self):
        self.toy = Toy(seed=9)
        self.contexts = []

    def expand(self, context_ids, paths, k):
        self.contexts.append(np.asarray(context_ids).tolist())
        return self.toy(paths, k)


def test_drafters_as_sources_need_the_context():
    drafter = ToyDrafter()
    tree = make_builder("eagle2", topk=3, depth=3).build(drafter, 10, context_ids=[1, 2, 3])
    check_tree(tree, 10, drafter.toy)
    assert drafter.contexts and all(c == [1, 2, 3] for c in drafter.contexts)
    with pytest.raises(SpeculativeError, match="context_ids"):
        make_builder("chain").build(drafter, 4)
    goose = GooseBuilder(spine=Spine([1, 2, 3]), branch=drafter)
    assert goose.drafters() == [drafter]
    tree = goose.build(None, 6, context_ids=[5])
    assert tree.size == 6
    with pytest.raises(SpeculativeError, match="context_ids"):
        goose.build(None, 6)
    with pytest.raises(SpeculativeError, match="no spine source"):
        GooseBuilder().build(None, 6)


# -- every builder --------------------------------------------------------------------------------------------
ALL = [("chain", {"gamma": 6}), ("kary", {"k": 3, "depth": 4}),
       ("medusa", {"acceptance": [[0.6, 0.2, 0.1], [0.5, 0.2, 0.1], [0.4, 0.2, 0.1]]}),
       ("sequoia", {"acceptance": [0.5, 0.2, 0.1], "max_depth": 4}), ("eagle2", {"topk": 4, "depth": 4}),
       ("dyspec", {"topk": 4, "max_depth": 4}), ("goose", {"branch_width": 3, "max_spine": 4})]


def test_every_registered_builder_is_covered():
    assert {name for name, _ in ALL} == set(BUILDERS)


@pytest.mark.parametrize("name, params", ALL)
@pytest.mark.parametrize("budget", [1, 2, 7, 25])
def test_every_builder_gives_a_valid_tree(name, params, budget):
    toy = Toy(seed=budget)
    builder = make_builder(name, **params)
    assert isinstance(builder, Builder) and builder.name == name and make_builder(builder) is builder
    tree = builder.build(toy, budget)
    depth = {"chain": 6, "goose": 5}.get(name, 4)  # goose: max_spine = 4 plus one branch token
    check_tree(tree, budget, toy, max_depth=depth, name=name)
    assert tree.size >= 1
    assert tree.meta["expand_calls"] == len(toy.calls)
    assert repr(builder).startswith(type(builder).__name__)


@pytest.mark.parametrize("name, params", ALL)
def test_zero_probabilities_missing_candidates_and_repeats_are_skipped(name, params):
    def quirky(paths, k):
        # repeats token 5, gives token 7 probability 0, and nothing at all below depth 2
        out = []
        for p in paths:
            if len(p) >= 2:
                out.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
            else:
                out.append((np.array([5, 5, 7, 9, 11, 13][:k + 2]), np.array([0.5, 0.4, 0.0, 0.1, 0.05, 0.01][:k + 2],
                                                                             np.float32)))
        return out

    tree = make_builder(name, **params).build(quirky, 12)
    check_tree(tree, 12, max_depth=2)
    assert 7 not in tree.tokens.tolist()
    for p in set(tree.parents.tolist()):
        toks = tree.tokens[tree.children(p)].tolist()
        assert toks == [t for t in [5, 9, 11, 13] if t in toks]           # drafter order, 5 once


def test_bad_expand_answers():
    builder = make_builder("kary", k=2, depth=2)
    with pytest.raises(SpeculativeError, match="one"):
        builder.build(lambda paths, k: [], 4)
    with pytest.raises(SpeculativeError, match="probabilities"):
        builder.build(lambda paths, k: [(np.array([1]), np.array([1.5]))] * len(paths), 4)
    with pytest.raises(SpeculativeError, match="token ids"):
        builder.build(lambda paths, k: [(np.array([-1]), np.array([0.5]))] * len(paths), 4)
    with pytest.raises(SpeculativeError, match="equal length"):
        builder.build(lambda paths, k: [(np.array([1, 2]), np.array([0.5]))] * len(paths), 4)
    with pytest.raises(SpeculativeError):
        builder.build("not a function", 4)


@pytest.mark.parametrize("name, params", [
    ("chain", {"gamma": 0}), ("chain", {"gamma": -2}), ("chain", {"gamma": True}), ("kary", {"k": 0}),
    ("kary", {"depth": 0}), ("kary", {"k": 2.5}), ("medusa", {"acceptance": [0.5, 0.2]}),
    ("medusa", {"acceptance": [[1.5]]}), ("sequoia", {"acceptance": [0.5, -0.1]}),
    ("sequoia", {"acceptance": [0.5], "max_depth": 0}), ("sequoia", {"acceptance": [[0.5]]}),
    ("eagle2", {"topk": 0}), ("eagle2", {"depth": -1}), ("dyspec", {"threshold": 1.5}),
    ("dyspec", {"topk": 0}), ("dyspec", {"max_depth": 0}), ("goose", {"branch_width": 0}),
    ("goose", {"spine_acceptance": 0.0}), ("goose", {"spine": 3}), ("goose", {"fallback": "nope"}),
    ("nope", {}), ("chain", {"gama": 3})])
def test_bad_parameters(name, params):
    with pytest.raises(SpeculativeError):
        make_builder(name, **params)


@pytest.mark.parametrize("budget", [0, -1, True, 2.0, None])
def test_bad_budget(budget):
    for name, params in ALL:
        with pytest.raises(SpeculativeError):
            make_builder(name, **params).build(Toy(), budget)
    with pytest.raises(SpeculativeError):
        medusa_template([[0.5]], budget)
