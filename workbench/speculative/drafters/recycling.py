"""Token Recycling (Luo et al., 2024, "Turning Trash into Treasure"): reuse the target's own top-k candidates.

Follows the official code, Luowaterbi/TokenRecycling (``evaluation/inference_recycling.py``,
``model/recycling/tree_template_.py``):

* an adjacency matrix ``[vocab, 8]`` (int32) holds, for every token, the target's top-8 next tokens the last time
  that token was run through the target; after each verification pass, ``observe(fed_tokens, target_top)`` sets
  ``adjacency[fed_tokens[i]] = target_top[i, :8]`` for every node fed (the root and all draft nodes, accepted or
  not, which is the "recycling"); a token fed twice in one pass keeps its last row (the official code updates
  only after decoding steps, not from the prompt's prefill; calling ``observe`` on the prefill is up to the loop);
* ``propose`` fills the static tree template "2.2.2" (80 nodes, depth 6; 8, 21, 25, 15, 8, 3 nodes per level)
  breadth-first: the node at template path ``[r0, r1, ...]`` holds ``adjacency[token of its parent][r_last]``;
* the matrix persists across requests (the paper's "hot start"); :meth:`RecyclingDrafter.clear` empties it.

Where it differs, deliberately: the official matrix starts as zeros, so an unseen token drafts token 0 eight
times; here it starts empty (-1) and a node whose entry is unknown is dropped with its subtree, which verifies the
same tokens minus the hopeless ones. ``draft_prob`` (and ``expand``'s probabilities) come from a prior over the
rank of the candidate (``rank_prior``, default proportional to ``1 / (rank + 1)``), since the matrix stores no
probabilities. When ``budget`` is below the number of filled nodes, the first ``budget`` nodes in template order
(shallow first) are kept.

>>> d = RecyclingDrafter(vocab_size=16)
>>> d.observe(np.array([3, 5]), np.array([[5, 6, 7, 8, 9, 10, 11, 12], [1, 2, 3, 4, 0, 13, 14, 15]]))
>>> d.propose(np.array([2, 3]), budget=10).tokens.tolist()
[5, 6, 7, 8, 9, 10, 11, 12, 1, 2]
"""

from __future__ import annotations

import numpy as np

from workbench.errors import SpeculativeError
from workbench.speculative.drafter import Drafter, check_budget, check_context, register_drafter
from workbench.speculative.drafters.kernels import adjacency_update, check_ids, check_paths, fill_template
from workbench.speculative.tree import DraftTree

SMOLLM2_VOCAB = 49152

#: The official template "2.2.2" (``model/recycling/tree_template_.py``): each node is the path of candidate ranks
#: from the root, listed level by level.
TEMPLATE_222: tuple[tuple[int, ...], ...] = (
    (0,), (1,), (2,), (3,), (4,), (5,), (6,), (7,),
    (0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (0, 7), (1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1),
    (2, 2), (3, 0), (3, 1), (4, 0), (5, 0), (6, 0), (7, 0),
    (0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3), (0, 0, 4), (0, 0, 5), (0, 0, 6), (0, 0, 7), (0, 1, 0), (0, 1, 1),
    (0, 1, 2), (0, 2, 0), (0, 2, 1), (0, 3, 0), (0, 4, 0), (0, 5, 0), (0, 6, 0), (0, 7, 0), (1, 0, 0), (1, 0, 1),
    (1, 1, 0), (2, 0, 0), (3, 0, 0), (4, 0, 0), (5, 0, 0),
    (0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 0, 2), (0, 0, 0, 3), (0, 0, 0, 4), (0, 0, 1, 0), (0, 0, 1, 1), (0, 0, 2, 0),
    (0, 0, 3, 0), (0, 0, 4, 0), (0, 1, 0, 0), (0, 2, 0, 0), (1, 0, 0, 0), (2, 0, 0, 0), (3, 0, 0, 0),
    (0, 0, 0, 0, 0), (0, 0, 0, 0, 1), (0, 0, 0, 0, 2), (0, 0, 0, 1, 0), (0, 0, 0, 2, 0), (0, 0, 1, 0, 0),
    (0, 1, 0, 0, 0), (1, 0, 0, 0, 0),
    (0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 1), (0, 0, 0, 1, 0, 0),
)

TEMPLATES = {"2.2.2": TEMPLATE_222}


def template_arrays(template, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(parents int32 [N], ranks int32 [N]) of a template given as rank paths; validates it (every path's prefix
    listed before it, ranks in ``[0, k)``, no duplicates)."""
    where: dict[tuple[int, ...], int] = {}
    parents, ranks = [], []
    for i, path in enumerate(template):
        try:
            path = tuple(int(r) for r in path)
        except (TypeError, ValueError):
            raise SpeculativeError(f"template node {i} must be a sequence of ranks, got {path!r}") from None
        if not path:
            raise SpeculativeError(f"template node {i} is empty; the root is implicit")
        if path in where:
            raise SpeculativeError(f"template node {i} {list(path)} is listed twice")
        if not all(0 <= r < k for r in path):
            raise SpeculativeError(f"template node {i} {list(path)} has a rank outside [0, {k})")
        if len(path) > 1 and path[:-1] not in where:
            raise SpeculativeError(f"template node {i} {list(path)}: its parent {list(path[:-1])} must be listed "
                                   "before it")
        parents.append(where[path[:-1]] if len(path) > 1 else -1)
        ranks.append(path[-1])
        where[path] = i
    if not parents:
        raise SpeculativeError("the template has no nodes")
    return np.asarray(parents, np.int32), np.asarray(ranks, np.int32)


@register_drafter("recycling")
class RecyclingDrafter(Drafter):
    """Token Recycling drafter; see the module docstring.

    Parameters: ``vocab_size`` (49152, SmolLM2's): rows of the adjacency matrix; ``k`` (8): candidates kept per
    token; ``template`` (``"2.2.2"``, the official 80-node tree, or a list of rank paths); ``rank_prior`` (None:
    ``1 / (r + 1)`` normalised over the ``k`` ranks): the probability assigned to a rank-``r`` candidate.
    """

    name = "recycling"

    def __init__(self, vocab_size: int = SMOLLM2_VOCAB, k: int = 8, template="2.2.2", rank_prior=None):
        self.vocab_size = check_budget(vocab_size, "vocab_size")
        self.k = check_budget(k, "k")
        if isinstance(template, str):
            if template not in TEMPLATES:
                raise SpeculativeError(f"unknown template {template!r}; choose one of {sorted(TEMPLATES)} or give "
                                       "a list of rank paths")
            paths = TEMPLATES[template]
        else:
            paths = template
        self.template = template
        self.t_parent, self.t_rank = template_arrays(paths, self.k)
        if rank_prior is None:
            prior = 1.0 / np.arange(1, self.k + 1)
            prior = prior / prior.sum()
        else:
            prior = np.asarray(rank_prior, np.float64)
            if prior.shape != (self.k,) or not np.all(np.isfinite(prior)) or prior.min() < 0 or prior.max() > 1:
                raise SpeculativeError(f"rank_prior must hold {self.k} probabilities in [0, 1], got {rank_prior!r}")
        self.rank_prior = prior.astype(np.float32)
        self._rank_prior_param = rank_prior
        self.adjacency = np.full((self.vocab_size, self.k), -1, np.int32)

    def params(self) -> dict:
        return {"vocab_size": self.vocab_size, "k": self.k, "template": self.template,
                "rank_prior": self._rank_prior_param}

    def clear(self) -> None:
        """Forget everything learnt (a cold start)."""
        self.adjacency.fill(-1)

    def _check_tokens(self, ids: np.ndarray, what: str) -> np.ndarray:
        check_ids(ids, what)
        if ids.size and int(ids.max()) >= self.vocab_size:
            raise SpeculativeError(f"{what} holds token id {int(ids.max())}, outside the adjacency matrix's "
                                   f"vocabulary of {self.vocab_size}")
        return ids

    def observe(self, fed_tokens, target_top) -> None:
        fed = np.asarray(fed_tokens)
        top = np.asarray(target_top)
        if fed.ndim != 1 or not np.issubdtype(fed.dtype, np.integer):
            raise SpeculativeError(f"fed_tokens must be a 1-D integer array, got {fed.dtype} {fed.shape}")
        if top.ndim != 2 or top.shape[0] != fed.shape[0] or not np.issubdtype(top.dtype, np.integer):
            raise SpeculativeError(f"target_top must be an integer array [{fed.shape[0]}, K] (one row per fed token), "
                                   f"got {top.dtype} {top.shape}")
        fed = self._check_tokens(fed.astype(np.int64), "fed_tokens")
        top = self._check_tokens(top.astype(np.int64), "target_top")
        adjacency_update(self.adjacency, fed, top.astype(np.int32))

    def propose(self, context_ids, budget: int) -> DraftTree:
        ctx = self._check_tokens(check_context(context_ids), "the context")
        budget = check_budget(budget)
        tokens, parents, ranks, src = fill_template(self.adjacency, int(ctx[-1]), self.t_parent, self.t_rank,
                                                    budget)
        return DraftTree.from_parents(tokens, parents, self.rank_prior[ranks], drafter=self.name,
                                      ranks=ranks.tolist(), template_nodes=src.tolist())

    def expand(self, context_ids, paths, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """``adjacency[last token of context + path][:k]``, unknown entries dropped, probs from ``rank_prior``."""
        ctx = self._check_tokens(check_context(context_ids), "the context")
        k = check_budget(k, "k")
        out = []
        for i, path in enumerate(check_paths(paths)):
            last = int(path[-1]) if path.size else int(ctx[-1])
            if last >= self.vocab_size:
                raise SpeculativeError(f"path {i} holds token id {last}, outside the vocabulary of {self.vocab_size}")
            row = self.adjacency[last, :k]
            keep = np.flatnonzero(row >= 0)
            out.append((row[keep].astype(np.int64), self.rank_prior[keep].astype(np.float32)))
        return out
