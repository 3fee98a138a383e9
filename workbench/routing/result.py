"""What every MoE router returns (`Routing`) and what every router accepts: the logits (`as_logits`) and each
router's parameters, checked once (`PARAMS`) before either backend (`routers`' Numba kernels, `torch_routers`) runs.

``PARAMS[router](n_tokens, n_experts, **arguments)`` returns the router's resolved parameters (capacity computed,
choices checked) -- the ``params`` of the `Routing` it produces -- or raises `RoutingError` naming the bad one.

>>> PARAMS["capacity_topk"](10, 4, k=2, capacity_factor=1.25, capacity=None, drop_policy="position",
...                         renormalize=True)["capacity"]
7
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from workbench.errors import RoutingError

DROP_POLICIES = ("position", "probability", "score")
OVERFLOW_MODES = ("drop", "reroute")


@dataclass
class Routing:
    """One router's decision for a batch of ``T`` tokens over ``E`` experts with ``k`` slots per token.

    ================  ===============  =========================================================================
    field             shape / dtype    meaning
    ================  ===============  =========================================================================
    assignments       int32 [T, k]     expert serving each slot; -1 where dropped, null, or unused (expert choice)
    weights           float32 [T, k]   combine weight of each slot; 0 wherever ``assignments`` is -1
    kept              bool [T, k]      ``assignments >= 0``
    loads             int64 [E]        slots each expert actually serves
    capacity          int              slots an expert may take; -1 when unlimited
    requested         int32 [T, k]     the expert the router picked before capacity (-1: null/unused slot)
    dropped           bool [T, k]      a real expert was picked but the slot was refused (capacity)
    probs             float32 [T, E]   router probabilities (softmax; sigmoid scores for deepseek_v3)
    extra             dict             router-specific figures (``mean_real_experts``, ``rerouted`` ...)
    ================  ===============  =========================================================================
    """

    router: str
    params: dict
    assignments: np.ndarray
    weights: np.ndarray
    kept: np.ndarray
    loads: np.ndarray
    capacity: int
    requested: np.ndarray
    dropped: np.ndarray
    probs: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return int(self.assignments.shape[0])

    @property
    def n_experts(self) -> int:
        return int(self.loads.shape[0])

    @property
    def k(self) -> int:
        return int(self.assignments.shape[1])

    @property
    def n_dropped(self) -> int:
        return int(self.dropped.sum())

    @property
    def drop_rate(self) -> float:
        """Dropped slots / slots that asked for a real expert (0.0 when none asked)."""
        asked = int((self.requested >= 0).sum())
        return self.n_dropped / asked if asked else 0.0

    @property
    def experts_per_token(self) -> np.ndarray:
        """int64 [T]: real experts serving each token."""
        return self.kept.sum(axis=1).astype(np.int64)

    def first_experts(self) -> np.ndarray:
        """int64 [T]: each token's first (best) serving expert, -1 when no expert serves it."""
        first = np.argmax(self.kept, axis=1)
        chosen = self.assignments[np.arange(self.n_tokens), first]
        return np.where(self.kept.any(axis=1), chosen, -1).astype(np.int64)

    def served_mask(self) -> np.ndarray:
        """bool [T, E]: whether expert e serves token t."""
        out = np.zeros((self.n_tokens, self.n_experts), bool)
        t, j = np.nonzero(self.kept)
        out[t, self.assignments[t, j]] = True
        return out

    def drops_per_expert(self) -> np.ndarray:
        """int64 [E]: dropped slots by the expert they asked for."""
        return np.bincount(self.requested[self.dropped], minlength=self.n_experts).astype(np.int64)

    def dense_weights(self) -> np.ndarray:
        """float32 [T, E]: the combine weight of every (token, expert) pair, 0 where not routed (heatmaps)."""
        out = np.zeros((self.n_tokens, self.n_experts), np.float32)
        t, j = np.nonzero(self.kept)
        np.add.at(out, (t, self.assignments[t, j]), self.weights[t, j])
        return out

    def __repr__(self) -> str:
        cap = "no capacity" if self.capacity < 0 else f"capacity {self.capacity}"
        return (f"Routing({self.router}, k={self.k}: {self.n_tokens} tokens x {self.n_experts} experts, {cap}, "
                f"{self.n_dropped} slots dropped ({100 * self.drop_rate:.1f}%), "
                f"loads {int(self.loads.min())}..{int(self.loads.max())})")


# --------------------------------------------------------------------------------------------------- validation


def as_logits(logits, name: str = "router logits") -> np.ndarray:
    """``logits`` (array-like or torch tensor) as C-contiguous float64 [T, E]; RoutingError when it is not 2-D,
    empty, or holds NaN/inf."""
    if hasattr(logits, "detach"):  # a torch tensor, possibly bf16 / on a GPU / requiring grad
        logits = logits.detach().float().cpu().numpy()
    try:
        arr = np.asarray(logits, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RoutingError(f"{name} must be a numeric array [tokens, experts]: {exc}") from exc
    if arr.ndim != 2:
        raise RoutingError(f"{name} must be 2-D [tokens, experts], got shape {arr.shape}; "
                           "for a trace pass one layer, e.g. trace.logits[layer]")
    if arr.shape[0] == 0:
        raise RoutingError(f"empty batch: the {name} have 0 tokens; route at least one token")
    if arr.shape[1] == 0:
        raise RoutingError(f"the {name} have 0 experts; a router needs at least one expert")
    finite = np.isfinite(arr)
    if not finite.all():
        t, e = np.argwhere(~finite)[0]
        raise RoutingError(f"{name} contain {int(np.isnan(arr).sum())} NaN and {int(np.isinf(arr).sum())} "
                           f"infinite values (first at token {t}, expert {e}); fix the model or mask those tokens")
    return np.ascontiguousarray(arr)


def check_int(name: str, value, lo: int, hi: int | None = None, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise RoutingError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise RoutingError(f"{name}={value} is out of range: it must be {rng}{why}")
    return value


def check_positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise RoutingError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(v) or v <= 0:
        raise RoutingError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_choice(name: str, value, options) -> str:
    if value not in options:
        raise RoutingError(f"unknown {name} {value!r}; choose one of {', '.join(options)}")
    return value


def check_k(k, n_experts: int) -> int:
    return check_int("k", k, 1, n_experts, f" (there are {n_experts} experts)")


def capacity_for(n_tokens: int, n_experts: int, k: int, capacity_factor: float) -> int:
    """Slots per expert: ``ceil(capacity_factor * n_tokens * k / n_experts)``, at least 1.

    ``capacity_for(10, 4, 2, 1.25) -> 7`` (the ceiling of 6.25).
    """
    cf = check_positive("capacity_factor", capacity_factor)
    # the 1e-9 keeps float noise (1.1 * 10 = 11.000000000000002) from adding a whole slot
    return max(1, math.ceil(cf * n_tokens * k / n_experts - 1e-9))


def resolve_capacity(capacity, capacity_factor, n_tokens, n_experts, k) -> int:
    if capacity is not None:
        return check_int("capacity", capacity, 1)
    return capacity_for(n_tokens, n_experts, k, capacity_factor)


def check_bias(bias, n_experts: int) -> np.ndarray:
    if bias is None:
        return np.zeros(n_experts, np.float64)
    b = np.asarray(bias, dtype=np.float64)
    if b.shape != (n_experts,):
        raise RoutingError(f"bias must have shape ({n_experts},) (one per expert), got {b.shape}")
    if not np.isfinite(b).all():
        raise RoutingError("bias contains NaN or infinite values")
    return b


# --------------------------------------------------------------------------------------------------- parameters
# One function per router: (n_tokens, n_experts, the router's keyword arguments) -> its resolved parameters.


def _cf(capacity_factor, capacity):
    """What ``params["capacity_factor"]`` records: the factor when it set the capacity, None when ``capacity`` did."""
    return capacity_factor if capacity is None else None


def _topk_softmax(n, e, *, k, renormalize):
    return {"k": check_k(k, e), "renormalize": bool(renormalize)}


def _capacity_topk(n, e, *, k, capacity_factor, capacity, drop_policy, renormalize):
    k = check_k(k, e)
    policy = check_choice("drop_policy", drop_policy, DROP_POLICIES)
    return {"k": k, "capacity_factor": _cf(capacity_factor, capacity),
            "capacity": resolve_capacity(capacity, capacity_factor, n, e, k), "drop_policy": policy,
            "renormalize": bool(renormalize)}


def _switch_top1(n, e, *, capacity_factor, capacity, drop_policy):
    policy = check_choice("drop_policy", drop_policy, DROP_POLICIES)
    cap = -1
    if capacity is not None or capacity_factor is not None:
        cap = resolve_capacity(capacity, capacity_factor, n, e, 1)
    return {"capacity_factor": _cf(capacity_factor, capacity), "capacity": cap, "drop_policy": policy}


def _capacity_aware(n, e, *, k, capacity_factor, capacity, overflow, drop_policy, renormalize):
    k = check_k(k, e)
    mode = check_choice("overflow", overflow, OVERFLOW_MODES)
    policy = check_choice("drop_policy", drop_policy, DROP_POLICIES)
    return {"k": k, "capacity_factor": _cf(capacity_factor, capacity),
            "capacity": resolve_capacity(capacity, capacity_factor, n, e, k), "overflow": mode,
            "drop_policy": policy, "renormalize": bool(renormalize)}


def _expert_choice(n, e, *, k, capacity_factor, capacity):
    k = check_k(k, e)
    return {"k": k, "capacity_factor": _cf(capacity_factor, capacity),
            "capacity": min(n, resolve_capacity(capacity, capacity_factor, n, e, k))}


def _deepseek_v3(n, e, *, k, bias, n_groups, topk_groups, route_scale, normalize):
    k = check_k(k, e)
    b = check_bias(bias, e)
    n_groups = check_int("n_groups", n_groups, 1, e)
    if e % n_groups:
        raise RoutingError(f"n_groups={n_groups} does not divide the {e} experts into equal groups")
    topk_groups = check_int("topk_groups", topk_groups, 1, n_groups, f" (there are {n_groups} groups)")
    eligible = topk_groups * (e // n_groups)
    if k > eligible:
        raise RoutingError(f"k={k} is more than the {eligible} experts in the {topk_groups} eligible groups; "
                           "raise topk_groups or lower k")
    return {"k": k, "n_groups": n_groups, "topk_groups": topk_groups,
            "route_scale": check_positive("route_scale", route_scale), "normalize": bool(normalize), "bias": b.copy()}


def _null_experts(n, e, *, k, n_null, null_logit, renormalize):
    n_null = check_int("n_null", n_null, 1)
    nl = np.asarray(null_logit, dtype=np.float64)
    if nl.ndim > 1 or (nl.ndim == 1 and nl.shape[0] != n_null):
        raise RoutingError(f"null_logit must be a number or one value per null expert ({n_null}), got shape {nl.shape}")
    if not np.isfinite(nl).all():
        raise RoutingError("null_logit must be finite")
    k = check_int("k", k, 1, e + n_null, f" (there are {e} real + {n_null} null experts)")
    return {"k": k, "n_null": n_null, "null_logit": nl.tolist(), "renormalize": bool(renormalize)}


def _grouped_topk(n, e, *, k, n_groups, renormalize):
    k = check_k(k, e)
    n_groups = check_int("n_groups", n_groups, 1, e)
    if e % n_groups or k % n_groups:
        raise RoutingError(f"n_groups={n_groups} must divide both the {e} experts and k={k} "
                           "(every group gets k / n_groups experts per token)")
    return {"k": k, "n_groups": n_groups, "renormalize": bool(renormalize)}


PARAMS = {
    "topk_softmax": _topk_softmax,
    "switch_top1": _switch_top1,
    "capacity_topk": _capacity_topk,
    "capacity_aware": _capacity_aware,
    "expert_choice": _expert_choice,
    "deepseek_v3": _deepseek_v3,
    "null_experts": _null_experts,
    "grouped_topk": _grouped_topk,
}
ROUTER_NAMES = tuple(PARAMS)
