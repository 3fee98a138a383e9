"""Balance metrics for MoE routing: the Switch/GShard load-balancing loss at micro-batch, sequence or global-batch
scope, the router z-loss, spread of expert loads (CV, MaxVio, entropy) and drop rate by token position.

Every function takes plain arrays (``T`` tokens, ``E`` experts, ``k`` slots per token), so a `Routing` feeds them
as ``load_balancing_loss(r.probs, r.requested)``, ``load_cv(r.loads)``, ``drop_rate_by_position(r, positions)``.

Example::

    probs = np.full((4, 2), 0.5); assignments = np.array([[0], [1], [0], [1]])
    load_balancing_loss(probs, assignments)      # 1.0: perfectly uniform routing
    max_violation(np.array([3, 1]))              # 0.5: the busiest expert holds 50% above the mean
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.errors import RoutingError

SCOPES = ("micro", "sequence", "global")


def _probs(probs, from_logits: bool) -> np.ndarray:
    if hasattr(probs, "detach"):
        probs = probs.detach().float().cpu().numpy()
    p = np.asarray(probs, dtype=np.float64)
    name = "logits" if from_logits else "probs"
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise RoutingError(f"{name} must be a non-empty 2-D array [tokens, experts], got shape {p.shape}")
    if not np.isfinite(p).all():
        raise RoutingError(f"{name} contain NaN or infinite values")
    if from_logits:
        p = np.exp(p - p.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)
    if (p < 0).any():
        raise RoutingError("probs must be >= 0 (pass from_logits=True for raw router logits)")
    return p


def _assignments(assignments, n_tokens: int, n_experts: int) -> np.ndarray:
    a = np.asarray(assignments)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != n_tokens:
        raise RoutingError(f"assignments must be [tokens, k] with {n_tokens} tokens (as many as probs), "
                           f"got shape {np.shape(assignments)}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise RoutingError(f"assignments must hold integer expert indices, got dtype {a.dtype}")
    if a.size and (a.min() < -1 or a.max() >= n_experts):
        raise RoutingError(f"assignments must be expert indices in [0, {n_experts}) or -1, "
                           f"got values from {a.min()} to {a.max()}")
    return a.astype(np.int64)


def _lbl(p: np.ndarray, a: np.ndarray) -> float:
    """E * sum_i f_i * P_i over one group of tokens; f_i = slots routed to i / (tokens * k)."""
    n, e = p.shape
    valid = a[a >= 0]
    f = np.bincount(valid, minlength=e) / float(a.size)
    return float(e * np.dot(f, p.mean(axis=0)))


def _groups(scope: str, n: int, sequence_ids, micro_batches: int) -> list[np.ndarray]:
    if scope == "global":
        return [np.arange(n)]
    seq = None
    if sequence_ids is not None:
        seq = np.asarray(sequence_ids)
        if seq.shape != (n,):
            raise RoutingError(f"sequence_ids must have one id per token ({n}), got shape {seq.shape}")
    if scope == "sequence":
        if seq is None:
            return [np.arange(n)]
        _, first, inverse = np.unique(seq, return_index=True, return_inverse=True)
        return [np.nonzero(inverse == g)[0] for g in np.argsort(first, kind="stable")]
    if isinstance(micro_batches, bool) or not isinstance(micro_batches, (int, np.integer)) or micro_batches < 1:
        raise RoutingError(f"micro_batches must be an integer >= 1, got {micro_batches!r}")
    if seq is None:
        if micro_batches > n:
            raise RoutingError(f"micro_batches={micro_batches} is more than the {n} tokens")
        return [c for c in np.array_split(np.arange(n), micro_batches)]
    _, first = np.unique(seq, return_index=True)
    order = seq[np.sort(first)]  # sequences in order of first appearance
    if micro_batches > order.size:
        raise RoutingError(f"micro_batches={micro_batches} is more than the {order.size} sequences "
                           "(a micro-batch holds whole sequences)")
    return [np.nonzero(np.isin(seq, chunk))[0] for chunk in np.array_split(order, micro_batches)]


def load_balancing_loss(probs, assignments, n_experts: int | None = None, *, from_logits: bool = False,
                        scope: str = "micro", sequence_ids=None, micro_batches: int = 1) -> float:
    """Switch/GShard load-balancing loss ``E * sum_i f_i * P_i``: ``f_i`` = fraction of the group's ``T_g * k``
    token slots routed to expert i (slots of -1 count for no expert), ``P_i`` = mean router probability of
    expert i over the group's tokens. Equals 1.0 for perfectly uniform routing; ``E`` at worst.

    ``probs`` [T, E] (softmax probabilities, or logits with ``from_logits=True``; for sigmoid routers pass
    row-normalised scores, ``s / s.sum(1, keepdims=True)``); ``assignments`` int [T, k] or [T] (pass
    ``Routing.requested`` for the before-capacity form Switch uses). ``scope``:

    * ``"micro"``: computed inside each of ``micro_batches`` micro-batches (contiguous tokens, or whole
      sequences when ``sequence_ids`` are given) and averaged, as data-parallel frameworks do;
    * ``"sequence"``: per sequence (``sequence_ids`` [T]) and averaged over sequences;
    * ``"global"``: f and P over the whole batch ("Demons in the Detail": global-batch balancing).

    ``probs=[[.5, .5]] * 4, assignments=[0, 1, 0, 1] -> 1.0``.
    """
    p = _probs(probs, from_logits)
    n, e = p.shape
    if n_experts is not None and int(n_experts) != e:
        raise RoutingError(f"n_experts={n_experts} but probs have {e} experts per token")
    a = _assignments(assignments, n, e)
    if scope not in SCOPES:
        raise RoutingError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
    return float(np.mean([_lbl(p[g], a[g]) for g in _groups(scope, n, sequence_ids, micro_batches)]))


def router_z_loss(logits) -> float:
    """ST-MoE router z-loss: ``mean over tokens of logsumexp(logits)^2``. ``logits`` [..., E].

    ``router_z_loss([[0., 0.]]) -> ln(2)^2 = 0.4805``.
    """
    x = np.asarray(logits.detach().float().cpu().numpy() if hasattr(logits, "detach") else logits, np.float64)
    if x.ndim < 1 or x.size == 0:
        raise RoutingError(f"logits must be a non-empty array [..., experts], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise RoutingError("logits contain NaN or infinite values")
    m = x.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]
    return float(np.mean(lse ** 2))


def _loads(loads) -> np.ndarray:
    ld = np.asarray(loads, dtype=np.float64)
    if ld.ndim != 1 or ld.size == 0:
        raise RoutingError(f"loads must be a 1-D array with one count per expert, got shape {ld.shape}")
    if not np.isfinite(ld).all() or (ld < 0).any():
        raise RoutingError("loads must be finite and >= 0")
    if ld.sum() == 0:
        raise RoutingError("every load is 0: no slot was routed, so balance is undefined")
    return ld


def load_cv(loads) -> float:
    """Coefficient of variation of expert loads: population std / mean. 0 = perfectly balanced.

    ``load_cv([2, 2, 2]) -> 0.0``, ``load_cv([4, 0]) -> 1.0``.
    """
    ld = _loads(loads)
    return float(ld.std() / ld.mean())


def max_violation(loads) -> float:
    """MaxVio (DeepSeek/Loss-Free Balancing): ``(max load - mean load) / mean load``. 0 = perfectly balanced.

    ``max_violation([3, 1]) -> 0.5``.
    """
    ld = _loads(loads)
    return float((ld.max() - ld.mean()) / ld.mean())


def load_entropy(loads, *, normalized: bool = True) -> float:
    """Entropy of the load distribution ``p_i = load_i / sum(load)`` in nats (``0 log 0 = 0``). With
    ``normalized`` (default) divided by ``ln E``: 1.0 = perfectly balanced, 0.0 = one expert takes everything
    (1.0 when E = 1).

    ``load_entropy([1, 1, 1, 1]) -> 1.0``; ``load_entropy([1, 1], normalized=False) -> ln 2``.
    """
    ld = _loads(loads)
    p = ld / ld.sum()
    nz = p[p > 0]
    h = float(-(nz * np.log(nz)).sum())
    if not normalized:
        return h
    return 1.0 if ld.size == 1 else h / float(np.log(ld.size))


@dataclass
class PositionDrops:
    """Drop rate per position bin: bin i covers positions ``[edges[i], edges[i + 1])``.

    ``edges`` float64 [B + 1], ``slots`` int64 [B] (slots that asked for an expert), ``dropped`` int64 [B],
    ``rate`` float64 [B] = dropped / slots (NaN for a bin without slots).
    """

    edges: np.ndarray
    slots: np.ndarray
    dropped: np.ndarray
    rate: np.ndarray

    def __repr__(self) -> str:
        cells = ", ".join(f"[{lo:g}, {hi:g}): {r:.3f}" for lo, hi, r in zip(self.edges[:-1], self.edges[1:], self.rate))
        return f"PositionDrops({cells})"


def drop_rate_by_position(dropped, positions, *, bins=8, valid=None) -> PositionDrops:
    """Fraction of token slots dropped, binned by token position.

    ``dropped`` bool [T, k] (or [T]), or a `Routing` (its ``dropped``, counting only slots with a requested
    expert); ``positions`` int [T]; ``bins``: a count of equal-width bins over ``[min, max + 1)`` or increasing
    edges (positions outside them are not counted); ``valid`` bool [T, k]: the slots that count (default all).

    ``dropped=[F, F, T, T], positions=[0, 1, 2, 3], bins=2 -> rate [0.0, 1.0]``.
    """
    if hasattr(dropped, "dropped") and hasattr(dropped, "requested"):
        valid = dropped.requested >= 0 if valid is None else valid
        dropped = dropped.dropped
    d = np.asarray(dropped, dtype=bool)
    if d.ndim == 1:
        d = d[:, None]
    pos = np.asarray(positions)
    if d.ndim != 2 or pos.shape != (d.shape[0],):
        raise RoutingError(f"positions must have one entry per token ({d.shape[0]}), got shape {pos.shape}")
    if pos.size == 0:
        raise RoutingError("no tokens: dropped and positions are empty")
    v = np.ones_like(d) if valid is None else np.asarray(valid, dtype=bool).reshape(d.shape[0], -1)
    if v.shape != d.shape:
        raise RoutingError(f"valid must have the shape of dropped {d.shape}, got {v.shape}")
    if np.ndim(bins) == 0:
        if isinstance(bins, bool) or int(bins) != bins or int(bins) < 1:
            raise RoutingError(f"bins must be a count >= 1 or a list of edges, got {bins!r}")
        edges = np.linspace(float(pos.min()), float(pos.max()) + 1.0, int(bins) + 1)
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or not (np.diff(edges) > 0).all():
            raise RoutingError("bin edges must be at least two strictly increasing numbers")
    which = np.searchsorted(edges, pos, side="right") - 1
    inside = (which >= 0) & (which < edges.size - 1)
    nb = edges.size - 1
    slots = np.bincount(which[inside], weights=v[inside].sum(axis=1), minlength=nb).astype(np.int64)
    drops = np.bincount(which[inside], weights=(d & v)[inside].sum(axis=1), minlength=nb).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(slots > 0, drops / np.maximum(slots, 1), np.nan)
    return PositionDrops(edges=edges, slots=slots, dropped=drops, rate=rate)


@dataclass
class BalanceSummary:
    """Headline balance figures of one `Routing` (see the functions of the same names)."""

    router: str
    load_balancing_loss: float
    load_cv: float
    max_violation: float
    load_entropy: float
    drop_rate: float
    mean_experts_per_token: float


def balance_summary(routing, *, scope: str = "global", sequence_ids=None, micro_batches: int = 1) -> BalanceSummary:
    """`BalanceSummary` of ``routing``; the loss uses ``routing.requested`` and its probabilities (row-normalised
    for sigmoid routers)."""
    p = routing.probs.astype(np.float64)
    if routing.router == "deepseek_v3":
        p = p / p.sum(axis=1, keepdims=True)
    return BalanceSummary(
        router=routing.router,
        load_balancing_loss=load_balancing_loss(p, routing.requested, scope=scope, sequence_ids=sequence_ids,
                                                micro_batches=micro_batches),
        load_cv=load_cv(routing.loads), max_violation=max_violation(routing.loads),
        load_entropy=load_entropy(routing.loads), drop_rate=routing.drop_rate,
        mean_experts_per_token=float(routing.experts_per_token.mean()),
    )


def transition_matrix(first_a: np.ndarray, first_b: np.ndarray, n_experts: int) -> np.ndarray:
    """int64 [E + 1, E + 1]: tokens whose first expert is i at the first layer and j at the second (index E:
    none). ``first_a=[0, 0, 1], first_b=[1, 1, -1], n_experts=2 -> [[0, 2, 0], [0, 0, 1], [0, 0, 0]]``."""
    a = np.where(first_a < 0, n_experts, first_a)
    b = np.where(first_b < 0, n_experts, first_b)
    out = np.zeros((n_experts + 1, n_experts + 1), np.int64)
    np.add.at(out, (a, b), 1)
    return out


def mutual_information(matrix: np.ndarray) -> tuple[float, float]:
    """(mutual information, entropy of the column variable), in bits, of a count matrix."""
    total = matrix.sum()
    if total == 0:
        return 0.0, 0.0
    p = matrix / total
    pa, pb = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    nz = p > 0
    mi = float((p[nz] * np.log2(p[nz] / (pa @ pb)[nz])).sum())
    col = pb[pb > 0]
    return mi, float(-(col * np.log2(col)).sum())
