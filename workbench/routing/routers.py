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

import numpy as np
from scipy.special import expit

from workbench import backends
from workbench.errors import RoutingError
from workbench.routing import kernels as K
from workbench.routing.result import (  # noqa: F401 - re-exported: the routing API's names
    DROP_POLICIES,
    OVERFLOW_MODES,
    PARAMS,
    ROUTER_NAMES,
    Routing,
    as_logits,
    capacity_for,
    check_bias,
    check_positive,
)

BACKENDS = backends.BACKENDS


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


# --------------------------------------------------------------------------------------------------- numba executors
# Each takes the validated logits float64 [T, E] and the router's resolved parameters (`result.PARAMS`).


def _softmax_topk(x: np.ndarray, k: int, renormalize: bool):
    probs = K.softmax_rows(x)
    idx = K.topk_rows(x, k)  # softmax routers select on the logits (the same order as the probabilities)
    return probs, idx, _gate(probs, idx, renormalize)


def _run_topk_softmax(x, p) -> Routing:
    probs, idx, gate = _softmax_topk(x, p["k"], p["renormalize"])
    return _finish("topk_softmax", p, probs, idx, gate)


def _run_capacity_topk(x, p) -> Routing:
    probs, idx, gate = _softmax_topk(x, p["k"], p["renormalize"])
    return _finish("capacity_topk", p, probs, idx, gate, capacity=p["capacity"], policy=p["drop_policy"])


def _run_switch_top1(x, p) -> Routing:
    probs, idx, gate = _softmax_topk(x, 1, False)
    return _finish("switch_top1", p, probs, idx, gate, capacity=p["capacity"], policy=p["drop_policy"])


def _run_capacity_aware(x, p) -> Routing:
    probs, idx, gate = _softmax_topk(x, p["k"], p["renormalize"])
    return _finish("capacity_aware", p, probs, idx, gate, capacity=p["capacity"], policy=p["drop_policy"],
                   overflow=p["overflow"])


def _run_expert_choice(x, p) -> Routing:
    probs = K.softmax_rows(x)
    chosen = K.expert_choice_select(probs, p["capacity"])
    per_token = chosen.sum(axis=1)
    width = max(1, int(per_token.max()))
    idx = K.pack_chosen(chosen, probs, width)
    kept = idx >= 0
    extra = {"tokens_without_expert": int((per_token == 0).sum()), "mean_experts_per_token": float(per_token.mean())}
    return Routing(router="expert_choice", params=p, assignments=idx,
                   weights=_gather(probs, idx).astype(np.float32), kept=kept,
                   loads=chosen.sum(axis=0).astype(np.int64), capacity=p["capacity"], requested=idx.copy(),
                   dropped=np.zeros_like(kept), probs=probs.astype(np.float32), extra=extra)


def _run_deepseek_v3(x, p) -> Routing:
    scores = expit(x)
    idx = K.group_limited_topk(scores + p["bias"][None, :], p["k"], p["n_groups"], p["topk_groups"])
    gate = _gate(scores, idx, p["normalize"])
    return _finish("deepseek_v3", p, scores, idx, gate * p["route_scale"])


def _run_null_experts(x, p) -> Routing:
    n, e = x.shape
    n_null = p["n_null"]
    full = np.concatenate([x, np.broadcast_to(np.asarray(p["null_logit"], np.float64), (n, n_null))], axis=1)
    probs_all, idx, gate = _softmax_topk(full, p["k"], p["renormalize"])
    null_slots = idx >= e
    requested = np.where(null_slots, -1, idx).astype(np.int32)
    extra = {"mean_real_experts": float((~null_slots).sum(axis=1).mean()), "null_slots": null_slots,
             "null_probs": probs_all[:, e:].astype(np.float32)}
    return _finish("null_experts", p, probs_all[:, :e], requested, np.where(null_slots, 0.0, gate), extra=extra)


def _run_grouped_topk(x, p) -> Routing:
    probs = K.softmax_rows(x)
    idx = K.grouped_topk(x, p["k"], p["n_groups"])
    return _finish("grouped_topk", p, probs, idx, _gate(probs, idx, p["renormalize"]))


NUMBA = {name: globals()[f"_run_{name}"] for name in ROUTER_NAMES}


# --------------------------------------------------------------------------------------------------- dispatch


def _dispatch(router: str, logits, backend: str, device=None, **arguments) -> Routing:
    """The one path of every router: choose the backend (`workbench.backends`), check the logits and the
    router's parameters once (`result.PARAMS`), then run the Numba or the torch executor."""
    torch_side = backends.use_torch(backend, RoutingError)
    if torch_side:
        from workbench.routing import torch_routers as TR

        x = TR.as_tensor(logits, device)
    else:
        x = as_logits(logits)
    params = PARAMS[router](x.shape[0], x.shape[1], **arguments)
    return TR.ROUTERS[router](x, params) if torch_side else NUMBA[router](x, params)


# --------------------------------------------------------------------------------------------------- routers


def topk_softmax(logits, k: int = 2, *, renormalize: bool = True, backend: str = "auto", device=None) -> Routing:
    """Softmax over all experts, the k best, weights renormalised over the k when ``renormalize`` (Mixtral).

    ``logits`` [T, E] -> `Routing` with no capacity. ``[[0, ln 3, 0]], k=1 -> assignments [[1]], weights [[1.0]]``
    (``renormalize=False``: 0.6).
    """
    return _dispatch("topk_softmax", logits, backend, device, k=k, renormalize=renormalize)


def capacity_topk(logits, k: int = 2, *, capacity_factor: float = 1.25, capacity: int | None = None,
                  drop_policy: str = "position", renormalize: bool = True, backend: str = "auto",
                  device=None) -> Routing:
    """Top-k softmax routing with expert capacity ``ceil(capacity_factor * T * k / E)`` (or ``capacity``);
    overflowing slots are dropped in ``drop_policy`` order ("position", "probability" = BPR, "score").

    ``[[2, 1, 0], [2, 0, 1], [2, 1, 0]], k=1, capacity_factor=1.0 -> capacity 1, assignments [[0], [-1], [-1]]``.
    """
    return _dispatch("capacity_topk", logits, backend, device, k=k, capacity_factor=capacity_factor,
                     capacity=capacity, drop_policy=drop_policy, renormalize=renormalize)


def switch_top1(logits, *, capacity_factor: float | None = None, capacity: int | None = None,
                drop_policy: str = "position", backend: str = "auto", device=None) -> Routing:
    """Switch Transformer: each token to its most probable expert, weight = that probability; with a
    ``capacity_factor`` (or ``capacity``) overflowing tokens are dropped in ``drop_policy`` order.

    ``[[0, ln 3]] -> assignments [[1]], weights [[0.75]]``.
    """
    return _dispatch("switch_top1", logits, backend, device, capacity_factor=capacity_factor, capacity=capacity,
                     drop_policy=drop_policy)


def capacity_aware(logits, k: int = 2, *, capacity_factor: float = 1.0, capacity: int | None = None,
                   overflow: str = "drop", drop_policy: str = "score", renormalize: bool = True,
                   backend: str = "auto", device=None) -> Routing:
    """Capacity-aware inference: top-k softmax routing, each expert capped at ``capacity``. ``overflow="drop"``
    discards the overflowing slots (each expert keeps its best-scored ones with the default ``drop_policy``);
    ``"reroute"`` then moves each dropped slot, in the same order, to the best-scored expert of its token that
    still has room and does not already serve it (weight: that expert's probability, normalised like the
    token's other slots). ``extra["rerouted"]`` counts the moved slots.

    ``[[2, 1, 0], [2, 1, 0]], k=1, capacity=1, overflow="reroute" -> assignments [[0], [1]]``.
    """
    return _dispatch("capacity_aware", logits, backend, device, k=k, capacity_factor=capacity_factor,
                     capacity=capacity, overflow=overflow, drop_policy=drop_policy, renormalize=renormalize)


def expert_choice(logits, *, k: int = 2, capacity_factor: float = 1.0, capacity: int | None = None,
                  backend: str = "auto", device=None) -> Routing:
    """Expert-choice routing: each expert takes the ``capacity = ceil(capacity_factor * T * k / E)`` tokens
    (capped at T) with the highest softmax probability for it; ``k`` is the mean experts per token. A token may
    get 0..E experts; its slots (width = the most any token got) come best first, -1 padded, weight = the
    token's probability for that expert. Loads all equal ``capacity``.

    ``[[1, 0], [0, 1], [2, 0]], k=1, capacity=1 -> expert 0 takes token 2, expert 1 token 1; token 0 gets none``.
    """
    return _dispatch("expert_choice", logits, backend, device, k=k, capacity_factor=capacity_factor,
                     capacity=capacity)


def deepseek_v3(logits, k: int = 2, *, bias=None, n_groups: int = 1, topk_groups: int = 1,
                route_scale: float = 1.0, normalize: bool = True, backend: str = "auto", device=None) -> Routing:
    """DeepSeek-V3 gate. Scores ``s = sigmoid(logits)``; selection uses ``s + bias`` (float [E], zeros by default):
    experts split into ``n_groups`` equal groups, a group's score is the sum of its two best biased scores, only
    the ``topk_groups`` best groups are eligible, then the top-k eligible experts (``torch.topk``'s order, as the
    transformers gates ``DeepseekV3TopkRouter`` & co. compute it; `capture_router_logits` suggests this router
    with the model's parameters and keeps each layer's bias in ``RoutingTrace.bias``). Weights come from the
    unbiased ``s``, normalised over the k (``normalize``) and times ``route_scale``. Balance the loads with
    `update_bias` (auxiliary-loss-free balancing). ``probs`` holds ``s``.

    ``[[0, 0, 0, 0]], k=1, bias=[0, 0, 1, 0] -> assignments [[2]], weights [[1.0]]``.
    """
    return _dispatch("deepseek_v3", logits, backend, device, k=k, bias=bias, n_groups=n_groups,
                     topk_groups=topk_groups, route_scale=route_scale, normalize=normalize)


def update_bias(bias, loads, rate: float = 1e-3) -> np.ndarray:
    """One step of DeepSeek-V3's auxiliary-loss-free balancing: ``bias + rate * sign(mean(loads) - loads)``
    (overloaded experts become less attractive). Returns a new float64 [E] array.

    ``update_bias([0, 0, 0], [5, 1, 0], 0.1) -> [-0.1, 0.1, 0.1]``.
    """
    ld = np.asarray(loads, dtype=np.float64)
    if ld.ndim != 1 or ld.size == 0:
        raise RoutingError(f"loads must be a 1-D array with one count per expert, got shape {ld.shape}")
    b = check_bias(np.zeros(ld.size) if bias is None else bias, ld.size)
    r = check_positive("rate", rate)
    return b + r * np.sign(ld.mean() - ld)


def null_experts(logits, k: int = 2, *, n_null: int = 1, null_logit=0.0, renormalize: bool = True,
                 backend: str = "auto", device=None) -> Routing:
    """AdaMoE: ``n_null`` null experts with logit(s) ``null_logit`` (scalar or [n_null]) are appended after the
    real experts; softmax and top-k run over all ``E + n_null``; a null slot does nothing (assignment -1,
    weight 0), so each token uses between 0 and k real experts. ``renormalize`` divides by the sum over all k
    chosen (nulls included, as softmax-after-top-k does), so fewer real experts also means less total weight.
    ``extra``: ``mean_real_experts``, ``null_slots`` bool [T, k], ``null_probs`` [T, n_null]. Ties between real
    and null experts fall as ``torch.topk`` breaks them over the concatenated row.

    ``[[1, -5]], k=2, n_null=1, null_logit=0 -> assignments [[0, -1]]`` (the second slot went to the null expert).
    """
    return _dispatch("null_experts", logits, backend, device, k=k, n_null=n_null, null_logit=null_logit,
                     renormalize=renormalize)


def grouped_topk(logits, k: int = 2, *, n_groups: int = 2, renormalize: bool = False, backend: str = "auto",
                 device=None) -> Routing:
    """Pangu MoGE: the E experts form ``n_groups`` equal groups (one per device); every token takes its
    ``k / n_groups`` most probable experts inside every group (softmax over all experts), so each group serves
    exactly ``T * k / n_groups`` slots. Weights are the softmax probabilities (``renormalize``: over the k).

    ``[[3, 2, 1, 0]], k=2, n_groups=2 -> assignments [[0, 2]]``.
    """
    return _dispatch("grouped_topk", logits, backend, device, k=k, n_groups=n_groups, renormalize=renormalize)


ROUTERS = {name: globals()[name] for name in ROUTER_NAMES}  # the public router functions, by name


def route(logits, router: str = "topk_softmax", *, backend: str = "auto", device=None, **params) -> Routing:
    """Route ``logits`` [T, E] with the router called ``router`` (one of `ROUTER_NAMES`) and its keyword params.
    ``backend``: "numba" (the CPU kernels), "torch" (`torch_routers`, on ``device``: CUDA when available) or
    "auto" (torch on CUDA when a GPU is present, else numba); both give the same `Routing`.

    ``route(trace.logits[3], "capacity_topk", k=2, capacity_factor=1.0)``.
    """
    fn = ROUTERS.get(router)
    if fn is None:
        raise RoutingError(f"unknown router {router!r}; choose one of {', '.join(ROUTER_NAMES)}")
    try:
        return fn(logits, backend=backend, device=device, **params)
    except TypeError as exc:  # an unknown keyword: say which router and what it takes
        if "keyword" not in str(exc):
            raise
        raise RoutingError(f"router {router!r} does not take those parameters: {exc}") from exc


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel on a tiny batch, off the interactive path."""
    x = np.array([[0.5, -0.5, 0.0, 1.0], [0.0, 1.0, 0.25, -1.0]])
    for name in ROUTER_NAMES:
        ROUTERS[name](x, backend="numba")
    capacity_aware(x, overflow="reroute", capacity=1, backend="numba")
    deepseek_v3(x, n_groups=2, topk_groups=1, backend="numba")
