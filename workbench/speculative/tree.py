"""`DraftTree`: the one representation of a speculative draft, from a chain of 4 tokens to an 80-node tree.

A draft hangs below an implicit *root*: the last token that is already decided (the last prompt token, or the
previous step's bonus token) and not yet in the target's KV cache. Nodes ``0..N-1`` are stored in topological order
(every parent comes before its children) as flat arrays:

=============  ============  ========  ==============================================================================
field          shape         dtype     meaning
=============  ============  ========  ==============================================================================
tokens         [N]           int64     the drafted token of each node
parents        [N]           int32     index of the parent node, ``-1`` for a child of the root
depth          [N]           int32     1 for children of the root, parent's depth + 1 below (derived)
draft_prob     [N]           float32   the drafter's probability of the token given its parent's path, q(x | path)
draft_dists    [N + 1, V]    float32   optional: the distribution each node's children were drawn from (row 0: the
                                       root's, row ``i + 1``: node ``i``'s); speculative *sampling* needs it for
                                       model-based drafters. ``None`` means the children were chosen
                                       deterministically (model-free drafters, greedy drafts): verifiers then treat
                                       each proposal as a point mass, which is still lossless.
=============  ============  ========  ==============================================================================

Siblings keep their order: the first child of a node is its drafter's first choice. That order is what the
verifiers walk and what positional acceptance (`per-position` vectors, Sequoia's) refers to.

Example::

    t = DraftTree.from_parents(tokens=[5, 7, 9], parents=[-1, 0, -1])   # root -> 5 -> 7, root -> 9
    t.depth                    # [1, 2, 1]
    t.attention_mask()         # [[T, F, F], [T, T, F], [F, F, T]]   (ancestor-or-self)
    t.paths()                  # [[0, 1], [2]]   root-to-leaf node indices
    t.feed(root_token=3)       # ([3, 5, 7, 9], [-1, 0, 1, 0]): what the target model is run on
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from workbench.errors import SpeculativeError


@njit(cache=True)
def tree_depths(parents):
    """Depth of every node (1 below the root). ``parents`` int32 [N], topological order. [-1, 0, 1] -> [1, 2, 3]."""
    n = parents.shape[0]
    depth = np.empty(n, np.int32)
    for i in range(n):
        p = parents[i]
        depth[i] = 1 if p < 0 else depth[p] + 1
    return depth


@njit(cache=True)
def tree_attention_mask(parents):
    """bool [N, N]: ``mask[i, j]`` is True when node j is node i or one of its ancestors (what i may attend to)."""
    n = parents.shape[0]
    mask = np.zeros((n, n), np.bool_)
    for i in range(n):
        mask[i, i] = True
        p = parents[i]
        if p >= 0:
            for j in range(p + 1):
                mask[i, j] = mask[p, j]
    return mask


@njit(cache=True)
def tree_position_ids(parents, offset):
    """int64 [N]: position of each node in the sequence, ``offset + depth - 1`` (``offset`` = position of depth 1)."""
    depth = tree_depths(parents)
    pos = np.empty(parents.shape[0], np.int64)
    for i in range(parents.shape[0]):
        pos[i] = offset + depth[i] - 1
    return pos


@njit(cache=True)
def tree_leaf_paths(parents):
    """Root-to-leaf node paths: int32 [n_leaves, max_depth], each row padded with -1; leaves in node order."""
    n = parents.shape[0]
    has_child = np.zeros(n, np.bool_)
    for i in range(n):
        if parents[i] >= 0:
            has_child[parents[i]] = True
    depth = tree_depths(parents)
    n_leaves = 0
    max_depth = 0
    for i in range(n):
        if not has_child[i]:
            n_leaves += 1
        if depth[i] > max_depth:
            max_depth = depth[i]
    out = np.full((n_leaves, max_depth), -1, np.int32)
    row = 0
    for i in range(n):
        if has_child[i]:
            continue
        node = i
        while node >= 0:
            out[row, depth[node] - 1] = node
            node = parents[node]
        row += 1
    return out


@njit(cache=True)
def tree_children(parents):
    """Children in CSR form over the root plus the nodes: slot 0 is the root, slot ``i + 1`` node ``i``.
    Returns (ptr int32 [N + 2], child int32 [N]); the children of slot s are ``child[ptr[s]:ptr[s + 1]]`` in node
    order (= the drafter's rank order)."""
    n = parents.shape[0]
    ptr = np.zeros(n + 2, np.int32)
    for i in range(n):
        ptr[parents[i] + 2] += 1
    for s in range(1, n + 2):
        ptr[s] += ptr[s - 1]
    fill = ptr[:-1].copy()
    child = np.empty(n, np.int32)
    for i in range(n):
        s = parents[i] + 1
        child[fill[s]] = i
        fill[s] += 1
    return ptr, child


def check_parents(parents: np.ndarray) -> np.ndarray:
    """Validate a parent array (int, -1 for the root) and return it as int32; clear errors for cycles, parents
    that point outside the tree or after their child (the arrays must be in topological order)."""
    p = np.asarray(parents)
    if p.ndim != 1:
        raise SpeculativeError(f"parents must be a 1-D array, got shape {p.shape}")
    if p.size and not np.issubdtype(p.dtype, np.integer):
        raise SpeculativeError(f"parents must be integers (-1 for a child of the root), got dtype {p.dtype}")
    n = p.shape[0]
    p = p.astype(np.int64)
    bad = np.flatnonzero((p < -1) | (p >= n))
    if bad.size:
        i = int(bad[0])
        raise SpeculativeError(f"node {i} has parent {int(p[i])}, outside the tree of {n} nodes (-1 is the root)")
    late = np.flatnonzero(p >= np.arange(n))
    if late.size:
        i = int(late[0])
        # distinguish a real cycle from nodes that are merely out of order
        seen, node = set(), i
        while node >= 0 and node not in seen:
            seen.add(node)
            node = int(p[node])
        if node >= 0:
            raise SpeculativeError(f"the parents form a cycle through node {node}; a draft tree has no cycles")
        raise SpeculativeError(f"node {i}'s parent {int(p[i])} comes after it; list nodes in topological order "
                               "(parents before children)")
    return p.astype(np.int32)


@dataclass
class DraftTree:
    """A speculative draft (see the module docstring). Build with `DraftTree.from_parents` or `DraftTree.chain`."""

    tokens: np.ndarray
    parents: np.ndarray
    draft_prob: np.ndarray
    draft_dists: np.ndarray | None = None
    depth: np.ndarray = field(default=None)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.parents = check_parents(self.parents)
        n = self.parents.shape[0]
        tokens = np.asarray(self.tokens)
        if tokens.shape != (n,):
            raise SpeculativeError(f"tokens has shape {tokens.shape}, expected ({n},) like parents")
        if n and not np.issubdtype(tokens.dtype, np.integer):
            raise SpeculativeError(f"token ids must be integers, got dtype {tokens.dtype}")
        if n and tokens.min() < 0:
            raise SpeculativeError(f"token id {int(tokens.min())} is negative")
        self.tokens = tokens.astype(np.int64)
        prob = np.ones(n, np.float32) if self.draft_prob is None else np.asarray(self.draft_prob, np.float32)
        if prob.shape != (n,):
            raise SpeculativeError(f"draft_prob has shape {prob.shape}, expected ({n},)")
        if n and (not np.all(np.isfinite(prob)) or prob.min() < 0 or prob.max() > 1 + 1e-5):
            raise SpeculativeError("draft_prob must hold probabilities in [0, 1]")
        self.draft_prob = prob
        if self.draft_dists is not None:
            d = np.asarray(self.draft_dists, np.float32)
            if d.ndim != 2 or d.shape[0] != n + 1:
                raise SpeculativeError(f"draft_dists must be [N + 1, V] = [{n + 1}, V], got {d.shape}")
            if not np.all(np.isfinite(d)) or d.min() < 0:
                raise SpeculativeError("draft_dists must be finite and non-negative")
            if n and tokens.max() >= d.shape[1]:
                raise SpeculativeError(f"token id {int(tokens.max())} is outside draft_dists' vocabulary of "
                                       f"{d.shape[1]}")
            self.draft_dists = d
        self.depth = tree_depths(self.parents)

    # -- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_parents(cls, tokens, parents, draft_prob=None, draft_dists=None, **meta) -> DraftTree:
        return cls(tokens=tokens, parents=parents, draft_prob=draft_prob, draft_dists=draft_dists, meta=dict(meta))

    @classmethod
    def chain(cls, tokens, draft_prob=None, **meta) -> DraftTree:
        """A linear draft: every token the child of the one before."""
        n = len(tokens)
        return cls.from_parents(tokens, np.arange(-1, n - 1), draft_prob, **meta)

    @classmethod
    def empty(cls, **meta) -> DraftTree:
        return cls.from_parents(np.zeros(0, np.int64), np.zeros(0, np.int32), **meta)

    # -- views --------------------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return int(self.parents.shape[0])

    def __len__(self) -> int:
        return self.size

    @property
    def max_depth(self) -> int:
        return int(self.depth.max()) if self.size else 0

    def attention_mask(self) -> np.ndarray:
        return tree_attention_mask(self.parents)

    def position_ids(self, offset: int = 0) -> np.ndarray:
        return tree_position_ids(self.parents, offset)

    def paths(self) -> list[list[int]]:
        """Root-to-leaf node index paths."""
        return [[int(x) for x in row if x >= 0] for row in tree_leaf_paths(self.parents)]

    def path_to(self, node: int) -> list[int]:
        """Node indices from the root's child down to ``node``."""
        out = []
        while node >= 0:
            out.append(int(node))
            node = int(self.parents[node])
        return out[::-1]

    def children(self, node: int) -> np.ndarray:
        """Children of ``node`` (``-1`` for the root) in rank order."""
        ptr, child = tree_children(self.parents)
        return child[ptr[node + 1]:ptr[node + 2]]

    def feed(self, root_token: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens [N + 1], parents [N + 1]) with the root first: what one verification pass runs the target on.
        Row 0 of the target's output is its distribution after the root, row ``i + 1`` after node ``i``."""
        tokens = np.concatenate([[int(root_token)], self.tokens]).astype(np.int64)
        parents = np.concatenate([[-1], self.parents + 1]).astype(np.int32)
        parents[0] = -1
        return tokens, parents

    def check_vocab(self, vocab_size: int, who: str = "the drafter") -> None:
        if self.size and int(self.tokens.max()) >= vocab_size:
            raise SpeculativeError(f"{who} proposed token id {int(self.tokens.max())}, outside the model's "
                                   f"vocabulary of {vocab_size}")

    def to_dict(self) -> dict:
        return {"tokens": self.tokens.tolist(), "parents": self.parents.tolist(),
                "draft_prob": [float(x) for x in self.draft_prob], "meta": self.meta}

    def __repr__(self) -> str:
        return f"DraftTree({self.size} nodes, depth {self.max_depth}, tokens={self.tokens[:8].tolist()}...)"
