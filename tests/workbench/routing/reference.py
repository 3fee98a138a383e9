"""A slow, readable torch reference for every router and balance metric of ``workbench.routing``.

Written from the documented semantics (the docstrings of ``workbench.routing.routers``, ``kernels`` and
``metrics``), not from the numba kernels: per-token Python loops, ``sorted`` with explicit tie keys, float64.

Conventions:

* top-k: largest first, in the order ``torch.topk`` gives on the CPU (the models' own gates call it; its tie
  order is libstdc++'s partial_sort / nth_element + sort, see ``workbench.routing.kernels``): `top` calls
  ``torch.topk`` on the row, candidates restricted by setting the others to -inf, as the gates mask. The
  capacity-aware reroute takes the best expert with room with ties to the lower index (`lowest`), expert
  choice picks tokens with key ``(-prob, token)`` and orders a token's slots with `lowest`.
* softmax is max-shifted and its normaliser is an exactly rounded sum (``math.fsum``), so a token's
  probabilities do not depend on the order of its experts and permuted rows tie exactly.
* capacity = ``max(1, ceil(capacity_factor * T * k / E))`` computed exactly with fractions.
* slots are offered to experts in the drop policy's order; a full expert refuses the slot.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch

# --------------------------------------------------------------------------------------------------- helpers


def softmax(logits) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    out = torch.empty_like(x)
    for t in range(x.shape[0]):
        ex = torch.exp(x[t] - x[t].max())
        out[t] = ex / math.fsum(ex.tolist())
    return out


def sigmoid(logits) -> torch.Tensor:
    return torch.sigmoid(torch.as_tensor(np.asarray(logits, dtype=np.float64)))


def top(scores: list[float], k: int, candidates=None) -> list[int]:
    """The k best of ``candidates`` (default all) by score, best first: ``torch.topk`` (CPU, float64) of the
    row with every other entry at -inf, so ties come out in torch's order."""
    x = torch.tensor(scores, dtype=torch.float64)
    if candidates is not None:
        keep = torch.zeros(len(scores), dtype=torch.bool)
        keep[list(candidates)] = True
        x = x.masked_fill(~keep, -math.inf)
    return torch.topk(x, k).indices.tolist()


def lowest(scores: list[float], k: int, candidates=None) -> list[int]:
    """The k best of ``candidates`` (default all) by score, ties to the lower index, best first."""
    cand = range(len(scores)) if candidates is None else candidates
    return sorted(cand, key=lambda i: (-scores[i], i))[:k]


def capacity_of(n_tokens: int, n_experts: int, k: int, capacity_factor: float) -> int:
    return max(1, math.ceil(Fraction(repr(float(capacity_factor))) * n_tokens * k / n_experts))


def result(requested, gate, kept, loads, assignments=None, cap=-1, probs=None) -> dict:
    req = np.array(requested, dtype=np.int32)
    kept = np.array(kept, dtype=bool)
    if assignments is None:
        assignments = np.where(kept, req, -1)
    gate = np.array(gate, dtype=np.float64)
    return {"requested": req, "assignments": np.array(assignments, dtype=np.int32), "kept": kept,
            "weights": np.where(kept, gate, 0.0), "loads": np.array(loads, dtype=np.int64),
            "dropped": (req >= 0) & ~kept, "capacity": cap, "probs": probs}


def softmax_topk_choice(logits, k: int, renormalize: bool):
    """Per token: the k best experts by logit and their (optionally renormalised) softmax probabilities."""
    probs = softmax(logits)
    x = np.asarray(logits, dtype=np.float64)
    requested, gate = [], []
    for t in range(x.shape[0]):
        idx = top(x[t].tolist(), k)
        g = [float(probs[t, e]) for e in idx]
        if renormalize:
            g = [v / sum(g) for v in g]
        requested.append(idx)
        gate.append(g)
    return probs, requested, gate


def slot_order(policy: str, probs: torch.Tensor, requested) -> list[tuple[int, int]]:
    n, k = len(requested), len(requested[0])
    if policy == "position":  # every first choice (in token order), then every second choice ...
        return [(t, j) for j in range(k) for t in range(n)]
    if policy == "probability":  # BPR: tokens by their highest probability, still rank by rank
        tokens = sorted(range(n), key=lambda t: (-float(probs[t].max()), t))
        return [(t, j) for j in range(k) for t in tokens]
    assert policy == "score"
    slots = [(t, j) for t in range(n) for j in range(k) if requested[t][j] >= 0]
    return sorted(slots, key=lambda s: (-float(probs[s[0], requested[s[0]][s[1]]]), s[0], s[1]))


def apply_capacity(requested, n_experts: int, cap: int, order):
    n, k = len(requested), len(requested[0])
    kept = [[False] * k for _ in range(n)]
    loads = [0] * n_experts
    for t, j in order:
        e = requested[t][j]
        if e >= 0 and (cap < 0 or loads[e] < cap):
            kept[t][j] = True
            loads[e] += 1
    return kept, loads


# --------------------------------------------------------------------------------------------------- routers


def topk_softmax(logits, k=2, renormalize=True) -> dict:
    probs, requested, gate = softmax_topk_choice(logits, k, renormalize)
    n, e = probs.shape
    kept = [[True] * k for _ in range(n)]
    loads = np.bincount(np.array(requested).ravel(), minlength=e)
    return result(requested, gate, kept, loads, probs=probs)


def capacity_topk(logits, k=2, capacity_factor=1.25, capacity=None, drop_policy="position", renormalize=True) -> dict:
    probs, requested, gate = softmax_topk_choice(logits, k, renormalize)
    n, e = probs.shape
    cap = capacity_of(n, e, k, capacity_factor) if capacity is None else capacity
    kept, loads = apply_capacity(requested, e, cap, slot_order(drop_policy, probs, requested))
    return result(requested, gate, kept, loads, cap=cap, probs=probs)


def switch_top1(logits, capacity_factor=None, drop_policy="position") -> dict:
    probs, requested, gate = softmax_topk_choice(logits, 1, False)
    n, e = probs.shape
    cap = -1 if capacity_factor is None else capacity_of(n, e, 1, capacity_factor)
    kept, loads = apply_capacity(requested, e, cap, slot_order(drop_policy, probs, requested))
    return result(requested, gate, kept, loads, cap=cap, probs=probs)


def capacity_aware(logits, k=2, capacity_factor=1.0, capacity=None, overflow="drop", drop_policy="score",
                   renormalize=True) -> dict:
    probs, requested, gate = softmax_topk_choice(logits, k, renormalize)
    n, e = probs.shape
    cap = capacity_of(n, e, k, capacity_factor) if capacity is None else capacity
    order = slot_order(drop_policy, probs, requested)
    kept, loads = apply_capacity(requested, e, cap, order)
    assign = [[requested[t][j] if kept[t][j] else -1 for j in range(k)] for t in range(n)]
    if overflow == "reroute":
        for t, j in order:
            if kept[t][j]:
                continue
            # the token's best-scored expert that has room and is not serving it already
            room = [x for x in range(e) if loads[x] < cap and x not in assign[t]]
            if not room:
                continue
            best = lowest(probs[t].tolist(), 1, room)[0]
            denom = sum(float(probs[t, x]) for x in requested[t]) if renormalize else 1.0
            assign[t][j] = best
            gate[t][j] = float(probs[t, best]) / denom
            kept[t][j] = True
            loads[best] += 1
    return result(requested, gate, kept, loads, assignments=assign, cap=cap, probs=probs)


def expert_choice(logits, k=2, capacity_factor=1.0, capacity=None) -> dict:
    probs = softmax(logits)
    n, e = probs.shape
    cap = min(n, capacity_of(n, e, k, capacity_factor) if capacity is None else capacity)
    chosen = [[] for _ in range(n)]
    for x in range(e):
        for t in sorted(range(n), key=lambda t: (-float(probs[t, x]), t))[:cap]:
            chosen[t].append(x)
    width = max(1, max(len(c) for c in chosen))
    requested = []
    for t in range(n):
        ranked = lowest(probs[t].tolist(), len(chosen[t]), chosen[t])
        requested.append(ranked + [-1] * (width - len(ranked)))
    gate = [[float(probs[t, x]) if x >= 0 else 0.0 for x in row] for t, row in enumerate(requested)]
    kept = [[x >= 0 for x in row] for row in requested]
    return result(requested, gate, kept, [cap] * e, cap=cap, probs=probs)


def deepseek_v3(logits, k=2, bias=None, n_groups=1, topk_groups=1, route_scale=1.0, normalize=True) -> dict:
    s = sigmoid(logits)
    n, e = s.shape
    b = torch.zeros(e, dtype=torch.float64) if bias is None else torch.as_tensor(np.asarray(bias, np.float64))
    gsize = e // n_groups
    requested, gate = [], []
    for t in range(n):
        biased = (s[t] + b).tolist()
        group_scores = []
        for g in range(n_groups):
            members = range(g * gsize, (g + 1) * gsize)
            best_two = lowest(biased, 2, members)  # only their sum matters
            group_scores.append(sum(biased[i] for i in best_two))
        groups = top(group_scores, topk_groups)
        eligible = [i for g in groups for i in range(g * gsize, (g + 1) * gsize)]
        idx = top(biased, k, eligible)
        w = [float(s[t, i]) for i in idx]  # weights from the unbiased scores
        if normalize:
            w = [v / sum(w) for v in w]
        requested.append(idx)
        gate.append([v * route_scale for v in w])
    loads = np.bincount(np.array(requested).ravel(), minlength=e)
    return result(requested, gate, [[True] * k] * n, loads, probs=s)


def update_bias(bias, loads, rate):
    loads = torch.as_tensor(np.asarray(loads, np.float64))
    return (torch.as_tensor(np.asarray(bias, np.float64)) + rate * torch.sign(loads.mean() - loads)).numpy()


def null_experts(logits, k=2, n_null=1, null_logit=0.0, renormalize=True) -> dict:
    x = np.asarray(logits, dtype=np.float64)
    n, e = x.shape
    nulls = np.broadcast_to(np.asarray(null_logit, np.float64), (n_null,))
    full = np.concatenate([x, np.tile(nulls, (n, 1))], axis=1)
    probs = softmax(full)
    requested, gate = [], []
    for t in range(n):
        idx = top(full[t].tolist(), k)
        g = [float(probs[t, i]) for i in idx]
        if renormalize:  # over all k chosen, nulls included
            g = [v / sum(g) for v in g]
        requested.append([i if i < e else -1 for i in idx])
        gate.append([v if i < e else 0.0 for v, i in zip(g, idx)])
    kept = [[i >= 0 for i in row] for row in requested]
    loads = np.bincount(np.array([i for row in requested for i in row if i >= 0], dtype=np.int64), minlength=e)
    out = result(requested, gate, kept, loads, probs=probs[:, :e])
    out["mean_real_experts"] = float(np.mean([sum(row) for row in kept]))
    return out


def grouped_topk(logits, k=2, n_groups=2, renormalize=False) -> dict:
    probs = softmax(logits)
    x = np.asarray(logits, dtype=np.float64)
    n, e = x.shape
    gsize, per = e // n_groups, k // n_groups
    requested, gate = [], []
    for t in range(n):
        row = x[t].tolist()
        # torch.topk inside each group (on the group's own slice), then the picks best first across groups
        picks = [g * gsize + i for g in range(n_groups) for i in top(row[g * gsize:(g + 1) * gsize], per)]
        idx = top(row, k, picks)  # best first across groups
        g = [float(probs[t, i]) for i in idx]
        if renormalize:
            g = [v / sum(g) for v in g]
        requested.append(idx)
        gate.append(g)
    loads = np.bincount(np.array(requested).ravel(), minlength=e)
    return result(requested, gate, [[True] * k] * n, loads, probs=probs)


ROUTERS = {
    "topk_softmax": topk_softmax, "capacity_topk": capacity_topk, "switch_top1": switch_top1,
    "capacity_aware": capacity_aware, "expert_choice": expert_choice, "deepseek_v3": deepseek_v3,
    "null_experts": null_experts, "grouped_topk": grouped_topk,
}

# --------------------------------------------------------------------------------------------------- metrics


def switch_loss(probs, assignments) -> float:
    """E * sum_i f_i P_i with f_i = slots routed to i / all slots, P_i = mean probability of i."""
    p = torch.as_tensor(np.asarray(probs, np.float64))
    a = np.asarray(assignments).reshape(p.shape[0], -1)
    n_experts = p.shape[1]
    f = [sum(int(x == i) for x in a.ravel()) / a.size for i in range(n_experts)]
    big_p = p.mean(dim=0).tolist()
    return n_experts * sum(fi * pi for fi, pi in zip(f, big_p))


def z_loss(logits) -> float:
    x = torch.as_tensor(np.asarray(logits, np.float64))
    return float((torch.logsumexp(x, dim=-1) ** 2).mean())
