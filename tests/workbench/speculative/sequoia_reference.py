"""Readable pure-Python transcription of Sequoia's tree search (Infini-AI-Lab/Sequoia, ``tree_search.py``).

Plain lists and loops in Sequoia's own indices (``m`` nodes with the root, ``l`` levels with the root's, ``b``
root children, ``p[1..W]`` with ``p[0]`` unused). It is the readable side of `workbench.speculative.sequoia`'s
Numba kernels (the tests check same table, same value, same tree) and the "pure-Python" side of
``benchmarks/speculative_dp.py``. Like the kernels, infeasible entries stay ``-inf`` (Sequoia's ``0 * -inf``
would give ``nan``) and ties keep the first maximum (smallest ``y``, smallest ``b``).
"""

from __future__ import annotations

NEG_INF = float("-inf")


def first_argmax(row):
    best, arg = NEG_INF, 0
    for i, v in enumerate(row):
        if v > best:
            best, arg = v, i
    return arg


def sequoia_table_reference(p, max_nodes, max_levels):
    """(T, best, choice_y) as nested lists: ``T[m][l][b]``, ``best[m][l] = max_b T[m][l][b]``, and the argmax
    ``y`` of each recurrence step."""
    w = len(p) - 1
    T = [[[NEG_INF] * (w + 1) for _ in range(max_levels + 1)] for _ in range(max_nodes + 1)]
    best = [[NEG_INF] * (max_levels + 1) for _ in range(max_nodes + 1)]
    choice_y = [[[0] * (w + 1) for _ in range(max_levels + 1)] for _ in range(max_nodes + 1)]
    for l in range(1, max_levels + 1):  # noqa: E741  (Sequoia's name)
        T[1][l][0] = 1.0
        best[1][l] = 1.0
    for m in range(2, max_nodes + 1):
        for l in range(2, max_levels + 1):  # noqa: E741
            # a root with one child that carries the other m - 1 nodes
            if best[m - 1][l - 1] > NEG_INF:
                T[m][l][1] = 1 + p[1] * best[m - 1][l - 1]
                choice_y[m][l][1] = 1
            # b children: the first b - 1 on y nodes (root included), the b-th child's subtree on m - y
            for b in range(2, w + 1):
                max_value, new_y = NEG_INF, 0
                for y in range(1, m):
                    if T[y][l][b - 1] == NEG_INF or best[m - y][l - 1] == NEG_INF:
                        continue
                    new_value = T[y][l][b - 1] + p[b] * best[m - y][l - 1]
                    if new_value > max_value:
                        max_value, new_y = new_value, y
                T[m][l][b] = max_value
                choice_y[m][l][b] = new_y
            best[m][l] = max(T[m][l])
    return T, best, choice_y


def sequoia_tree_reference(T, choice_y, m, l, b):  # noqa: E741
    """Sequoia's grow map read back: ``branch_map[(m, l, b)]`` lists the (size, levels, branching) state of each
    child, built as in ``tree_search.py``; the nodes are expanded breadth-first. Returns (parents, ranks) of the
    nodes below the root (``-1`` = child of the root, ranks 0-based)."""
    memo = {}

    def branch_map(x, y, z):
        if z == 0:
            return []
        if (x, y, z) not in memo:
            split = choice_y[x][y][z]
            rest = x - split
            memo[(x, y, z)] = branch_map(split, y, z - 1) + [(rest, y - 1, first_argmax(T[rest][y - 1]))]
        return memo[(x, y, z)]

    states = [(m, l, b)]
    parents = [-1]
    ranks = [0]
    active = [True]
    while True:
        expanded = False
        for i in range(len(active)):
            if not active[i]:
                continue
            active[i] = False
            expanded = True
            children = branch_map(*states[i])
            assert len(children) == states[i][2]
            for r, state in enumerate(children):
                states.append(state)
                parents.append(i)
                ranks.append(r)
                active.append(True)
        if not expanded:
            break
    assert len(states) == m
    return [q - 1 for q in parents[1:]], ranks[1:]


def sequoia_plan_reference(acceptance, budget, max_depth):
    """(parents, ranks, expected) of the best tree with at most ``budget`` draft nodes and ``max_depth`` levels
    below the root (the largest feasible size when fewer fit)."""
    p = [0.0] + [float(a) for a in acceptance]
    T, best, choice_y = sequoia_table_reference(p, budget + 1, max_depth + 1)
    levels, m = max_depth + 1, budget + 1
    while best[m][levels] == NEG_INF:
        m -= 1
    b = first_argmax(T[m][levels])
    parents, ranks = sequoia_tree_reference(T, choice_y, m, levels, b)
    return parents, ranks, best[m][levels]


def sequoia_table_literal(p, max_nodes, max_levels):
    """Sequoia's loop as ``tree_search.py`` writes it, in plain Python: the inner loop recomputes
    ``max(T[m - y][l - 1])`` for every ``y`` instead of reading a precomputed maximum. Same table as
    `sequoia_table_reference` (for vectors without zeros, where Sequoia's ``0 * -inf`` never arises); kept as the
    literal anchor of ``benchmarks/speculative_dp.py``."""
    w = len(p) - 1
    T = [[[NEG_INF] * (w + 1) for _ in range(max_levels + 1)] for _ in range(max_nodes + 1)]
    for l in range(1, max_levels + 1):  # noqa: E741
        T[1][l][0] = 1.0
    for m in range(2, max_nodes + 1):
        for l in range(2, max_levels + 1):  # noqa: E741
            T[m][l][1] = 1 + p[1] * max(T[m - 1][l - 1])
            for b in range(2, w + 1):
                max_value = NEG_INF
                for y in range(1, m):
                    new_value = T[y][l][b - 1] + p[b] * max(T[m - y][l - 1])
                    if new_value > max_value:
                        max_value = new_value
                T[m][l][b] = max_value
    return T
