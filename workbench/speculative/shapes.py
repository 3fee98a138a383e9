"""Tree builders side by side under one acceptance vector: which shape each builder drafts at a budget, and how many
tokens it is expected to yield per verification (Sequoia's expectation, bonus included).

The acceptance vector ``p`` [W] is positional (Sequoia's): ``p[r]`` is the chance that the rank-r candidate below
a verified node is the one the target takes. A builder that ranks candidates by draft probability (EAGLE-2,
DySpec) sees a *calibrated* drafter whose rank-r candidate has probability ``p[r]`` at every node, so every builder
plans from the same information. Medusa gets the vector repeated at every depth.

Example::

    rows = compare_builders([0.6, 0.2, 0.1, 0.05], budget=16, names=("sequoia", "eagle2", "kary", "chain"))
    {r.name: round(r.expected, 2) for r in rows}    # Sequoia's DP is the largest: it is optimal for this model
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.errors import SpeculativeError
from workbench.speculative.sequoia import check_acceptance, expected_accepted, sibling_ranks
from workbench.speculative.tree import DraftTree

#: builders that can be planned from an acceptance vector alone (Goose needs two real drafters)
SHAPE_BUILDERS = ("sequoia", "eagle2", "dyspec", "medusa", "kary", "chain")


@dataclass
class BuilderShape:
    """One builder's tree at a budget: ``tree`` (tokens are candidate ranks), ``expected`` accepted tokens per
    verification (bonus included), ``params`` used."""

    name: str
    tree: DraftTree
    expected: float
    params: dict

    @property
    def size(self) -> int:
        return int(self.tree.size)

    @property
    def depth(self) -> int:
        return int(self.tree.max_depth)


def monotone_acceptance(acceptance) -> np.ndarray:
    """The acceptance vector made non-increasing by rank (its running minimum): for a best-first drafter a worse
    rank cannot be accepted more often than a better one, and a vector measured on a short run is noisy (a 0 at
    rank 4 and 0.04 at rank 5). Every builder in this module plans from this version. [0.4, 0.1, 0, 0.04] ->
    [0.4, 0.1, 0, 0]."""
    return np.minimum.accumulate(check_acceptance(acceptance))


def calibrated_expand(acceptance):
    """An ``expand(paths, k)`` whose rank-r candidate below any path is token r with probability ``acceptance[r]``
    (only the ranks before the first 0 are offered)."""
    acc = check_acceptance(acceptance)
    usable = int(np.argmin(acc > 0)) if (acc <= 0).any() else acc.shape[0]

    def expand(paths, k):
        n = int(min(k, usable))
        tokens = np.arange(n, dtype=np.int64)
        probs = acc[:n].astype(np.float32)
        return [(tokens, probs) for _ in paths]

    return expand


def _builder(name: str, acc: np.ndarray, budget: int, depth: int):
    from workbench.speculative.builders import make_builder

    width = int(np.count_nonzero(acc > 0))
    if name == "sequoia":
        params = {"acceptance": acc.tolist(), "max_depth": depth}
    elif name == "medusa":
        params = {"acceptance": np.tile(acc, (depth, 1)).tolist()}
    elif name == "eagle2":
        params = {"topk": max(1, min(width, 4)), "depth": depth}
    elif name == "dyspec":
        params = {"topk": max(1, min(width, 8)), "max_depth": depth}
    elif name == "kary":
        params = {"k": 2 if budget >= 2 else 1, "depth": depth}    # a binary tree, cut to the budget breadth-first
    elif name == "chain":
        params = {"gamma": min(budget, depth)}
    else:
        raise SpeculativeError(f"{name!r} cannot be planned from an acceptance vector; choose from {SHAPE_BUILDERS}")
    return make_builder(name, **params), params


def builder_shape(name: str, acceptance, budget: int, max_depth: int | None = None) -> BuilderShape:
    """The tree ``name`` drafts at ``budget`` nodes (at most ``max_depth`` levels, for every builder, the chain
    included; default: the budget, capped at 16) for a calibrated drafter with positional acceptance
    ``acceptance`` (made non-increasing: `monotone_acceptance`), and its expectation. Sequoia's DP is optimal
    among all trees within those two limits."""
    acc = monotone_acceptance(acceptance)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget <= 0:
        raise SpeculativeError(f"budget must be a positive integer, got {budget!r}")
    if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, (int, np.integer))
                                  or max_depth <= 0):
        raise SpeculativeError(f"max_depth must be a positive integer, got {max_depth!r}")
    if max_depth is not None and max_depth > budget:
        raise SpeculativeError(f"max_depth ({max_depth}) cannot exceed the budget ({budget})")
    depth = int(max_depth) if max_depth is not None else int(min(budget, 16))
    builder, params = _builder(name, acc, int(budget), depth)
    tree = builder.build(calibrated_expand(acc), int(budget))
    ranks = tree.meta.get("ranks")
    ranks = sibling_ranks(tree.parents) if ranks is None else np.asarray(ranks)
    expected = expected_accepted(tree.parents, ranks, acc) if tree.size else 1.0
    return BuilderShape(name=name, tree=tree, expected=float(expected), params=params)


def compare_builders(acceptance, budget: int, names=("sequoia", "eagle2", "kary"),
                     max_depth: int | None = None) -> list[BuilderShape]:
    """`builder_shape` for each of ``names`` at the same budget and acceptance vector."""
    return [builder_shape(n, acceptance, budget, max_depth) for n in names]
