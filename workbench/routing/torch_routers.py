"""Torch implementation of every MoE router: the CUDA path of `route` and the benchmark's anchor.

``route(logits, router, backend="torch")`` (or any router function with ``backend="torch"``) checks the logits
(`as_tensor`) and the parameters (`result.PARAMS`) once, then calls the executor of the same name here, and ``backend="auto"`` picks it when a CUDA GPU is present (the numba kernels
of `kernels` are the CPU path). It is the straightforward torch way of writing the routers: whole-batch tensor
operations, no loop over tokens. The only loops are over the rounds of capacity-aware rerouting (one round per
expert that fills up while dropped slots are rerouted; a handful in practice) -- every other step is one
batched operation.

The results are the numba path's `Routing`, field for field (numpy arrays out, the same ``params`` and
``extra``), with the same conventions (``kernels``' and ``routers``' module docstrings):

* top-k takes the largest values in ``torch.topk``'s CPU order, ties included (`topk_indices`; the numba
  kernels port that order, see ``kernels``): on the CPU it is ``torch.topk`` itself; on a GPU, where
  ``torch.topk`` breaks ties its own way, the rows with a tie among their k + 1 best values are redone on the
  CPU. The capacity-aware reroute and the slot order of expert choice keep ties to the lower index
  (``ties="lowest_index"``); expert choice takes tokens with ties to the earlier token (`top_mask` along the
  token axis).
* softmax is max-shifted and normalised by the sum of the row's sorted exponentials (``torch.sort`` then
  ``sum``), so permuted rows tie exactly, as in the kernel.
* capacity: slots are offered in the drop policy's priority order; a slot is kept iff fewer than ``capacity``
  earlier slots (in that order) asked for its expert -- the sequential rule of `kernels.assign_capacity`,
  computed at once as each slot's rank among its expert's slots (`_rank_in_group`).
* reroute (`_reroute`): every still-dropped slot proposes its token's best expert with room (a token's j-th
  dropped slot of the round proposes its j-th best); the proposals are exactly the sequential choices up to
  the first slot whose expert has run out of room, so that prefix is accepted and the rest proposes again.

Exactness: assignments, kept, dropped and loads are identical to the numba path; weights and probabilities
agree to ~1e-16 (``torch.exp`` / ``torch.sigmoid`` may round the last bit differently from numba's ``exp`` and
scipy's ``expit``, and ``Tensor.sum`` associates the softmax normaliser differently from the kernel's loop).
Such a difference could only change a decision where two *different* probabilities are within a unit in the
last place of each other; exactly equal inputs (ties, permuted rows) stay exactly equal on both paths.

Example::

    from workbench.routing import route
    from workbench.routing import torch_routers as TR

    r = route(logits, "capacity_topk", k=2, capacity_factor=1.0, backend="torch")   # == backend="numba"
    r = route(logits, "expert_choice", k=2, backend="torch", device="cuda")
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.backends import torch_device
from workbench.errors import RoutingError
from workbench.routing.result import ROUTER_NAMES, Routing, as_logits

_INF = float("inf")


# --------------------------------------------------------------------------------------------------- helpers


def as_tensor(logits, device=None, name: str = "router logits") -> torch.Tensor:
    """``logits`` (array-like or tensor, any float dtype, any device) as float64 [T, E] on ``device``
    (default: CUDA when available). Bad input raises the same `RoutingError` as the numba path
    (`result.as_logits`)."""
    device = torch_device(device)
    if not torch.is_tensor(logits):
        return torch.from_numpy(as_logits(logits, name)).to(device)
    x = logits.detach().to(device=device, dtype=torch.float64)
    if x.ndim != 2 or x.numel() == 0 or not bool(torch.isfinite(x).all()):
        as_logits(logits, name)  # raises the numba path's message
    return x.contiguous()


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Row softmax of float64 [T, E], max-shifted, normalised by the sum of the row's sorted exponentials (as
    `kernels.softmax_rows`: a token's probabilities do not depend on the order of its experts, so permuted
    rows tie exactly; ``Tensor.sum`` may associate the sum differently from the kernel's left-to-right loop, a
    last-bit difference)."""
    ex = torch.exp(x - x.amax(dim=1, keepdim=True))
    return ex / torch.sort(ex, dim=1).values.sum(dim=1, keepdim=True)


def top_mask(x: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """bool mask of the ``k`` largest entries of ``x`` along ``dim`` (ties to the lower index); all when
    ``k >= x.shape[dim]``. ``[0.1, 0.5, 0.5, 0.2], k=2 -> [F, T, T, F]``."""
    n = x.shape[dim]
    if k >= n:
        return torch.ones_like(x, dtype=torch.bool)
    if k == 1:  # argmax returns the first maximum
        return torch.zeros_like(x, dtype=torch.bool).scatter_(dim, x.argmax(dim=dim, keepdim=True), True)
    thr = torch.topk(x, k, dim=dim).values.narrow(dim, k - 1, 1)  # the k-th largest value
    above = x > thr
    tied = x == thr
    out = above | tied
    need = k - above.sum(dim=dim, keepdim=True)
    over = (tied.sum(dim=dim, keepdim=True) > need).squeeze(dim)
    if bool(over.any()):  # more ties at the threshold than room: the first `need` of them, in index order
        rows = over.nonzero(as_tuple=True)
        t, a, o = tied.movedim(dim, -1)[rows], above.movedim(dim, -1)[rows], out.movedim(dim, -1)
        o[rows] = a | (t & (t.cumsum(dim=-1) <= need.movedim(dim, -1)[rows]))
    return out


TIES = ("torch", "lowest_index")


def topk_indices(x: torch.Tensor, k: int, ties: str = "torch") -> torch.Tensor:
    """int64 [..., k]: the indices of the ``k`` largest entries along the last dim, best first.

    ``ties="torch"``: exactly ``torch.topk(x.cpu(), k).indices`` (`kernels.topk_rows`); on a GPU the rows whose
    k + 1 best values hold a tie are recomputed on the CPU. ``ties="lowest_index"``: ties to the lower index
    (the sequential argmax of the reroute). ``[0.1, 0.5, 0.5, 0.2], k=2 -> [1, 2]`` (either rule here).
    """
    if ties not in TIES:
        raise RoutingError(f"ties must be one of {', '.join(map(repr, TIES))}, got {ties!r}")
    if ties == "torch":
        if x.device.type == "cpu":
            return torch.topk(x, k).indices
        m = min(k, x.shape[-1] - 1)
        vals, idx = torch.topk(x, m + 1)
        idx = idx[..., :k].contiguous()
        tied = (vals[..., :m] == vals[..., 1:m + 1]).any(dim=-1) if m > 0 else None
        if tied is not None and bool(tied.any()):
            idx[tied] = torch.topk(x[tied].cpu(), k).indices.to(x.device)
        return idx
    if k == 1:
        return x.argmax(dim=-1, keepdim=True)
    mask = top_mask(x, k)
    idx = mask.nonzero()[:, -1].reshape(*x.shape[:-1], k)  # the k picks in index order
    order = torch.sort(x.gather(-1, idx), dim=-1, descending=True, stable=True).indices
    return idx.gather(-1, order)


def _gather(probs: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """probs [T, E], idx [T, k] (-1 allowed) -> [T, k] (0 where idx is -1)."""
    out = probs.gather(1, idx.clamp(min=0))
    return torch.where(idx >= 0, out, torch.zeros_like(out))


def _renormalise(gate: torch.Tensor) -> torch.Tensor:
    total = gate.sum(dim=1, keepdim=True)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, gate / safe, torch.zeros_like(gate))


def _rank_in_group(keys: torch.Tensor, n_keys: int) -> torch.Tensor:
    """For each element of the 1-D int64 ``keys`` (values in ``[0, n_keys)``): how many earlier elements hold
    the same key. ``[2, 0, 2, 2, 0] -> [0, 0, 1, 2, 1]``."""
    perm = torch.sort(keys, stable=True).indices  # grouped by key, original order inside each group
    counts = torch.bincount(keys, minlength=n_keys)
    start = counts.cumsum(0) - counts
    ranks = torch.empty_like(keys)
    ranks[perm] = torch.arange(keys.numel(), device=keys.device) - start[keys[perm]]
    return ranks


def _slot_order(policy: str, probs: torch.Tensor, requested: torch.Tensor) -> torch.Tensor:
    """int64 flat slot ids (``t * k + j``) in the order slots are offered to their experts
    (`routers._slot_order`)."""
    n, k = requested.shape
    dev = requested.device
    ranks = torch.arange(k, device=dev)[:, None]
    if policy == "position":  # every first choice in token order, then every second choice ...
        return (torch.arange(n, device=dev)[None, :] * k + ranks).reshape(-1)
    if policy == "probability":  # BPR: tokens by their highest probability (ties: earlier), rank by rank
        tokens = torch.sort(probs.amax(dim=1), descending=True, stable=True).indices
        return (tokens[None, :] * k + ranks).reshape(-1)
    # score: each slot by its own probability (ties: earlier token, then lower rank = the flat id order)
    return torch.sort(_gather(probs, requested).reshape(-1), descending=True, stable=True).indices


def assign_capacity(requested: torch.Tensor, order: torch.Tensor, capacity: int, n_experts: int):
    """Keep slots in ``order`` while their expert has room (`kernels.assign_capacity`; ``capacity < 0``:
    unlimited). Returns ``kept`` bool [T, k] and ``loads`` int64 [E]."""
    flat = requested.reshape(-1).long()
    if capacity < 0:
        kept = flat >= 0
    else:
        asked = flat[order]
        # a slot gets in iff fewer than `capacity` earlier slots (in order) asked for the same expert
        rank = _rank_in_group(asked + 1, n_experts + 1)
        kept = torch.zeros_like(flat, dtype=torch.bool)
        kept[order] = (asked >= 0) & (rank < capacity)
    loads = torch.bincount(flat[kept], minlength=n_experts)
    return kept.reshape(requested.shape), loads


def _reroute(probs, requested, kept, order, capacity: int, loads):
    """Capacity-aware reroute after `assign_capacity` (`kernels.reroute_overflow`): each dropped slot, in
    ``order``, moves to its token's best-scored expert (ties: lower index) below ``capacity`` and not serving
    the token yet. ``kept`` and ``loads`` are updated in place. Returns ``assign`` [T, k] (-1: still dropped)
    and ``rerouted`` bool [T, k].

    A round computes every pending slot's choice from the current loads at once: a token's r-th pending slot
    takes the token's r-th best expert with room (the earlier ones took the better ones). These choices are
    the sequential ones up to the first slot whose expert was already filled by earlier choices of the round,
    so the round accepts that prefix; each round that stops early has filled an expert, so there are at most
    E + 1 rounds.
    """
    n, k = requested.shape
    n_experts = probs.shape[1]
    dev = probs.device
    assign = torch.where(kept, requested, torch.full_like(requested, -1))
    rerouted = torch.zeros_like(kept)
    flat_assign, flat_kept, flat_rerouted = assign.view(-1), kept.view(-1), rerouted.view(-1)
    req = requested.reshape(-1)
    pending = order[(req[order] >= 0) & ~flat_kept[order]]
    while pending.numel():
        tok = pending // k
        uniq, slot_tok = torch.unique(tok, return_inverse=True)  # the round's tokens
        r = _rank_in_group(slot_tok, uniq.numel())  # earlier pending slots of the same token
        serving = torch.zeros((uniq.numel(), n_experts + 1), dtype=torch.bool, device=dev)
        serving.scatter_(1, assign[uniq].long() + 1, True)  # column 0 collects the -1s
        avail = (loads < capacity)[None, :] & ~serving[:, 1:]
        width = min(int(r.max()) + 1, n_experts)
        ranked = topk_indices(probs[uniq].masked_fill(~avail, -_INF), width, ties="lowest_index")
        has = r < avail.sum(dim=1)[slot_tok]
        choice = torch.where(has, ranked[slot_tok, r.clamp(max=width - 1)], torch.full_like(r, -1))
        # room check in order: the first slot whose expert is already full ends the accepted prefix
        seen = _rank_in_group(choice + 1, n_experts + 1)
        late = has & (seen >= (capacity - loads)[choice.clamp(min=0)])
        stop = int(late.nonzero()[0, 0]) if bool(late.any()) else pending.numel()
        slots, picked = pending[:stop][has[:stop]], choice[:stop][has[:stop]]
        flat_assign[slots] = picked.to(assign.dtype)
        flat_kept[slots] = True
        flat_rerouted[slots] = True
        loads += torch.bincount(picked, minlength=n_experts)
        pending = pending[stop:]
    return assign, rerouted


def _finish(router, params, probs, requested, gate, *, capacity=-1, policy="position", overflow="drop",
            extra=None) -> Routing:
    """Torch twin of `routers._finish`: apply capacity (``capacity >= 0``) and package a numpy `Routing`."""
    n_experts = probs.shape[1]
    extra = dict(extra or {})
    if capacity < 0:
        order = torch.arange(requested.numel(), device=probs.device)
    else:
        order = _slot_order(policy, probs, requested)
    kept, loads = assign_capacity(requested, order, capacity, n_experts)
    assignments = torch.where(kept, requested, torch.full_like(requested, -1))
    weights = torch.where(kept, gate, torch.zeros_like(gate))
    if overflow == "reroute":
        assignments, rerouted = _reroute(probs, requested, kept, order, capacity, loads)
        # a rerouted slot's weight: the new expert's probability, scaled like the token's requested slots
        asked = _gather(probs, requested)
        scale = torch.where(asked > 0, gate / torch.where(asked > 0, asked, torch.ones_like(asked)),
                            torch.ones_like(gate))
        weights = torch.where(rerouted, _gather(probs, assignments) * scale, weights)
        rerouted = rerouted.cpu().numpy()
        extra["rerouted"] = int(rerouted.sum())
        extra["rerouted_mask"] = rerouted
    requested = requested.cpu().numpy().astype(np.int32)
    kept = kept.cpu().numpy()
    return Routing(router=router, params=params, assignments=assignments.cpu().numpy().astype(np.int32),
                     weights=weights.cpu().numpy().astype(np.float32), kept=kept,
                     loads=loads.cpu().numpy().astype(np.int64), capacity=int(capacity), requested=requested,
                     dropped=(requested >= 0) & ~kept, probs=probs.cpu().numpy().astype(np.float32),
                     extra=extra)


def _softmax_topk(x: torch.Tensor, k: int, renormalize: bool):
    probs = softmax(x)
    idx = topk_indices(x, k)  # softmax routers select on the logits (the same order as the probabilities)
    gate = _gather(probs, idx)
    return probs, idx, _renormalise(gate) if renormalize else gate


# --------------------------------------------------------------------------------------------------- executors
# Each takes the logits as a float64 tensor [T, E] (`as_tensor`) and the router's resolved parameters
# (`result.PARAMS`, checked once by `routers`' dispatch) and returns the numba path's `Routing`.


def topk_softmax(x: torch.Tensor, p: dict) -> Routing:
    """Torch `routers.topk_softmax` (Mixtral)."""
    probs, idx, gate = _softmax_topk(x, p["k"], p["renormalize"])
    return _finish("topk_softmax", p, probs, idx, gate)


def capacity_topk(x: torch.Tensor, p: dict) -> Routing:
    """Torch `routers.capacity_topk` (GShard / BPR capacity and drop policies)."""
    probs, idx, gate = _softmax_topk(x, p["k"], p["renormalize"])
    return _finish("capacity_topk", p, probs, idx, gate, capacity=p["capacity"], policy=p["drop_policy"])


def switch_top1(x: torch.Tensor, p: dict) -> Routing:
    """Torch `routers.switch_top1` (Switch Transformer)."""
    probs, idx, gate = _softmax_topk(x, 1, False)
    return _finish("switch_top1", p, probs, idx, gate, capacity=p["capacity"], policy=p["drop_policy"])


def capacity_aware(x: torch.Tensor, p: dict) -> Routing:
    """Torch `routers.capacity_aware` (overflow "drop" or "reroute")."""
    probs, idx, gate = _softmax_topk(x, p["k"], p["renormalize"])
    return _finish("capacity_aware", p, probs, idx, gate, capacity=p["capacity"], policy=p["drop_policy"],
                   overflow=p["overflow"])


def expert_choice(x: torch.Tensor, p: dict) -> Routing:
    """Torch `routers.expert_choice`: every expert takes its ``capacity`` most probable tokens (ties: the
    earlier token)."""
    cap = p["capacity"]
    probs = softmax(x)
    chosen = top_mask(probs, cap, dim=0)
    per_token = chosen.sum(dim=1)
    width = max(1, int(per_token.max()))
    # each token's experts best first (ties: lower expert), -1 past the ones it got
    idx = topk_indices(probs.masked_fill(~chosen, -1.0), width, ties="lowest_index")
    idx = torch.where(torch.arange(width, device=x.device)[None, :] < per_token[:, None], idx,
                      torch.full_like(idx, -1))
    weights = _gather(probs, idx).cpu().numpy().astype(np.float32)
    idx = idx.cpu().numpy().astype(np.int32)
    kept = idx >= 0
    per_token = per_token.cpu().numpy()
    extra = {"tokens_without_expert": int((per_token == 0).sum()),
             "mean_experts_per_token": float(per_token.mean())}
    return Routing(router="expert_choice", params=p, assignments=idx, weights=weights, kept=kept,
                   loads=chosen.sum(dim=0).cpu().numpy().astype(np.int64), capacity=cap,
                   requested=idx.copy(), dropped=np.zeros_like(kept),
                   probs=probs.cpu().numpy().astype(np.float32), extra=extra)


def group_limited_topk(biased: torch.Tensor, k: int, n_groups: int, topk_groups: int) -> torch.Tensor:
    """DeepSeek-V3 selection (`kernels.group_limited_topk`), as the model's gate: a group scores the sum of its
    two best biased scores, the ``topk_groups`` best groups are eligible (``torch.topk`` of the group scores),
    then the top-k of the row with the other experts at -inf (torch's CPU tie order throughout)."""
    n, e = biased.shape
    if topk_groups < n_groups:
        groups = biased.view(n, n_groups, e // n_groups)
        best = torch.topk(groups, min(2, groups.shape[2]), dim=2).values.sum(dim=2)
        chosen = topk_indices(best, topk_groups)
        eligible = torch.zeros_like(best, dtype=torch.bool).scatter_(1, chosen, True)
        biased = biased.masked_fill(~eligible.repeat_interleave(e // n_groups, dim=1), -_INF)
    return topk_indices(biased, k)


def deepseek_v3(x: torch.Tensor, p: dict) -> Routing:
    """Torch `routers.deepseek_v3` (sigmoid scores, selection-only bias, group-limited top-k)."""
    scores = torch.sigmoid(x)
    idx = group_limited_topk(scores + torch.from_numpy(p["bias"]).to(x.device)[None, :], p["k"], p["n_groups"],
                             p["topk_groups"])
    gate = _gather(scores, idx)
    if p["normalize"]:
        gate = _renormalise(gate)
    return _finish("deepseek_v3", p, scores, idx, gate * p["route_scale"])


def null_experts(x: torch.Tensor, p: dict) -> Routing:
    """Torch `routers.null_experts` (AdaMoE): null experts appended after the real ones; null slots do
    nothing."""
    n, e = x.shape
    n_null = p["n_null"]
    nulls = torch.from_numpy(np.broadcast_to(np.asarray(p["null_logit"], np.float64), (n_null,)).copy()).to(x.device)
    full = torch.cat([x, nulls[None, :].expand(n, n_null)], dim=1)
    probs_all, idx, gate = _softmax_topk(full, p["k"], p["renormalize"])
    null_slots = idx >= e
    requested = torch.where(null_slots, torch.full_like(idx, -1), idx)
    real = (~null_slots).sum(dim=1).cpu().numpy()
    extra = {"mean_real_experts": float(real.mean()), "null_slots": null_slots.cpu().numpy(),
             "null_probs": probs_all[:, e:].cpu().numpy().astype(np.float32)}
    return _finish("null_experts", p, probs_all[:, :e], requested,
                   torch.where(null_slots, torch.zeros_like(gate), gate), extra=extra)


def grouped_topk(x: torch.Tensor, p: dict) -> Routing:
    """Torch `routers.grouped_topk` (Pangu MoGE): ``k / n_groups`` experts inside each of the ``n_groups``
    groups."""
    n, e = x.shape
    k, n_groups = p["k"], p["n_groups"]
    probs = softmax(x)
    groups = x.view(n, n_groups, e // n_groups)
    per = topk_indices(groups, k // n_groups)  # torch.topk inside each group
    picks = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, per, True).view(n, e)
    idx = topk_indices(x.masked_fill(~picks, -_INF), k)
    gate = _gather(probs, idx)
    if p["renormalize"]:
        gate = _renormalise(gate)
    return _finish("grouped_topk", p, probs, idx, gate)


ROUTERS = {name: globals()[name] for name in ROUTER_NAMES}  # the numba executors' torch twins, same names
