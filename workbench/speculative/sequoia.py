"""Sequoia's dynamic program for the best static draft tree, and its hardware-aware choice of budget and depth.

Follows Infini-AI-Lab/Sequoia, ``tree_search.py`` (Chen et al., 2024, "Sequoia: Scalable, Robust, and
Hardware-aware Speculative Decoding"), with our own code: Numba kernels over flat float64/int32 arrays, a
readable pure-Python transcription of the same recurrence lives in ``tests/workbench/speculative``.

The model: a *positional acceptance vector* ``p[1..W]``, where ``p[i]`` is the probability that the target accepts
the i-th child of an accepted node (i = the rank of the child among its siblings, best first), i.e. the marginal
probability that the i-th candidate is the one accepted -- what Sequoia's ``test_accept.py`` measures: the
fraction of steps whose accepted child was the i-th. At most one child is accepted, so ``sum(p) <= 1`` for a
vector measured that way; the DP itself only needs ``0 <= p[i] <= 1``. (A *conditional* vector ``c[i]`` = the
probability that the i-th child is accepted given children 1..i-1 were rejected converts with
`positional_from_conditional`: ``p[i] = c[i] * prod_{j<i} (1 - c[j])``.) Under this model a node is reached with
the product of ``p[rank]`` along its path, so the expected number of tokens a verification pass yields is::

    E(tree) = 1 + sum over nodes of prod_{v on the root-to-node path} p[rank(v)]

the 1 being the bonus token the target always adds; `expected_accepted` computes it, and it is the value Sequoia's
DP reports.

The recurrence (Sequoia's indices: ``m`` counts the nodes *including the root*, ``l`` the levels *including the
root's*, ``b`` the number of root children)::

    T[1][l][0] = 1                                    for l >= 1 (a lone root)
    T[m][l][1] = 1 + p[1] * max_b T[m-1][l-1][b]      (one child carrying the other m-1 nodes)
    T[m][l][b] = max_{1 <= y < m} T[y][l][b-1] + p[b] * max_b' T[m-y][l-1][b']
                                                      (the first b-1 children on y nodes, the b-th on m-y)

and ``-inf`` where no tree fits. In the workbench's terms a draft of ``budget`` nodes below the root and at most
``max_depth`` levels is ``m = budget + 1``, ``l = max_depth + 1``. Ties go the way Sequoia's code sends them: the
smallest ``y`` (strict ``>``) and the smallest ``b`` (``torch.argmax`` returns the first maximum). The tree is read
back breadth-first like Sequoia's grow map: children of a node are consecutive and in rank order.

Deliberate differences from ``tree_search.py``:

* float64 instead of torch float32, and infeasible entries stay ``-inf`` (Sequoia computes ``0 * -inf = nan`` when
  some ``p[b] == 0``);
* back-pointers (the argmax ``y`` per state) instead of deep-copied child lists, the same tree out;
* a budget larger than the largest tree of width W and the given depth returns that largest tree (Sequoia would
  fail on the ``-inf`` entry); `SequoiaPlan.size` says how many nodes were used;
* `choose_budget` charges ``depth`` draft steps for a tree of ``depth`` levels below the root (what the builders
  spend: one ``expand`` call per level); Sequoia's loop multiplies its level index, which counts the root's level,
  i.e. one draft step more -- ``sequoia_levels=True`` reproduces that exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from workbench.errors import SpeculativeError

NEG_INF = -np.inf


# -- kernels ---------------------------------------------------------------------------------------------------
@njit(cache=True)
def sequoia_dp(p, max_nodes, max_levels):
    """Sequoia's DP in a loop-friendly layout.

    ``p`` float64 [W + 1] with ``p[0]`` unused (Sequoia's 1-based ranks), ``max_nodes`` = M (root included),
    ``max_levels`` = L (root level included). Returns ``(T, best, best_b, choice_y)`` with the node count last so
    that the inner loop over ``y`` walks memory contiguously: ``T[l, b, m]`` float64 [L + 1, W + 1, M + 1]
    (``-inf`` where no tree fits), ``best[l, m] = max_b T[l, b, m]``, ``best_b[l, m]`` its first argmax,
    ``choice_y[l, b, m]`` the first argmax ``y`` of the recurrence. `sequoia_table` gives Sequoia's layout.
    """
    w = p.shape[0] - 1
    T = np.full((max_levels + 1, w + 1, max_nodes + 1), NEG_INF)
    best = np.full((max_levels + 1, max_nodes + 1), NEG_INF)
    best_b = np.zeros((max_levels + 1, max_nodes + 1), np.int32)
    choice_y = np.zeros((max_levels + 1, w + 1, max_nodes + 1), np.int32)
    if max_nodes < 1:
        return T, best, best_b, choice_y
    for lv in range(1, max_levels + 1):
        T[lv, 0, 1] = 1.0
        best[lv, 1] = 1.0
    for m in range(2, max_nodes + 1):
        for lv in range(2, max_levels + 1):
            below = best[lv - 1]
            if below[m - 1] > NEG_INF:
                T[lv, 1, m] = 1.0 + p[1] * below[m - 1]
                choice_y[lv, 1, m] = 1
            for b in range(2, w + 1):
                value = NEG_INF
                arg = 0
                pb = p[b]
                first = T[lv, b - 1]
                # y >= b: the root and b - 1 children need b nodes (T is -inf below). Infeasible terms are
                # -inf, or NaN from 0 * -inf, and neither passes the strict `>`, so no test is needed.
                for y in range(b, m):
                    v = first[y] + pb * below[m - y]
                    if v > value:
                        value = v
                        arg = y
                T[lv, b, m] = value
                choice_y[lv, b, m] = arg
            top = NEG_INF
            arg_b = 0
            for b in range(w + 1):
                if T[lv, b, m] > top:
                    top = T[lv, b, m]
                    arg_b = b
            best[lv, m] = top
            best_b[lv, m] = arg_b
    return T, best, best_b, choice_y


def sequoia_table(p, max_nodes: int, max_levels: int):
    """`sequoia_dp` in Sequoia's own layout: ``(T[m, l, b], best[m, l], best_b[m, l], choice_y[m, l, b])``."""
    T, best, best_b, choice_y = sequoia_dp(np.asarray(p, np.float64), int(max_nodes), int(max_levels))
    return (np.ascontiguousarray(T.transpose(2, 0, 1)), np.ascontiguousarray(best.T),
            np.ascontiguousarray(best_b.T), np.ascontiguousarray(choice_y.transpose(2, 0, 1)))


@njit(cache=True)
def sequoia_tree(best_b, choice_y, m, levels, b):
    """Read the tree of state ``(m, levels, b)`` back breadth-first (Sequoia's grow-map order) from
    `sequoia_dp`'s ``best_b[l, m]`` and ``choice_y[l, b, m]``.

    Returns ``(parents int32 [m - 1], ranks int32 [m - 1])`` for the nodes below the root: ``parents[i] = -1`` for
    a child of the root, ranks 0-based (rank r uses ``p[r + 1]``)."""
    st_m = np.empty(m, np.int64)
    st_l = np.empty(m, np.int64)
    st_b = np.empty(m, np.int64)
    par = np.full(m, -1, np.int32)
    rank = np.zeros(m, np.int32)
    st_m[0] = m
    st_l[0] = levels
    st_b[0] = b
    count = 1
    head = 0
    while head < count:
        x = st_m[head]
        lv = st_l[head]
        z = st_b[head]
        # children of (x, lv, z): the first z-1 on y = choice_y[lv, z, x] nodes, the z-th on x - y; unroll
        # from the last child back to the first
        rest = x
        for r in range(z, 0, -1):
            y = choice_y[lv, r, rest]
            size = rest - y
            slot = count + r - 1
            st_m[slot] = size
            st_l[slot] = lv - 1
            st_b[slot] = best_b[lv - 1, size]
            par[slot] = head
            rank[slot] = r - 1
            rest = y
        count += z
        head += 1
    parents = np.empty(m - 1, np.int32)
    ranks = np.empty(m - 1, np.int32)
    for i in range(1, m):
        parents[i - 1] = par[i] - 1
        ranks[i - 1] = rank[i]
    return parents, ranks


@njit(cache=True)
def _tree_expectation_1d(parents, ranks, acc):
    n = parents.shape[0]
    reach = np.empty(n, np.float64)
    total = 1.0
    for i in range(n):
        up = 1.0 if parents[i] < 0 else reach[parents[i]]
        reach[i] = up * acc[ranks[i]]
        total += reach[i]
    return total


@njit(cache=True)
def _tree_expectation_2d(parents, ranks, depth, acc):
    n = parents.shape[0]
    reach = np.empty(n, np.float64)
    total = 1.0
    for i in range(n):
        up = 1.0 if parents[i] < 0 else reach[parents[i]]
        reach[i] = up * acc[depth[i] - 1, ranks[i]]
        total += reach[i]
    return total


# -- validation ------------------------------------------------------------------------------------------------
def check_acceptance(acceptance, *, ndim: int | tuple[int, ...] = 1, what: str = "acceptance") -> np.ndarray:
    """float64 copy of an acceptance vector (or matrix); every entry finite and in [0, 1]."""
    if isinstance(acceptance, (str, bytes)) or acceptance is None:
        raise SpeculativeError(f"{what} must be an array of probabilities in [0, 1], got {acceptance!r}")
    try:
        a = np.array(acceptance, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SpeculativeError(f"{what} must be an array of probabilities in [0, 1]: {exc}") from exc
    dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if a.ndim not in dims:
        shape = {1: "a 1-D vector [W]", 2: "a 2-D matrix [depth, rank]"}
        raise SpeculativeError(f"{what} must be {' or '.join(shape[d] for d in dims)}, got shape {a.shape}")
    if a.size == 0:
        raise SpeculativeError(f"{what} is empty; give at least one acceptance probability")
    if not np.all(np.isfinite(a)):
        raise SpeculativeError(f"{what} holds NaN or infinite values; give probabilities in [0, 1]")
    if a.min() < 0 or a.max() > 1:
        bad = a.min() if a.min() < 0 else a.max()
        raise SpeculativeError(f"{what} must lie in [0, 1]; found {bad:g}")
    return a


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise SpeculativeError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _depth_for(budget: int, max_depth, what: str = "max_depth") -> int:
    if max_depth is None:
        return budget
    depth = _positive_int(max_depth, what)
    if depth > budget:
        raise SpeculativeError(f"{what}={depth} is larger than the budget of {budget} nodes: a tree of {budget} "
                               f"nodes is at most {budget} deep; lower {what} or raise the budget")
    return depth


def positional_from_conditional(conditional) -> np.ndarray:
    """Sequoia's positional vector from conditional acceptances: ``p[i] = c[i] * prod_{j<i} (1 - c[j])``.
    ``[0.5, 0.5] -> [0.5, 0.25]``."""
    c = check_acceptance(conditional, what="conditional acceptance")
    survive = np.concatenate([[1.0], np.cumprod(1.0 - c)[:-1]])
    return c * survive


# -- results ---------------------------------------------------------------------------------------------------
@dataclass
class SequoiaPlan:
    """The best static tree of Sequoia's DP.

    ``parents`` int32 [n] (-1 = child of the root, breadth-first order), ``ranks`` int32 [n] (0-based sibling rank,
    the node uses ``acceptance[rank]``), ``expected``: expected tokens per verification pass including the bonus
    token (Sequoia's value), ``table``: the DP table T float64 [budget + 2, max_depth + 2, W + 1] in Sequoia's
    indices (``table[m, l, b]``: m nodes with the root, l levels with the root's, b root children; ``-inf`` where
    no tree fits)."""

    parents: np.ndarray
    ranks: np.ndarray
    expected: float
    table: np.ndarray = field(repr=False)
    acceptance: np.ndarray = field(default=None, repr=False)
    budget: int = 0
    max_depth: int = 0

    @property
    def size(self) -> int:
        return int(self.parents.shape[0])

    @property
    def depth(self) -> np.ndarray:
        """int32 [n]: depth of every node (1 below the root)."""
        d = np.empty(self.size, np.int32)
        for i, p in enumerate(self.parents):
            d[i] = 1 if p < 0 else d[p] + 1
        return d

    def best_by_size(self) -> np.ndarray:
        """float64 [budget + 1, max_depth + 1]: the best expectation with exactly n draft nodes (row n) and at most
        d levels below the root (column d); ``-inf`` where no tree fits, row/column 0 the lone root."""
        return self.table.max(axis=2)[1:, 1:]

    def summary(self) -> dict:
        widths = np.bincount(self.parents + 1, minlength=1)
        return {"nodes": self.size, "budget": self.budget, "max_depth": self.max_depth,
                "depth": int(self.depth.max()) if self.size else 0, "root_children": int(widths[0]),
                "expected_tokens": round(float(self.expected), 4), "width_W": int(self.table.shape[2] - 1)}


# -- public functions ------------------------------------------------------------------------------------------
def _sequoia_p(acceptance: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], acceptance]).astype(np.float64)


def sequoia_plan(acceptance, budget: int, max_depth: int | None = None) -> SequoiaPlan:
    """The tree of at most ``budget`` draft nodes and ``max_depth`` levels below the root that maximises the
    expected accepted tokens under the positional acceptance vector ``acceptance`` [W] (see the module docstring).

    ``max_depth=None`` allows any depth up to ``budget``. Example: ``acceptance=[0.8], budget=3`` -> the chain
    ``parents=[-1, 0, 1], ranks=[0, 0, 0]``, ``expected = 1 + 0.8 + 0.64 + 0.512 = 2.952``.
    """
    acc = check_acceptance(acceptance)
    budget = _positive_int(budget, "budget")
    depth = _depth_for(budget, max_depth)
    T, best, best_b, choice_y = sequoia_dp(_sequoia_p(acc), budget + 1, depth + 1)
    levels = depth + 1
    m = budget + 1
    while best[levels, m] == NEG_INF:  # more nodes than a tree of width W and this depth holds
        m -= 1
    parents, ranks = sequoia_tree(best_b, choice_y, m, levels, int(best_b[levels, m]))
    return SequoiaPlan(parents=parents, ranks=ranks, expected=float(best[levels, m]),
                       table=np.ascontiguousarray(T.transpose(2, 0, 1)), acceptance=acc, budget=budget,
                       max_depth=depth)


def expected_accepted(parents, ranks, acceptance) -> float:
    """Expected tokens per verification pass (accepted drafts + the bonus token) of a tree under positional
    acceptance: ``1 + sum_nodes prod_{path} acceptance[rank]``.

    ``parents`` (-1 = child of the root, topological order), ``ranks`` 0-based sibling ranks (``None``: the order
    of the siblings in ``parents``), ``acceptance`` [W] (Sequoia's vector) or [D, K] (Medusa's per-depth matrix:
    a node at depth d and rank r uses ``acceptance[d - 1, r]``). A chain of g nodes with constant acceptance a
    gives ``(1 - a^(g+1)) / (1 - a)``: ``expected_accepted([-1, 0], None, [0.5]) = 1 + 0.5 + 0.25 = 1.75``.
    """
    from workbench.speculative.tree import check_parents, tree_depths

    par = check_parents(np.asarray(parents))
    acc = check_acceptance(acceptance, ndim=(1, 2))
    if ranks is None:
        ranks = sibling_ranks(par)
    rk = np.asarray(ranks)
    if rk.shape != par.shape:
        raise SpeculativeError(f"ranks has shape {rk.shape}, expected {par.shape} like parents")
    if rk.size and (not np.issubdtype(rk.dtype, np.integer) or rk.min() < 0):
        raise SpeculativeError("ranks must be non-negative integers (0 = the drafter's first choice)")
    rk = rk.astype(np.int64)
    if par.size == 0:
        return 1.0
    width = acc.shape[-1]
    if rk.max() >= width:
        raise SpeculativeError(f"a node has sibling rank {int(rk.max())} but the acceptance has only {width} "
                               "ranks; give one probability per rank")
    if acc.ndim == 1:
        return float(_tree_expectation_1d(par, rk, acc))
    depth = tree_depths(par)
    if depth.max() > acc.shape[0]:
        raise SpeculativeError(f"the tree is {int(depth.max())} deep but the acceptance matrix has only "
                               f"{acc.shape[0]} depth rows")
    return float(_tree_expectation_2d(par, rk, depth, acc))


def sibling_ranks(parents) -> np.ndarray:
    """int32 [N]: each node's 0-based position among its parent's children, in node order. [-1, 0, -1] -> [0, 0, 1]."""
    par = np.asarray(parents, dtype=np.int64)
    seen: dict[int, int] = {}
    out = np.empty(par.shape[0], np.int32)
    for i, p in enumerate(par):
        out[i] = seen.get(int(p), 0)
        seen[int(p)] = out[i] + 1
    return out


VerifyTime = Callable[[int], float] | Mapping[int, float] | np.ndarray


def _verify_times(verify_time, max_budget: int) -> tuple[float, dict[int, float]]:
    """(time of a plain step, {n draft nodes: verify seconds}) for the candidate sizes 1..max_budget."""
    if callable(verify_time):
        times = {n: verify_time(n) for n in range(0, max_budget + 1)}
    elif isinstance(verify_time, Mapping):
        if 0 not in verify_time:
            raise SpeculativeError("verify_time needs the time of a plain decoding step (key 0, no draft nodes) "
                                   "to report the speedup against")
        times = {int(n): t for n, t in verify_time.items() if 0 <= int(n) <= max_budget}
    else:
        arr = np.asarray(verify_time, dtype=np.float64)
        if arr.ndim != 1 or arr.shape[0] < 2:
            raise SpeculativeError("verify_time must be a callable n -> seconds, a mapping {n: seconds} or an "
                                   "array of seconds indexed by the number of draft nodes n (entry 0 = a plain "
                                   f"decoding step), with at least 2 entries; got shape {arr.shape}")
        times = {n: float(arr[n]) for n in range(min(arr.shape[0], max_budget + 1))}
    clean = {}
    for n, t in times.items():
        try:
            t = float(t)
        except (TypeError, ValueError) as exc:
            raise SpeculativeError(f"verify_time({n}) is not a number: {t!r}") from exc
        if not np.isfinite(t) or t <= 0:
            raise SpeculativeError(f"verify_time({n}) = {t!r}; verification times must be positive seconds")
        clean[n] = t
    base = clean.pop(0)
    if not clean:
        raise SpeculativeError(f"verify_time gives no tree size between 1 and max_budget={max_budget}")
    return base, clean


def choose_budget(acceptance, verify_time: VerifyTime, draft_time_per_level: float, max_budget: int,
                  max_depth: int, *, sequoia_levels: bool = False) -> tuple[int, int, float]:
    """Sequoia's hardware-aware choice: the (budget n, depth d) maximising
    ``E(n, d) / (verify_time(n) + d * draft_time_per_level)``, E from one run of the DP (`sequoia_plan`).

    ``verify_time``: seconds of one verification pass over a tree of n draft nodes (the target runs n + 1 tokens,
    the root included), as a callable ``n -> seconds``, an array indexed by n, or a mapping ``{n: seconds}`` of
    the measured sizes (then only those are candidates, like Sequoia's ``valid_budget``); n = 0 is a plain
    decoding step and is required. Returns ``(budget, depth, speedup)`` with
    ``speedup = verify_time(0) * E / (verify_time(n) + d * draft_time_per_level)``, Sequoia's printed figure:
    expected tokens per second relative to plain decoding (it can be < 1 when drafting does not pay).
    Ties keep the smallest budget, then the smallest depth (Sequoia's loop order and strict ``<``).
    ``sequoia_levels=True`` charges ``d + 1`` draft steps, as ``tree_search.py`` does.
    """
    acc = check_acceptance(acceptance)
    max_budget = _positive_int(max_budget, "max_budget")
    depth_cap = _depth_for(max_budget, max_depth)
    try:
        draft = float(draft_time_per_level)
    except (TypeError, ValueError) as exc:
        raise SpeculativeError(f"draft_time_per_level must be seconds, got {draft_time_per_level!r}") from exc
    if not np.isfinite(draft) or draft < 0:
        raise SpeculativeError(f"draft_time_per_level must be non-negative seconds, got {draft_time_per_level!r}")
    base, times = _verify_times(verify_time, max_budget)
    _, best, _, _ = sequoia_dp(_sequoia_p(acc), max_budget + 1, depth_cap + 1)
    extra = 1 if sequoia_levels else 0
    choice, best_time = None, np.inf
    for n in sorted(times):
        for d in range(1, depth_cap + 1):
            e = best[d + 1, n + 1]
            if e == NEG_INF:
                continue
            per_token = (times[n] + (d + extra) * draft) / e
            if per_token < best_time:
                best_time, choice = per_token, (n, d)
    if choice is None:
        raise SpeculativeError("no tree fits the given sizes and depth")
    return choice[0], choice[1], float(base / best_time)


def warm_up() -> None:
    """Compile (or load from the cache) the kernels, so that the first interactive plan is fast."""
    T, best, best_b, choice_y = sequoia_dp(np.array([0.0, 0.5, 0.2]), 4, 3)
    sequoia_tree(best_b, choice_y, 4, 3, int(best_b[3, 4]))
    _tree_expectation_1d(np.array([-1], np.int32), np.array([0], np.int64), np.array([0.5]))
    _tree_expectation_2d(np.array([-1], np.int32), np.array([0], np.int64), np.array([1], np.int32),
                         np.array([[0.5]]))
