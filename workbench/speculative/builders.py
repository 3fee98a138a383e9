"""Tree builders: the shape of a draft, filled with a drafter's candidates.

A builder decides *which* nodes to draft; a drafter says *what* they are. Every builder is

    builder.build(expand, budget) -> DraftTree

where ``expand(paths, k) -> [(tokens int64 [<=k], probs float32 [<=k]), ...]`` gives the drafter's best-first
candidates after each path (a path = int64 array of drafted tokens below the root; the empty array is the root
itself) -- ``lambda paths, k: drafter.expand(context_ids, paths, k)``, or pass the `Drafter` itself with
``context_ids=``. ``budget`` is the largest number of draft nodes (the root excluded).

House rules every builder keeps:

* ``expand`` is called level by level with *all* the paths of a level in one call (a model-based drafter runs
  them as one batched forward pass); DySpec and Goose, whose order is not level by level, batch as much as their
  algorithm allows (see their docstrings); ``tree.meta["expand_calls"]`` counts the calls;
* candidates with probability 0, and candidates the drafter did not return, are skipped (with their subtrees);
  a token already proposed for the same parent is skipped too, so siblings never repeat a token;
* ``draft_prob`` of a node is the probability ``expand`` returned for it; siblings keep the drafter's order;
* ``tree.meta`` holds ``builder``, ``params``, ``expand_calls``, ``expand_paths`` and ``ranks`` (each node's
  0-based position in its parent's usable candidates: what positional acceptance refers to), plus what is
  specific to the builder (``expected`` for the acceptance-driven ones, ``source`` for Goose ...).

Registry: ``make_builder(name, **params)`` with ``chain``, ``kary``, ``medusa``, ``sequoia``, ``eagle2``,
``dyspec``, ``goose``. Each class names the code or paper it follows and where it differs.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

from workbench.errors import SpeculativeError
from workbench.speculative.drafter import Drafter, check_budget
from workbench.speculative.sequoia import (
    SequoiaPlan,
    check_acceptance,
    choose_budget,
    expected_accepted,
    sequoia_plan,
)
from workbench.speculative.tree import DraftTree

Expand = Callable[[list[np.ndarray], int], list[tuple[np.ndarray, np.ndarray]]]
ROOT_PATH = np.zeros(0, np.int64)


# -- shared machinery ------------------------------------------------------------------------------------------
def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise SpeculativeError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _optional_depth(value, what: str = "max_depth") -> int | None:
    return None if value is None else _positive_int(value, what)


def as_expand(source, context_ids=None, what: str = "expand") -> Expand:
    """An ``expand(paths, k)`` function from a callable or a `Drafter` (which needs ``context_ids``)."""
    if isinstance(source, Drafter):
        if context_ids is None:
            raise SpeculativeError(f"{what} is the drafter {source!r}; pass context_ids= to build() so that it "
                                   "knows what it continues")
        ctx = np.asarray(context_ids)

        def drafter_expand(paths, k):
            return source.expand(ctx, paths, k)

        return drafter_expand
    if not callable(source):
        raise SpeculativeError(f"{what} must be a callable expand(paths, k) or a Drafter, got {source!r}")
    return source


class _Source:
    """An expand function with bookkeeping: checks its answers, cleans them, counts calls and paths."""

    def __init__(self, expand: Expand, who: str = "the drafter"):
        self.fn = expand
        self.who = who
        self.calls = 0
        self.paths = 0

    def __call__(self, paths: list[np.ndarray], k: int) -> list[list[tuple[int, float]]]:
        """Usable candidates per path, best first: [(token, prob), ...] with prob > 0 and no repeated token."""
        if not paths:
            return []
        answer = self.fn(list(paths), int(k))
        self.calls += 1
        self.paths += len(paths)
        if not isinstance(answer, (list, tuple)) or len(answer) != len(paths):
            got = len(answer) if isinstance(answer, (list, tuple)) else type(answer).__name__
            raise SpeculativeError(f"{self.who}'s expand must return one (tokens, probs) pair per path: "
                                   f"{len(paths)} paths, got {got}")
        out = []
        for entry in answer:
            try:
                tokens, probs = entry
            except (TypeError, ValueError) as exc:
                raise SpeculativeError(f"{self.who}'s expand returned {entry!r}, not a (tokens, probs) pair") from exc
            tokens = np.asarray(tokens)
            probs = np.asarray(probs, dtype=np.float64)
            if tokens.ndim != 1 or probs.shape != tokens.shape:
                raise SpeculativeError(f"{self.who}'s expand returned tokens {tokens.shape} and probs "
                                       f"{probs.shape}; they must be 1-D and of equal length")
            if tokens.size and (not np.issubdtype(tokens.dtype, np.integer) or tokens.min() < 0):
                raise SpeculativeError(f"{self.who}'s expand returned token ids that are not non-negative "
                                       "integers")
            if probs.size and (not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1 + 1e-5):
                raise SpeculativeError(f"{self.who}'s expand returned probabilities outside [0, 1]")
            seen: set[int] = set()
            cands = []
            for tok, p in zip(tokens.tolist(), probs.tolist()):
                if p <= 0 or tok in seen:
                    continue
                seen.add(tok)
                cands.append((int(tok), min(float(p), 1.0)))
                if len(cands) == k:
                    break
            out.append(cands)
        return out


class _Growing:
    """A tree under construction: nodes in the order they are added (parents first)."""

    def __init__(self):
        self.tokens: list[int] = []
        self.parents: list[int] = []
        self.probs: list[float] = []
        self.ranks: list[int] = []
        self.depth: list[int] = []
        self._paths: list[np.ndarray] = []

    @property
    def size(self) -> int:
        return len(self.tokens)

    def add(self, parent: int, token: int, prob: float, rank: int) -> int:
        self.tokens.append(int(token))
        self.parents.append(int(parent))
        self.probs.append(float(prob))
        self.ranks.append(int(rank))
        self.depth.append(1 if parent < 0 else self.depth[parent] + 1)
        self._paths.append(np.append(self.path(parent), np.int64(token)))
        return len(self.tokens) - 1

    def path(self, node: int) -> np.ndarray:
        return ROOT_PATH if node < 0 else self._paths[node]

    def finish(self, builder: Builder, sources: list[_Source], **meta) -> DraftTree:
        info = {"builder": builder.name, "params": builder.params(),
                "expand_calls": sum(s.calls for s in sources), "expand_paths": sum(s.paths for s in sources),
                "ranks": list(self.ranks)}
        info.update(meta)
        return DraftTree.from_parents(np.asarray(self.tokens, np.int64), np.asarray(self.parents, np.int32),
                                      np.asarray(self.probs, np.float32), **info)


def fill_template(src: _Source, parents: np.ndarray, ranks: np.ndarray) -> _Growing:
    """Fill a static template (breadth-first ``parents``, 0-based sibling ``ranks``) level by level: a template
    node of rank r becomes its parent's r-th usable candidate; where the drafter has fewer, the node and its
    subtree are dropped."""
    n = len(parents)
    depth = np.empty(n, np.int64)
    for i in range(n):
        depth[i] = 1 if parents[i] < 0 else depth[parents[i]] + 1
    placed = np.full(n, -1, np.int64)  # template node -> tree node
    tree = _Growing()
    for d in range(1, int(depth.max()) + 1 if n else 1):
        level = [i for i in range(n) if depth[i] == d]
        want: dict[int, int] = {}  # template parent -> candidates needed, in first-seen (= breadth-first) order
        for i in level:
            p = int(parents[i])
            if p < 0 or placed[p] >= 0:
                want[p] = max(want.get(p, 0), int(ranks[i]) + 1)
        if not want:
            break
        tparents = list(want)
        answer = src([tree.path(-1 if p < 0 else int(placed[p])) for p in tparents], max(want.values()))
        cands = dict(zip(tparents, answer))
        for i in level:
            p = int(parents[i])
            if p not in cands or ranks[i] >= len(cands[p]):
                continue
            tok, prob = cands[p][int(ranks[i])]
            placed[i] = tree.add(-1 if p < 0 else int(placed[p]), tok, prob, int(ranks[i]))
    return tree


# -- the builders ----------------------------------------------------------------------------------------------
class Builder:
    """Base class (see the module docstring). Subclasses set ``name``, validate their parameters in ``__init__``
    and implement ``_build(src, budget, context_ids)``."""

    name = "builder"

    def params(self) -> dict:
        return {}

    def build(self, expand, budget: int, *, context_ids=None) -> DraftTree:
        budget = check_budget(budget)
        src = _Source(as_expand(expand, context_ids))
        return self._build(src, budget, context_ids)

    def _build(self, src: _Source, budget: int, context_ids) -> DraftTree:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class ChainBuilder(Builder):
    """``chain(gamma)``: the classic speculative draft (Leviathan et al. 2023; HF assisted generation's
    ``num_assistant_tokens``): up to ``min(gamma, budget)`` tokens, the drafter's top-1 at each step, stopping
    early when the drafter has nothing (one ``expand`` call per token, one path each)."""

    name = "chain"

    def __init__(self, gamma: int = 5):
        self.gamma = _positive_int(gamma, "gamma")

    def params(self) -> dict:
        return {"gamma": self.gamma}

    def _build(self, src, budget, context_ids):
        tree = _Growing()
        node = -1
        for _ in range(min(self.gamma, budget)):
            cands = src([tree.path(node)], 1)[0]
            if not cands:
                break
            node = tree.add(node, *cands[0], 0)
        return tree.finish(self, [src])


class KaryBuilder(Builder):
    """``kary(k, depth)``: the static k-ary tree (every node's top-k children, ``depth`` levels; SpecInfer's and
    Medusa's simplest trees, e.g. Medusa's Cartesian product of top-k per head), truncated to ``budget`` nodes in
    breadth-first order. Filled from what the drafter returns: with fewer than k candidates somewhere, the
    breadth-first truncation applies to the nodes that exist (the budget goes to the next ones in BFS order)."""

    name = "kary"

    def __init__(self, k: int = 2, depth: int = 4):
        self.k = _positive_int(k, "k")
        self.depth = _positive_int(depth, "depth")

    def params(self) -> dict:
        return {"k": self.k, "depth": self.depth}

    def _build(self, src, budget, context_ids):
        tree = _Growing()
        level = [-1]
        for _ in range(self.depth):
            room = budget - tree.size
            if room <= 0 or not level:
                break
            parents = level[:room]  # each parent that gets a child uses one node: no more can be needed
            answer = src([tree.path(p) for p in parents], min(self.k, room))
            nxt = []
            for p, cands in zip(parents, answer):
                for r, (tok, prob) in enumerate(cands):
                    if tree.size >= budget:
                        break
                    nxt.append(tree.add(p, tok, prob, r))
            level = nxt
        return tree.finish(self, [src])


def medusa_template(acceptance, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Medusa's greedy tree: ``(parents int32 [n], ranks int32 [n])``, breadth-first, n <= budget.

    Follows FasterDecoding/Medusa, ``medusa/eval/gen_results.py`` (``explore_graph``, how ``medusa_choices`` were
    made): ``acceptance`` [D, K] holds each head's top-k accuracy (``acceptance[d, r]`` = probability that the
    rank-r candidate at depth d + 1 is right); a node = a path of ranks, valued at the product of
    ``acceptance[depth, rank]`` along it; starting from ``(0,)`` it greedily adds the best *neighbour* of the
    chosen nodes -- the next sibling ``(..., r + 1)`` or the first child ``(..., r, 0)`` -- so sibling ranks stay
    contiguous. Ties go as in Medusa's scan (earlier-chosen generator first, sibling before child). Differences:
    a heap instead of the rescan (same picks), nodes worth 0 are never added (Medusa would fail on them), and
    the result is a parent/rank template in breadth-first order instead of a list of rank tuples.
    Example: ``acceptance=[[0.6, 0.2], [0.5, 0.1]], budget=3`` -> (0,), (0, 0) [0.3], (1,) [0.2]:
    ``parents=[-1, -1, 0], ranks=[0, 1, 0]``.
    """
    acc = check_acceptance(acceptance, ndim=2, what="Medusa's acceptance matrix")
    budget = check_budget(budget)
    n_depth, n_rank = acc.shape
    chosen: list[tuple[int, ...]] = []
    heap: list[tuple[float, int, int, tuple[int, ...], float]] = []
    if acc[0, 0] > 0:
        heapq.heappush(heap, (-acc[0, 0], -1, 0, (0,), acc[0, 0]))
    while heap and len(chosen) < budget:
        _, _, _, node, value = heapq.heappop(heap)
        gen = len(chosen)
        chosen.append(node)
        d, r = len(node) - 1, node[-1]
        if r + 1 < n_rank:  # next sibling
            v = _path_value(acc, node[:-1] + (r + 1,))
            if v > 0:
                heapq.heappush(heap, (-v, gen, 0, node[:-1] + (r + 1,), v))
        if d + 1 < n_depth:  # first child
            v = value * acc[d + 1, 0]
            if v > 0:
                heapq.heappush(heap, (-v, gen, 1, node + (0,), v))
    order = sorted(chosen, key=lambda t: (len(t), t))
    index = {t: i for i, t in enumerate(order)}
    parents = np.array([index[t[:-1]] if len(t) > 1 else -1 for t in order], np.int32)
    ranks = np.array([t[-1] for t in order], np.int32)
    return parents, ranks


def _path_value(acc: np.ndarray, node: tuple[int, ...]) -> float:
    v = 1.0
    for d, r in enumerate(node):
        v *= acc[d, r]
    return float(v)


class MedusaBuilder(Builder):
    """``medusa(acceptance)``: Medusa's greedy static tree (`medusa_template`, from a per-(depth, rank) acceptance
    matrix [D, K]) of ``budget`` nodes, filled level by level with the drafter's candidates. Medusa fills it
    from its heads' top-k at the root; here every node asks the drafter after its own path (a tree drafter,
    as in EAGLE's use of Medusa-style choices). ``meta["expected"]``: the tree's expectation under the matrix."""

    name = "medusa"

    def __init__(self, acceptance):
        self.acceptance = check_acceptance(acceptance, ndim=2, what="Medusa's acceptance matrix")
        self._templates: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def params(self) -> dict:
        return {"acceptance": self.acceptance.tolist()}

    def template(self, budget: int) -> tuple[np.ndarray, np.ndarray]:
        if budget not in self._templates:
            self._templates[budget] = medusa_template(self.acceptance, budget)
        return self._templates[budget]

    def _build(self, src, budget, context_ids):
        parents, ranks = self.template(budget)
        tree = fill_template(src, parents, ranks)
        return tree.finish(self, [src], template_size=int(len(parents)),
                           expected_template=expected_accepted(parents, ranks, self.acceptance),
                           expected=expected_accepted(tree.parents, tree.ranks, self.acceptance))


class SequoiaBuilder(Builder):
    """``sequoia(acceptance, max_depth=None)``: Sequoia's optimal static tree (`sequoia.sequoia_plan`, the DP of
    Infini-AI-Lab/Sequoia ``tree_search.py``) for the positional acceptance vector [W] and at most ``max_depth``
    levels (``None``: up to the budget; a budget smaller than ``max_depth`` just caps the depth), filled level by
    level with the drafter's candidates (Sequoia samples them without replacement from the draft model; a
    drafter's best-first top-k plays that part here). Plans are cached per budget.
    `SequoiaBuilder.hardware_aware` picks budget and depth from measured times (`sequoia.choose_budget`).
    ``meta["expected"]``: the filled tree's expectation, ``meta["expected_template"]``: the plan's."""

    name = "sequoia"

    def __init__(self, acceptance, max_depth: int | None = None):
        self.acceptance = check_acceptance(acceptance)
        self.max_depth = _optional_depth(max_depth)
        self._plans: dict[int, SequoiaPlan] = {}

    def params(self) -> dict:
        return {"acceptance": self.acceptance.tolist(), "max_depth": self.max_depth}

    def plan(self, budget: int) -> SequoiaPlan:
        budget = check_budget(budget)
        if budget not in self._plans:
            depth = budget if self.max_depth is None else min(self.max_depth, budget)
            self._plans[budget] = sequoia_plan(self.acceptance, budget, depth)
        return self._plans[budget]

    @classmethod
    def hardware_aware(cls, acceptance, verify_time, draft_time_per_level: float, max_budget: int,
                       max_depth: int, **kwargs) -> tuple[SequoiaBuilder, int, float]:
        """(builder, budget, predicted speedup) from Sequoia's hardware-aware choice (`choose_budget`)."""
        budget, depth, speedup = choose_budget(acceptance, verify_time, draft_time_per_level, max_budget,
                                               max_depth, **kwargs)
        return cls(acceptance, max_depth=depth), budget, speedup

    def _build(self, src, budget, context_ids):
        plan = self.plan(budget)
        tree = fill_template(src, plan.parents, plan.ranks)
        return tree.finish(self, [src], template_size=plan.size, expected_template=plan.expected,
                           expected=expected_accepted(tree.parents, tree.ranks, self.acceptance))


class Eagle2Builder(Builder):
    """``eagle2(topk=10, depth=6)``: EAGLE-2's context-aware dynamic tree (Li et al. 2024), following
    SafeAILab/EAGLE ``eagle/model/cnets.py`` ``topK_genrate``.

    Expansion: the root's top-k candidates form the first frontier; at each further level every frontier node
    gets its top-k children (one batched ``expand`` call per level), all of them join the candidate pool, and
    the top-k children by *cumulative* draft probability (the product along the path; EAGLE adds log-probs)
    form the next frontier. Rerank: the ``budget`` pool candidates with the highest cumulative probability, in
    generation order (parents first). A child never scores above its parent and ties go to the earlier-generated
    candidate, so the selection always keeps every ancestor of a kept node (EAGLE relies on the same fact
    without the tie rule).

    Conventions: ``depth`` counts draft levels, i.e. EAGLE's ``depth=5`` (five loop iterations after the root's
    top-k) is ``depth=6`` here; EAGLE's ``total_token=60`` includes the root, so ``budget=59`` reproduces it.
    Frontier nodes whose score is not above the budget-th best candidate so far are not expanded (none of their
    descendants could be selected), which saves calls and changes nothing in the result.
    """

    name = "eagle2"

    def __init__(self, topk: int = 10, depth: int = 6):
        self.topk = _positive_int(topk, "topk")
        self.depth = _positive_int(depth, "depth")

    def params(self) -> dict:
        return {"topk": self.topk, "depth": self.depth}

    def _build(self, src, budget, context_ids):
        # pool entries: [score, gen, parent_gen, token, prob, rank, path]
        pool: list[tuple[float, int, int, int, float, int, np.ndarray]] = []
        frontier = [(1.0, -1, ROOT_PATH)]
        for level in range(self.depth):
            if len(pool) >= budget:
                bar = sorted((-c[0], c[1]) for c in pool)[budget - 1]
                frontier = [f for f in frontier if f[0] > -bar[0]]
            if not frontier:
                break
            answer = src([f[2] for f in frontier], self.topk)
            children = []
            for (score, gen, path), cands in zip(frontier, answer):
                for r, (tok, prob) in enumerate(cands):
                    entry = (score * prob, len(pool), gen, tok, prob, r, np.append(path, np.int64(tok)))
                    pool.append(entry)
                    children.append(entry)
            if level + 1 < self.depth:
                children.sort(key=lambda c: (-c[0], c[1]))
                frontier = [(c[0], c[1], c[6]) for c in children[:self.topk]]
        keep = sorted(pool, key=lambda c: (-c[0], c[1]))[:budget]
        keep.sort(key=lambda c: c[1])
        tree = _Growing()
        node_of: dict[int, int] = {-1: -1}
        for _score, gen, parent_gen, tok, prob, r, _ in keep:
            if parent_gen not in node_of:  # cannot happen (see the docstring); kept as a guard
                continue
            node_of[gen] = tree.add(node_of[parent_gen], tok, prob, r)
        return tree.finish(self, [src], candidates=len(pool),
                           cumulative=[float(c[0]) for c in keep if c[1] in node_of])


class DySpecBuilder(Builder):
    """``dyspec(threshold=None, topk=8, max_depth=None)``: DySpec's greedy dynamic tree (Xiong et al. 2024,
    "DySpec: Faster Speculative Decoding with Dynamic Token Tree Structure", its greedy expansion algorithm):
    a max-heap of candidate nodes keyed by cumulative draft probability; pop the best, add it to the tree, push
    its children (the drafter's top-``topk`` after it); stop when ``budget`` nodes are in or when the best
    candidate's cumulative probability is below ``threshold``. Nodes come out in the order they were popped,
    i.e. by decreasing cumulative probability.

    Batching (where it differs from a literal one-call-per-pop loop, not in its result): a pop is made without
    a call whenever no node without known children could have a child that beats the best known candidate (a
    child never scores above its parent). Otherwise one call expands every added node that can still matter
    (not below ``threshold``, above ``max_depth``, or outranked by more known candidates than the budget has
    room for) *and*, ahead of time, every candidate that could still be picked within the budget (the
    remaining-budget best of the heap); a candidate expanded ahead brings its children along when it is
    picked. The tree is exactly the literal loop's; the calls drop from one per node to about one per level,
    at the price of expanding some candidates that are never picked (``meta["expand_paths"]``).
    Ties: (cumulative probability, earlier parent, better rank). DySpec samples the children from the draft
    distribution; a drafter's top-k plays that part here.
    """

    name = "dyspec"

    def __init__(self, threshold: float | None = None, topk: int = 8, max_depth: int | None = None):
        if threshold is not None:
            try:
                threshold = float(threshold)
            except (TypeError, ValueError) as exc:
                raise SpeculativeError(f"threshold must be a probability in [0, 1] or None, got {threshold!r}") \
                    from exc
            if not 0 <= threshold <= 1:
                raise SpeculativeError(f"threshold must be a probability in [0, 1] or None, got {threshold!r}")
        self.threshold = threshold
        self.topk = _positive_int(topk, "topk")
        self.max_depth = _optional_depth(max_depth)

    def params(self) -> dict:
        return {"threshold": self.threshold, "topk": self.topk, "max_depth": self.max_depth}

    def _build(self, src, budget, context_ids):
        tree = _Growing()
        value: list[float] = []
        max_depth = budget if self.max_depth is None else self.max_depth
        threshold = -1.0 if self.threshold is None else self.threshold
        k = min(self.topk, budget)
        heap: list[tuple[float, int, int, int, float]] = []  # (-value, parent, rank, token, prob)
        known: dict[tuple[int, int], list[tuple[int, float]]] = {}  # children of candidates expanded ahead
        pending = [-1]  # added nodes (and the root, -1) whose children are not known yet

        def push_children(node: int, cands) -> None:
            for r, (tok, prob) in enumerate(cands):
                heapq.heappush(heap, (-_val(value, node) * prob, node, r, tok, prob))

        while tree.size < budget:
            pending = [x for x in pending if _val(value, x) >= threshold and _depth(tree, x) < max_depth]
            if pending and (not heap or (heap[0][0], heap[0][1]) >= min((-_val(value, x), x) for x in pending)):
                # the next pick may be a child of a pending node: expand the pending nodes that can still
                # matter, and ahead of time every candidate that could be picked within the budget
                room = budget - tree.size
                ahead = heapq.nsmallest(room, heap)
                if len(heap) >= room:  # nodes outranked by `room` known candidates are never needed
                    bar = ahead[-1][:2]
                    pending = [x for x in pending if (-_val(value, x), x) < bar]
                ahead = [c for c in ahead if (c[1], c[2]) not in known and -c[0] >= threshold
                         and _depth(tree, c[1]) + 1 < max_depth]
                paths = [tree.path(x) for x in pending]
                paths += [np.append(tree.path(c[1]), np.int64(c[3])) for c in ahead]
                answer = src(paths, k)
                for x, cands in zip(pending, answer):
                    push_children(x, cands)
                for c, cands in zip(ahead, answer[len(pending):]):
                    known[(c[1], c[2])] = cands
                pending = []
                continue
            if not heap or -heap[0][0] < threshold:
                break
            neg, parent, rank, tok, prob = heapq.heappop(heap)
            node = tree.add(parent, tok, prob, rank)
            value.append(-neg)
            if (parent, rank) in known:
                push_children(node, known.pop((parent, rank)))
            else:
                pending.append(node)
        return tree.finish(self, [src], cumulative=list(value))


def _val(value: list[float], node: int) -> float:
    return 1.0 if node < 0 else value[node]


def _depth(tree: _Growing, node: int) -> int:
    return 0 if node < 0 else tree.depth[node]


class GooseBuilder(Builder):
    """``goose(spine=None, branch=None, max_spine=None, branch_width=4, spine_acceptance=0.7, fallback=None)``:
    Goose's anisotropic *spine tree* (Jin, Nguyen & Inoue 2026, "Goose: Anisotropic Speculation Trees for
    Training-Free Speculative Decoding", arXiv 2604.02047): a deep chain of high-acceptance tokens from one
    source (the *spine*, e.g. prompt lookup's context match) with wide one-token branches of low-acceptance
    alternatives from another source (the *branch* source, e.g. Token Recycling or an n-gram model) at the root
    and at every spine node.

    Sources: ``spine`` and ``branch`` are ``expand(paths, k)`` callables or `Drafter` objects (then ``build``
    needs ``context_ids=``); ``None`` uses the ``expand`` given to ``build``. `drafters` lists the Drafter
    sources so that a decoding loop can reset/observe them.

    Conventions chosen here (the paper's own code was not available to follow):

    * the spine is the spine source's top-1 chain, up to ``max_spine`` (default: the budget) tokens, one call
      per token; the branches come from one batched call over the root and every spine node, the branch
      source's top-``branch_width`` after each, minus the spine's own next token;
    * budget allocation follows the paper's expected-accepted-tokens argument with a fixed spine acceptance
      ``a`` (``spine_acceptance``): spine node j is worth ``a^j``; a branch candidate with branch probability q
      after spine node j is worth ``a^j * (1 - a) * q`` (it only helps when the spine's next token is
      rejected; ``a^S * q`` after the last spine node S). The ``budget`` best are kept, which is always a tree;
    * children order: the spine child first, then the branches in the branch source's order;
    * when the spine source has nothing, the tree is built by ``fallback`` (a builder or a builder name, run on
      the branch source) if given, else it is the root's top-``branch_width`` branches.

    ``meta["source"]`` says for every node whether it came from the ``"spine"`` or a ``"branch"``.
    """

    name = "goose"

    def __init__(self, spine=None, branch=None, max_spine: int | None = None, branch_width: int = 4,
                 spine_acceptance: float = 0.7, fallback=None):
        for what, s in (("spine", spine), ("branch", branch)):
            if s is not None and not callable(s) and not isinstance(s, Drafter):
                raise SpeculativeError(f"{what} must be an expand(paths, k) callable, a Drafter or None, "
                                       f"got {s!r}")
        self.spine = spine
        self.branch = branch
        self.max_spine = _optional_depth(max_spine, "max_spine")
        self.branch_width = _positive_int(branch_width, "branch_width")
        try:
            a = float(spine_acceptance)
        except (TypeError, ValueError) as exc:
            raise SpeculativeError(f"spine_acceptance must be in (0, 1], got {spine_acceptance!r}") from exc
        if not 0 < a <= 1:
            raise SpeculativeError(f"spine_acceptance must be in (0, 1], got {spine_acceptance!r}")
        self.spine_acceptance = a
        self.fallback = None if fallback is None else make_builder(fallback)

    def params(self) -> dict:
        return {"spine": _describe(self.spine), "branch": _describe(self.branch), "max_spine": self.max_spine,
                "branch_width": self.branch_width, "spine_acceptance": self.spine_acceptance,
                "fallback": None if self.fallback is None else self.fallback.name}

    def drafters(self) -> list[Drafter]:
        return [s for s in (self.spine, self.branch) if isinstance(s, Drafter)]

    def build(self, expand, budget: int, *, context_ids=None) -> DraftTree:
        """As `Builder.build`; ``expand`` may be ``None`` when both sources were given."""
        budget = check_budget(budget)
        src = None if expand is None else _Source(as_expand(expand, context_ids))
        return self._build(src, budget, context_ids)

    def _build(self, src, budget, context_ids):
        def pick(source, what):
            if source is None:
                if src is None:
                    raise SpeculativeError(f"goose has no {what} source: give {what}= or an expand to build()")
                return src
            return _Source(as_expand(source, context_ids, what), f"the {what} source")

        return self._build_two(pick(self.spine, "spine"), pick(self.branch, "branch"), budget, context_ids)

    def _build_two(self, spine_src: _Source, branch_src: _Source, budget: int, context_ids) -> DraftTree:
        a = self.spine_acceptance
        spine: list[tuple[int, float]] = []
        path = ROOT_PATH
        for _ in range(min(self.max_spine or budget, budget)):
            cands = spine_src([path], 1)[0]
            if not cands:
                break
            spine.append(cands[0])
            path = np.append(path, np.int64(cands[0][0]))
        sources = [spine_src, branch_src] if spine_src is not branch_src else [spine_src]
        if not spine and self.fallback is not None:
            tree = self.fallback._build(branch_src, budget, context_ids)
            tree.meta.update(builder=self.name, params=self.params(), fallback=self.fallback.name,
                             expand_calls=spine_src.calls + branch_src.calls,
                             expand_paths=spine_src.paths + branch_src.paths,
                             source=["branch"] * tree.size)
            return tree
        s = len(spine)
        spine_paths = [ROOT_PATH]
        for tok, _ in spine:
            spine_paths.append(np.append(spine_paths[-1], np.int64(tok)))
        answer = branch_src(spine_paths, self.branch_width + 1)
        # candidates: ((-value, kind, position j, rank among the branches), token, prob); kind 0 = spine, 1 = branch
        items = []
        for j, (tok, prob) in enumerate(spine, start=1):
            items.append(((-(a ** j), 0, j, 0), tok, prob))
        for j, cands in enumerate(answer):
            nxt = spine[j][0] if j < s else None
            branches = [c for c in cands if c[0] != nxt][:self.branch_width]
            reach = a ** j * ((1 - a) if j < s else 1.0)
            for r, (tok, prob) in enumerate(branches):
                v = reach * prob
                if v > 0:
                    items.append(((-v, 1, j, r), tok, prob))
        keep = sorted(items, key=lambda it: it[0])[:budget]
        keep.sort(key=lambda it: (it[0][1], it[0][2], it[0][3]))  # spine by depth, then branches by position
        tree = _Growing()
        spine_node = {0: -1}
        source = []
        for (_, kind, j, r), tok, prob in keep:
            if kind == 0:
                if j - 1 not in spine_node:  # cannot happen: spine values decrease with depth
                    continue
                spine_node[j] = tree.add(spine_node[j - 1], tok, prob, 0)
                source.append("spine")
            else:
                if j not in spine_node:
                    continue
                tree.add(spine_node[j], tok, prob, r + (1 if j + 1 in spine_node else 0))
                source.append("branch")
        # list each node's children spine-first: already so (spine nodes were added before all branches)
        return tree.finish(self, sources, spine_length=sum(1 for x in source if x == "spine"),
                           spine_proposed=s, source=source)


def _describe(source) -> str | None:
    if source is None:
        return None
    if isinstance(source, Drafter):
        return repr(source)
    return getattr(source, "__name__", type(source).__name__)


BUILDERS: dict[str, Callable[..., Builder]] = {
    "chain": ChainBuilder,
    "kary": KaryBuilder,
    "medusa": MedusaBuilder,
    "sequoia": SequoiaBuilder,
    "eagle2": Eagle2Builder,
    "dyspec": DySpecBuilder,
    "goose": GooseBuilder,
}


def make_builder(name, **params) -> Builder:
    """A tree builder by name (``chain``, ``kary``, ``medusa``, ``sequoia``, ``eagle2``, ``dyspec``,
    ``goose``); a `Builder` instance is returned as it is. ``make_builder("kary", k=2, depth=3)``."""
    if isinstance(name, Builder):
        if params:
            raise SpeculativeError("parameters were given with a Builder instance; build a new one instead")
        return name
    if name not in BUILDERS:
        raise SpeculativeError(f"unknown tree builder {name!r}; choose one of {sorted(BUILDERS)}")
    try:
        return BUILDERS[name](**params)
    except TypeError as exc:
        raise SpeculativeError(f"tree builder {name!r}: {exc}") from exc
