"""MoE routers over one layer's router logits ``[T tokens, E experts]``, each returning a `Routing`.

=================  ==========================================================================================
router             what it does
=================  ==========================================================================================
topk_softmax       softmax over all experts, top-k, optionally renormalise the k weights (Mixtral)
switch_top1        top-1 of the softmax, weight = its probability, optional capacity (Switch Transformer)
capacity_topk      top-k with capacity ``ceil(capacity_factor * T * k / E)`` and a drop policy (GShard, BPR)
expert_choice      every expert takes its ``capacity`` best tokens; a token gets 0..E experts (Zhou et al.)
deepseek_v3        sigmoid scores + selection-only bias, group-limited top-k (DeepSeek-V3); see `update_bias`
null_experts       top-k over real + null experts, null slots do nothing (AdaMoE)
grouped_topk       ``k / n_groups`` experts inside each of ``n_groups`` equal groups (Pangu MoGE)
capacity_aware     capacity with overflow "drop" or "reroute" to the best expert with room (capacity-aware inference)
=================  ==========================================================================================

Selection conventions (see ``kernels``): top-k returns what ``torch.topk`` returns on the CPU, ties included (the
models' own gates call it, so a replay of captured logits picks the model's experts token for token); expert-choice
ties go to the earlier token, a capacity-aware reroute's to the lower expert; a token's slots come best first.
Softmax routers select on the logits (the same order as the probabilities).

Capacity and drop policies. A slot is one (token, rank) pair. Slots are offered to their expert in a priority
order and dropped once the expert holds ``capacity`` slots:

* ``"position"``: rank by rank (every token's first choice before any second choice, as GShard does), tokens in
  order, earlier first.
* ``"probability"``: batch-prioritised routing (V-MoE's BPR): rank by rank, tokens by their highest router
  probability, highest first (ties: earlier token).
* ``"score"``: each slot by its own gate probability, highest first (ties: earlier token, then lower rank); every
  expert keeps its best-scored tokens (capacity-aware token drop).

Combine weights are computed before capacity; a dropped slot's weight becomes 0 and the others are not
renormalised (the token's dropped share goes through the residual connection).

Example::

    r = capacity_topk(np.array([[2., 1., 0.], [2., 0., 1.], [2., 1., 0.]]), k=1, capacity_factor=1.0)
    r.assignments.ravel(), r.loads, r.capacity     # [0, -1, -1], [1, 0, 0], 1 (tokens 1 and 2 are dropped)
"""

from __future__ import annotations

import ctypes.util
import functools
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

from workbench.errors import RoutingError
from workbench.routing import kernels as K

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


def _int(name: str, value, lo: int, hi: int | None = None, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise RoutingError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise RoutingError(f"{name}={value} is out of range: it must be {rng}{why}")
    return value


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise RoutingError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(v) or v <= 0:
        raise RoutingError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _choice(name: str, value, options) -> str:
    if value not in options:
        raise RoutingError(f"unknown {name} {value!r}; choose one of {', '.join(options)}")
    return value


def _check_k(k, n_experts: int) -> int:
    return _int("k", k, 1, n_experts, f" (there are {n_experts} experts)")


def capacity_for(n_tokens: int, n_experts: int, k: int, capacity_factor: float) -> int:
    """Slots per expert: ``ceil(capacity_factor * n_tokens * k / n_experts)``, at least 1.

    ``capacity_for(10, 4, 2, 1.25) -> 7`` (the ceiling of 6.25).
    """
    cf = _positive("capacity_factor", capacity_factor)
    # the 1e-9 keeps float noise (1.1 * 10 = 11.000000000000002) from adding a whole slot
    return max(1, math.ceil(cf * n_tokens * k / n_experts - 1e-9))


def _resolve_capacity(capacity, capacity_factor, n_tokens, n_experts, k) -> int:
    if capacity is not None:
        return _int("capacity", capacity, 1)
    return capacity_for(n_tokens, n_experts, k, capacity_factor)


# --------------------------------------------------------------------------------------------------- shared steps


def _gather(probs: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """probs [T, E], idx int32 [T, k] (-1 allowed) -> float64 [T, k] (0 where idx is -1)."""
    out = np.take_along_axis(probs, np.maximum(idx, 0).astype(np.int64), axis=1)
    return np.where(idx >= 0, out, 0.0)


def _renormalise(gate: np.ndarray) -> np.ndarray:
    total = gate.sum(axis=1, keepdims=True)
    return np.divide(gate, total, out=np.zeros_like(gate), where=total > 0)


def _gate(probs: np.ndarray, idx: np.ndarray, renormalize: bool) -> np.ndarray:
    """The combine weights of the chosen experts ``idx`` [T, k]: their probabilities, renormalised to sum to 1
    per token when ``renormalize``."""
    gate = _gather(probs, idx)
    return _renormalise(gate) if renormalize else gate


def _slot_order(policy: str, probs: np.ndarray, requested: np.ndarray) -> np.ndarray:
    """Flat slot ids (``t * k + j``) in the order slots are offered to their experts (module docstring)."""
    n, k = requested.shape
    ranks = np.arange(k, dtype=np.int64)[:, None]
    if policy == "position":
        return (np.arange(n, dtype=np.int64)[None, :] * k + ranks).ravel()
    if policy == "probability":
        tokens = np.argsort(-probs.max(axis=1), kind="stable").astype(np.int64)  # ties: earlier token
        return (tokens[None, :] * k + ranks).ravel()
    score = _gather(probs, requested).ravel()  # flat in (token, rank) order, so a stable sort keeps the tie rule
    return np.argsort(-score, kind="stable").astype(np.int64)


def _finish(router, params, probs, requested, gate, *, capacity=-1, policy="position", overflow="drop",
            extra=None) -> Routing:
    """Apply capacity (when ``capacity >= 0``) and package a `Routing`. ``gate`` float64 [T, k] pre-drop weights."""
    n_experts = probs.shape[1]
    requested = np.ascontiguousarray(requested, dtype=np.int32)
    extra = dict(extra or {})
    if capacity < 0:
        order = np.arange(requested.size, dtype=np.int64)
    else:
        order = _slot_order(policy, probs, requested)
    kept, loads = K.assign_capacity(requested, order, capacity, n_experts)
    dropped = (requested >= 0) & ~kept
    assignments = np.where(kept, requested, -1).astype(np.int32)
    weights = np.where(kept, gate, 0.0)
    if overflow == "reroute":
        assignments, rerouted = K.reroute_overflow(probs, requested, kept, order, capacity, loads)
        # a rerouted slot's weight: the new expert's probability, scaled like the token's requested slots
        # (gate / probability = 1 / the token's renormalisation denominator, or 1 without renormalisation)
        asked = _gather(probs, requested)
        scale = np.divide(gate, asked, out=np.ones_like(gate), where=asked > 0)
        weights = np.where(rerouted, _gather(probs, assignments) * scale, weights)
        dropped = (requested >= 0) & ~kept
        extra["rerouted"] = int(rerouted.sum())
        extra["rerouted_mask"] = rerouted
    return Routing(router=router, params=params, assignments=assignments, weights=weights.astype(np.float32),
                   kept=kept, loads=loads, capacity=int(capacity), requested=requested, dropped=dropped,
                   probs=probs.astype(np.float32), extra=extra)


# --------------------------------------------------------------------------------------------------- routers

BACKENDS = ("auto", "numba", "torch")


@functools.cache
def _cuda_available() -> bool:
    """torch sees a CUDA GPU. Without an NVIDIA driver on the machine this is False without importing torch
    (seconds), so the numba path never waits for it."""
    if "torch" not in sys.modules and not (os.path.exists("/proc/driver/nvidia/version")
                                           or ctypes.util.find_library("cuda")):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _torch_router(name: str, backend: str):
    """The torch twin of router ``name`` (`torch_routers`) when ``backend`` is "torch", or "auto" with a CUDA GPU
    present; None for the numba kernels (the CPU default). Both give the same `Routing`."""
    if backend not in BACKENDS:
        raise RoutingError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "numba" or (backend == "auto" and not _cuda_available()):
        return None
    from workbench.routing import torch_routers

    return torch_routers.ROUTERS[name]


def topk_softmax(logits, k: int = 2, *, renormalize: bool = True, backend: str = "auto") -> Routing:
    """Softmax over all experts, the k best, weights renormalised over the k when ``renormalize`` (Mixtral).

    ``logits`` [T, E] -> `Routing` with no capacity. ``[[0, ln 3, 0]], k=1 -> assignments [[1]], weights [[1.0]]``
    (``renormalize=False``: 0.6).
    """
    if (fn := _torch_router("topk_softmax", backend)) is not None:
        return fn(logits, k, renormalize=renormalize)
    x = as_logits(logits)
    k = _check_k(k, x.shape[1])
    probs = K.softmax_rows(x)
    idx = K.topk_rows(x, k)
    gate = _gate(probs, idx, renormalize)
    return _finish("topk_softmax", {"k": k, "renormalize": bool(renormalize)}, probs, idx, gate)


def capacity_topk(logits, k: int = 2, *, capacity_factor: float = 1.25, capacity: int | None = None,
                  drop_policy: str = "position", renormalize: bool = True, backend: str = "auto") -> Routing:
    """Top-k softmax routing with expert capacity ``ceil(capacity_factor * T * k / E)`` (or ``capacity``);
    overflowing slots are dropped in ``drop_policy`` order ("position", "probability" = BPR, "score").

    ``[[2, 1, 0], [2, 0, 1], [2, 1, 0]], k=1, capacity_factor=1.0 -> capacity 1, assignments [[0], [-1], [-1]]``.
    """
    if (fn := _torch_router("capacity_topk", backend)) is not None:
        return fn(logits, k, capacity_factor=capacity_factor, capacity=capacity, drop_policy=drop_policy,
                  renormalize=renormalize)
    x = as_logits(logits)
    n, e = x.shape
    k = _check_k(k, e)
    policy = _choice("drop_policy", drop_policy, DROP_POLICIES)
    cap = _resolve_capacity(capacity, capacity_factor, n, e, k)
    probs = K.softmax_rows(x)
    idx = K.topk_rows(x, k)
    gate = _gate(probs, idx, renormalize)
    params = {"k": k, "capacity_factor": capacity_factor if capacity is None else None, "capacity": cap,
              "drop_policy": policy, "renormalize": bool(renormalize)}
    return _finish("capacity_topk", params, probs, idx, gate, capacity=cap, policy=policy)


def switch_top1(logits, *, capacity_factor: float | None = None, capacity: int | None = None,
                drop_policy: str = "position", backend: str = "auto") -> Routing:
    """Switch Transformer: each token to its most probable expert, weight = that probability; with a
    ``capacity_factor`` (or ``capacity``) overflowing tokens are dropped in ``drop_policy`` order.

    ``[[0, ln 3]] -> assignments [[1]], weights [[0.75]]``.
    """
    if (fn := _torch_router("switch_top1", backend)) is not None:
        return fn(logits, capacity_factor=capacity_factor, capacity=capacity, drop_policy=drop_policy)
    x = as_logits(logits)
    n, e = x.shape
    policy = _choice("drop_policy", drop_policy, DROP_POLICIES)
    cap = -1
    if capacity is not None or capacity_factor is not None:
        cap = _resolve_capacity(capacity, capacity_factor, n, e, 1)
    probs = K.softmax_rows(x)
    idx = K.topk_rows(x, 1)
    params = {"capacity_factor": capacity_factor if capacity is None else None, "capacity": cap,
              "drop_policy": policy}
    return _finish("switch_top1", params, probs, idx, _gather(probs, idx), capacity=cap, policy=policy)


def capacity_aware(logits, k: int = 2, *, capacity_factor: float = 1.0, capacity: int | None = None,
                   overflow: str = "drop", drop_policy: str = "score", renormalize: bool = True,
                   backend: str = "auto") -> Routing:
    """Capacity-aware inference: top-k softmax routing, each expert capped at ``capacity``. ``overflow="drop"``
    discards the overflowing slots (each expert keeps its best-scored ones with the default ``drop_policy``);
    ``"reroute"`` then moves each dropped slot, in the same order, to the best-scored expert of its token that
    still has room and does not already serve it (weight: that expert's probability, normalised like the
    token's other slots). ``extra["rerouted"]`` counts the moved slots.

    ``[[2, 1, 0], [2, 1, 0]], k=1, capacity=1, overflow="reroute" -> assignments [[0], [1]]``.
    """
    if (fn := _torch_router("capacity_aware", backend)) is not None:
        return fn(logits, k, capacity_factor=capacity_factor, capacity=capacity, overflow=overflow,
                  drop_policy=drop_policy, renormalize=renormalize)
    x = as_logits(logits)
    n, e = x.shape
    k = _check_k(k, e)
    mode = _choice("overflow", overflow, OVERFLOW_MODES)
    policy = _choice("drop_policy", drop_policy, DROP_POLICIES)
    cap = _resolve_capacity(capacity, capacity_factor, n, e, k)
    probs = K.softmax_rows(x)
    idx = K.topk_rows(x, k)
    gate = _gate(probs, idx, renormalize)
    params = {"k": k, "capacity_factor": capacity_factor if capacity is None else None, "capacity": cap,
              "overflow": mode, "drop_policy": policy, "renormalize": bool(renormalize)}
    return _finish("capacity_aware", params, probs, idx, gate, capacity=cap, policy=policy, overflow=mode)


def expert_choice(logits, *, k: int = 2, capacity_factor: float = 1.0, capacity: int | None = None,
                  backend: str = "auto") -> Routing:
    """Expert-choice routing: each expert takes the ``capacity = ceil(capacity_factor * T * k / E)`` tokens
    (capped at T) with the highest softmax probability for it; ``k`` is the mean experts per token. A token may
    get 0..E experts; its slots (width = the most any token got) come best first, -1 padded, weight = the
    token's probability for that expert. Loads all equal ``capacity``.

    ``[[1, 0], [0, 1], [2, 0]], k=1, capacity=1 -> expert 0 takes token 2, expert 1 token 1; token 0 gets none``.
    """
    if (fn := _torch_router("expert_choice", backend)) is not None:
        return fn(logits, k=k, capacity_factor=capacity_factor, capacity=capacity)
    x = as_logits(logits)
    n, e = x.shape
    k = _check_k(k, e)
    cap = min(n, _resolve_capacity(capacity, capacity_factor, n, e, k))
    probs = K.softmax_rows(x)
    chosen = K.expert_choice_select(probs, cap)
    per_token = chosen.sum(axis=1)
    width = max(1, int(per_token.max()))
    idx = K.pack_chosen(chosen, probs, width)
    kept = idx >= 0
    loads = chosen.sum(axis=0).astype(np.int64)
    params = {"k": k, "capacity_factor": capacity_factor if capacity is None else None, "capacity": cap}
    extra = {"tokens_without_expert": int((per_token == 0).sum()), "mean_experts_per_token": float(per_token.mean())}
    return Routing(router="expert_choice", params=params, assignments=idx,
                   weights=_gather(probs, idx).astype(np.float32), kept=kept, loads=loads, capacity=cap,
                   requested=idx.copy(), dropped=np.zeros_like(kept), probs=probs.astype(np.float32), extra=extra)


def deepseek_v3(logits, k: int = 2, *, bias=None, n_groups: int = 1, topk_groups: int = 1,
                route_scale: float = 1.0, normalize: bool = True, backend: str = "auto") -> Routing:
    """DeepSeek-V3 gate. Scores ``s = sigmoid(logits)``; selection uses ``s + bias`` (float [E], zeros by default):
    experts split into ``n_groups`` equal groups, a group's score is the sum of its two best biased scores, only
    the ``topk_groups`` best groups are eligible, then the top-k eligible experts (``torch.topk``'s order, as the
    transformers gates ``DeepseekV3TopkRouter`` & co. compute it; `capture_router_logits` suggests this router
    with the model's parameters and keeps each layer's bias in ``RoutingTrace.bias``). Weights come from the
    unbiased ``s``, normalised over the k (``normalize``) and times ``route_scale``. Balance the loads with
    `update_bias` (auxiliary-loss-free balancing). ``probs`` holds ``s``.

    ``[[0, 0, 0, 0]], k=1, bias=[0, 0, 1, 0] -> assignments [[2]], weights [[1.0]]``.
    """
    if (fn := _torch_router("deepseek_v3", backend)) is not None:
        return fn(logits, k, bias=bias, n_groups=n_groups, topk_groups=topk_groups, route_scale=route_scale,
                  normalize=normalize)
    x = as_logits(logits)
    n, e = x.shape
    k = _check_k(k, e)
    b = _bias(bias, e)
    n_groups = _int("n_groups", n_groups, 1, e)
    if e % n_groups:
        raise RoutingError(f"n_groups={n_groups} does not divide the {e} experts into equal groups")
    topk_groups = _int("topk_groups", topk_groups, 1, n_groups, f" (there are {n_groups} groups)")
    eligible = topk_groups * (e // n_groups)
    if k > eligible:
        raise RoutingError(f"k={k} is more than the {eligible} experts in the {topk_groups} eligible groups; "
                           "raise topk_groups or lower k")
    scale = _positive("route_scale", route_scale)
    scores = expit(x)
    idx = K.group_limited_topk(scores + b[None, :], k, n_groups, topk_groups)
    gate = _gate(scores, idx, normalize)
    params = {"k": k, "n_groups": n_groups, "topk_groups": topk_groups, "route_scale": scale,
              "normalize": bool(normalize), "bias": b.copy()}
    return _finish("deepseek_v3", params, scores, idx, gate * scale)


def _bias(bias, n_experts: int) -> np.ndarray:
    if bias is None:
        return np.zeros(n_experts, np.float64)
    b = np.asarray(bias, dtype=np.float64)
    if b.shape != (n_experts,):
        raise RoutingError(f"bias must have shape ({n_experts},) (one per expert), got {b.shape}")
    if not np.isfinite(b).all():
        raise RoutingError("bias contains NaN or infinite values")
    return b


def update_bias(bias, loads, rate: float = 1e-3) -> np.ndarray:
    """One step of DeepSeek-V3's auxiliary-loss-free balancing: ``bias + rate * sign(mean(loads) - loads)``
    (overloaded experts become less attractive). Returns a new float64 [E] array.

    ``update_bias([0, 0, 0], [5, 1, 0], 0.1) -> [-0.1, 0.1, 0.1]``.
    """
    ld = np.asarray(loads, dtype=np.float64)
    if ld.ndim != 1 or ld.size == 0:
        raise RoutingError(f"loads must be a 1-D array with one count per expert, got shape {ld.shape}")
    b = _bias(np.zeros(ld.size) if bias is None else bias, ld.size)
    r = _positive("rate", rate)
    return b + r * np.sign(ld.mean() - ld)


def null_experts(logits, k: int = 2, *, n_null: int = 1, null_logit=0.0, renormalize: bool = True,
                 backend: str = "auto") -> Routing:
    """AdaMoE: ``n_null`` null experts with logit(s) ``null_logit`` (scalar or [n_null]) are appended after the
    real experts; softmax and top-k run over all ``E + n_null``; a null slot does nothing (assignment -1,
    weight 0), so each token uses between 0 and k real experts. ``renormalize`` divides by the sum over all k
    chosen (nulls included, as softmax-after-top-k does), so fewer real experts also means less total weight.
    ``extra``: ``mean_real_experts``, ``null_slots`` bool [T, k], ``null_probs`` [T, n_null]. Ties between real
    and null experts fall as ``torch.topk`` breaks them over the concatenated row.

    ``[[1, -5]], k=2, n_null=1, null_logit=0 -> assignments [[0, -1]]`` (the second slot went to the null expert).
    """
    if (fn := _torch_router("null_experts", backend)) is not None:
        return fn(logits, k, n_null=n_null, null_logit=null_logit, renormalize=renormalize)
    x = as_logits(logits)
    n, e = x.shape
    n_null = _int("n_null", n_null, 1)
    nl = np.asarray(null_logit, dtype=np.float64)
    if nl.ndim > 1 or (nl.ndim == 1 and nl.shape[0] != n_null):
        raise RoutingError(f"null_logit must be a number or one value per null expert ({n_null}), got shape {nl.shape}")
    if not np.isfinite(nl).all():
        raise RoutingError("null_logit must be finite")
    k = _int("k", k, 1, e + n_null, f" (there are {e} real + {n_null} null experts)")
    full = np.concatenate([x, np.broadcast_to(nl, (n, n_null))], axis=1)
    probs_all = K.softmax_rows(full)
    idx = K.topk_rows(full, k)
    gate = _gate(probs_all, idx, renormalize)
    null_slots = idx >= e
    requested = np.where(null_slots, -1, idx).astype(np.int32)
    extra = {"mean_real_experts": float((~null_slots).sum(axis=1).mean()), "null_slots": null_slots,
             "null_probs": probs_all[:, e:].astype(np.float32)}
    params = {"k": k, "n_null": n_null, "null_logit": nl.tolist(), "renormalize": bool(renormalize)}
    return _finish("null_experts", params, probs_all[:, :e], requested, np.where(null_slots, 0.0, gate),
                   extra=extra)


def grouped_topk(logits, k: int = 2, *, n_groups: int = 2, renormalize: bool = False,
                 backend: str = "auto") -> Routing:
    """Pangu MoGE: the E experts form ``n_groups`` equal groups (one per device); every token takes its
    ``k / n_groups`` most probable experts inside every group (softmax over all experts), so each group serves
    exactly ``T * k / n_groups`` slots. Weights are the softmax probabilities (``renormalize``: over the k).

    ``[[3, 2, 1, 0]], k=2, n_groups=2 -> assignments [[0, 2]]``.
    """
    if (fn := _torch_router("grouped_topk", backend)) is not None:
        return fn(logits, k, n_groups=n_groups, renormalize=renormalize)
    x = as_logits(logits)
    n, e = x.shape
    k = _check_k(k, e)
    n_groups = _int("n_groups", n_groups, 1, e)
    if e % n_groups or k % n_groups:
        raise RoutingError(f"n_groups={n_groups} must divide both the {e} experts and k={k} "
                           "(every group gets k / n_groups experts per token)")
    probs = K.softmax_rows(x)
    idx = K.grouped_topk(x, k, n_groups)
    gate = _gate(probs, idx, renormalize)
    return _finish("grouped_topk", {"k": k, "n_groups": n_groups, "renormalize": bool(renormalize)}, probs, idx, gate)


ROUTERS = {
    "topk_softmax": topk_softmax,
    "switch_top1": switch_top1,
    "capacity_topk": capacity_topk,
    "capacity_aware": capacity_aware,
    "expert_choice": expert_choice,
    "deepseek_v3": deepseek_v3,
    "null_experts": null_experts,
    "grouped_topk": grouped_topk,
}
ROUTER_NAMES = tuple(ROUTERS)


def route(logits, router: str = "topk_softmax", *, backend: str = "auto", **params) -> Routing:
    """Route ``logits`` [T, E] with the router called ``router`` (one of `ROUTER_NAMES`) and its keyword params.
    ``backend``: "numba" (the CPU kernels), "torch" (`torch_routers`, on CUDA when available) or "auto" (torch on
    CUDA when a GPU is present, else numba); both give the same `Routing`.

    ``route(trace.logits[3], "capacity_topk", k=2, capacity_factor=1.0)``.
    """
    fn = ROUTERS.get(router)
    if fn is None:
        raise RoutingError(f"unknown router {router!r}; choose one of {', '.join(ROUTER_NAMES)}")
    try:
        return fn(logits, backend=backend, **params)
    except TypeError as exc:  # an unknown keyword: say which router and what it takes
        if "keyword" not in str(exc):
            raise
        raise RoutingError(f"router {router!r} does not take those parameters: {exc}") from exc


def warmup() -> None:
    """Compile (or load from numba's cache) every kernel on a tiny batch, off the interactive path."""
    x = np.array([[0.5, -0.5, 0.0, 1.0], [0.0, 1.0, 0.25, -1.0]])
    for name in ROUTER_NAMES:
        ROUTERS[name](x)
    capacity_aware(x, overflow="reroute", capacity=1)
    deepseek_v3(x, n_groups=2, topk_groups=1)
