"""Where to draw a draft tree: the root and every node at (depth, row), leaves on consecutive rows in sibling order,
each parent centred on its children (a tidy tree, as in Medusa's and EAGLE's figures but computed, not drawn by
hand).

Example::

    x, y = tree_layout(np.array([-1, 0, 0, -1]))   # root + nodes 0..3; node 0 has children 1, 2
    x.tolist(), y.tolist()   # ([0, 1, 2, 2, 1], [1.25, 0.5, 0.0, 1.0, 2.0])
"""

from __future__ import annotations

import numpy as np

from workbench.speculative.tree import check_parents, tree_depths


def tree_layout(parents) -> tuple[np.ndarray, np.ndarray]:
    """x (int [N + 1], the depth: 0 for the root) and y (float [N + 1], the row) of the root (index 0) and of the
    N draft nodes (index i + 1) of a tree given by ``parents`` (int [N], -1 = a child of the root)."""
    par = check_parents(parents)
    n = par.shape[0]
    x = np.zeros(n + 1, np.int64)
    if n:
        x[1:] = tree_depths(par)
    children: list[list[int]] = [[] for _ in range(n + 1)]
    for i, p in enumerate(par.tolist()):
        children[p + 1].append(i + 1)          # slot 0 = the root; parents come before children
    y = np.zeros(n + 1, np.float64)
    next_row = 0.0
    # depth-first from the root, children in sibling order; a node is placed after its subtree
    stack: list[tuple[int, bool]] = [(0, False)]
    while stack:
        node, expanded = stack.pop()
        kids = children[node]
        if not kids:
            y[node] = next_row
            next_row += 1.0
        elif expanded:
            y[node] = 0.5 * (y[kids[0]] + y[kids[-1]])
        else:
            stack.append((node, True))
            stack.extend((k, False) for k in reversed(kids))
    return x, y


#: node states of `step_layout`: the root, accepted, reached and rejected, never reached, the bonus token
ROOT, ACCEPTED, REJECTED, UNREACHED, BONUS = "root", "accepted", "rejected", "unreached", "bonus"


def step_layout(step) -> dict:
    """Everything a drawing of one `StepRecord` needs, root first, the bonus token last (as a child of the last
    accepted node, or of the root): ``x``, ``y`` (`tree_layout`), ``node`` (-1 root, 0..N-1 draft nodes, N bonus),
    ``parent`` (index into these rows, -1 for the root), ``token`` ids (the root's is -1: it is the last decided
    token, outside the tree), ``state`` (`ROOT`, `ACCEPTED`, `REJECTED`, `UNREACHED`, `BONUS`), ``draft_prob``,
    ``target_prob`` (NaN for the root and the bonus), ``depth``, and ``on_path`` (root, accepted nodes, bonus)."""
    tree = step.tree
    n = tree.size
    x, y = tree_layout(tree.parents)
    codes = step.node_states()                       # 2 accepted, 1 rejected, 0 never reached
    names = np.array([UNREACHED, REJECTED, ACCEPTED])
    last = int(step.accepted[-1]) + 1 if len(step.accepted) else 0
    bx, by = x[last] + 1, y[last]
    on_path = np.zeros(n + 2, bool)
    on_path[0] = on_path[-1] = True
    on_path[np.asarray(step.accepted, np.int64) + 1] = True
    nan = np.array([np.nan])
    return {
        "x": np.concatenate([x, [bx]]).astype(np.float64),
        "y": np.concatenate([y, [by]]),
        "node": np.arange(-1, n + 1),
        "parent": np.concatenate([[-1], np.asarray(tree.parents, np.int64) + 1, [last]]),
        "token": np.concatenate([[-1], np.asarray(tree.tokens, np.int64), [int(step.bonus)]]),
        "state": np.concatenate([[ROOT], names[codes], [BONUS]]).astype(object),
        "draft_prob": np.concatenate([nan, np.asarray(tree.draft_prob, np.float64), nan]),
        "target_prob": np.concatenate([nan, np.asarray(step.target_prob, np.float64), nan]),
        "depth": np.concatenate([x, [bx]]).astype(np.int64),
        "on_path": on_path,
    }
