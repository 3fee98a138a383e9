"""Torch implementation of every KV policy's kept mask: the CUDA path of `replay` and the benchmark's anchor.

`replay(trace, policy, budget, backend="torch")` runs the policy's `Plan` (`Policy.plan`, where its parameters are
checked) through `run_plan` (`replay_kept` does the same from a `Policy`), and ``backend="auto"`` picks it when a
CUDA GPU is present (the numba kernels of `kernels` are the CPU path). `EXECUTORS` holds one routine per
``Plan.selector``: this module knows no policy names. It is the straightforward torch way of writing
the policies: heads and layers batched as tensors, one loop over the decode steps where a policy is sequential
(the decode-phase evictors: H2O, TOVA, StreamingLLM, window/recency/random with ``phase="decode"``), and
``torch.topk`` over all the steps at once where it is not (the selection policies, the one-off prefill
compression). `benchmarks/kvcache.py` times it against the numba kernels.

The masks are identical to the numba path (the tests check every policy), with the same conventions
(`kernels`' module docstring): eviction drops the lowest score among unprotected cached positions, ties to the
oldest (``argmin`` returns the first minimum; k at once through `valid_top_mask`); selection keeps the current
position plus the ``budget - 1`` best earlier scores, ties to the oldest (`valid_top_mask`: ``torch.topk`` gives the
k-th value, then ties at that threshold are taken in position order). Scores are float64 where the kernels use
float64. The eviction policies' scores come from the numpy helpers of `scores` (shared by both backends). The
query-aware selection scores are computed here, on ``device``, one layer at a time: Quest's page bounds,
summed over the head dimension in the kernel's order so that they are bit-identical; TokenSelect, FASA and
HISA from ``torch.matmul`` q . k logits, with the softmax and the head aggregation in the fused kernels'
arithmetic (`select_kernels`: exp in float64, float64 sum, heads added in order; bit-identical given the same
logits). On an x86 CPU the logits are the same too: torch's matmul (MKL) sums in order with one FMA per term,
as the numba path's FASA and HISA kernels do (`dots`); TokenSelect's numba logits come from numpy's BLAS, whose
order differs for ~2% of them by an ulp, which the softmax votes absorb (no differing cell seen). One
sum is not in the kernel's order: H2O/TOVA renormalise each step's attention by its float64 sum over the cache
(``Tensor.sum``, a different association than the kernel's left-to-right loop); the head-wise TOVA's ranking
cannot change (one divisor per row); H2O's accumulated scores and the layer-wide TOVA's (a sum over query heads of
attention renormalised head by head) could differ in the last bit, which decides nothing unless two scores tie to
~1e-16 (no differing cell in the benchmark's 1.5 billion). The stacked float32 attention is cached on the trace (per device) like `KVTrace.f32`.

Example::

    from workbench.kvcache import capture, make_policy, replay
    from workbench.kvcache.torch_replay import replay_kept

    tr = capture(text, decode_steps=32)
    replay(tr, "h2o", 64, backend="torch").kept.shape      # (30, 3, 32, T), equal to backend="numba"
    kept, layer_budgets, sinks = replay_kept(tr, make_policy("snapkv"), 64, [0, 1], device="cpu")
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.backends import torch_device
from workbench.kvcache import scores as SC
from workbench.kvcache.policy_base import Plan, Policy, adakv_capacities, kvcrush_representatives
from workbench.kvcache.trace import KVTrace

_INF = float("inf")


def valid_top_mask(x: torch.Tensor, valid: torch.Tensor, k) -> torch.Tensor:
    """bool mask of the ``k`` largest ``valid`` entries of ``x`` along the last dimension, ties to the lowest
    index; every valid entry when there are at most ``k``. ``k`` is an int or an int64 tensor of ``x.shape[:-1]``
    (one k per row; k <= 0 selects nothing). ``x`` must hold no NaN."""
    width = x.shape[-1]
    per_row = torch.is_tensor(k)
    k_max = int(k.max()) if per_row else int(k)
    if k_max <= 0 or width == 0:
        return torch.zeros_like(valid)
    kk = min(k_max, width)
    top = torch.topk(x.masked_fill(~valid, -_INF), kk, dim=-1, sorted=True).values
    if per_row:
        thr = top.gather(-1, (k.clamp(1, kk) - 1).unsqueeze(-1))
        k = k.unsqueeze(-1)
    else:
        thr = top[..., kk - 1:kk]
    above = valid & (x > thr)
    tied = valid & (x == thr)
    need = k - above.sum(-1, keepdim=True)
    out = above | (tied & (tied.cumsum(-1) <= need))
    out = torch.where(valid.sum(-1, keepdim=True) <= k, valid, out)
    return out & (k > 0) if per_row else out


def _layer_stack(trace: KVTrace, name: str, lis, device) -> torch.Tensor:
    """float32 ``trace.<name>`` of the layers ``lis`` stacked on ``device``, cached on the trace (as `KVTrace.f32`
    caches the numpy arrays the numba path reads)."""
    return trace.cached(("torch", name, tuple(int(x) for x in lis), str(device)),
                        lambda: torch.stack([torch.from_numpy(trace.f32(name, li)) for li in lis]).to(device))


def _layer_f32(trace: KVTrace, name: str, li: int, device) -> torch.Tensor:
    """float32 ``trace.<name>[li]`` on ``device``: on the CPU a view of `KVTrace.f32`'s array, on a GPU a copy
    cached on the trace, so that replaying another policy or budget does not copy the layer again."""
    device = torch.device(device)
    if device.type == "cpu":
        return torch.from_numpy(trace.f32(name, li))
    return trace.cached(("torch", name, int(li), str(device)), lambda: torch.from_numpy(trace.f32(name, li)).to(device))


def _causal(n: int, s: int, t: int, device) -> torch.Tensor:
    """bool [S, T]: position i exists for the query of step s (i <= n + s)."""
    pos = torch.arange(t, device=device)
    return pos[None, :] <= (n + torch.arange(s, device=device))[:, None]


def _prefill_then_append(keep: torch.Tensor, n: int, s: int, t: int) -> torch.Tensor:
    """Kept [..., S, T] when the compressed context ``keep`` [..., n] is followed by every decode token."""
    out = _causal(n, s, t, keep.device).expand(*keep.shape[:-1], s, t).clone()
    out[..., :n] = keep.unsqueeze(-2)
    return out


# ----------------------------------------------------------------------------------------------- eviction


def evict_lowest(score: torch.Tensor, in_cache: torch.Tensor, k: int, lo: int, hi: int) -> None:
    """One eviction of every row (in place): drop the ``k`` lowest ``score`` [R, T] (float64) among the cached
    positions of ``in_cache`` [R, T] in [lo, hi), ties to the oldest (the kernels' `_evict_lowest`)."""
    t = score.shape[-1]
    cand = in_cache.clone()
    cand[:, :lo] = False
    cand[:, hi:] = False
    if k == 1:
        masked = torch.where(cand, score, _INF)
        drop = masked.argmin(-1)                                        # the first (oldest) minimum
        all_inf = masked.gather(-1, drop[:, None])[:, 0] == _INF
        drop = torch.where(all_inf, cand.to(torch.uint8).argmax(-1), drop)  # every candidate +inf: the oldest
        drop = torch.where(cand.any(-1), drop, t - 1)                   # the kernel's index -1 when none is evictable
        in_cache.scatter_(1, drop[:, None], False)
    elif k > 1:
        in_cache &= ~valid_top_mask(-score, cand, k)


def update_scores(score: torch.Tensor, in_cache: torch.Tensor, attn: torch.Tensor, mode: str) -> torch.Tensor:
    """H2O ("accumulate": add) or TOVA ("last_query": replace) update with one step's attention [R, T] (float32),
    renormalised over the cached positions in float64."""
    a = torch.where(in_cache, attn, 0.0).double()
    mass = a.sum(-1, keepdim=True)
    share = a / torch.where(mass <= 0.0, 1.0, mass)
    return torch.where(in_cache, score + share if mode == "accumulate" else share, score)


def _tova_layer(trace, lis, plan, device, rng_for):
    """Layer-wide TOVA at every decode step (the kernels' `tova_layer`): kept [L, H, S, T], one set per layer."""
    n, s, t, h = trace.n_prefill, trace.n_steps, trace.n_tokens, trace.n_kv_heads
    score = torch.from_numpy(np.stack([SC.tova_layer_scores(trace, li) for li in lis])).to(device)   # [L, T]
    heads = _layer_stack(trace, "attn_heads", lis, device).double()                                # [L, Q, S+1, T]

    def update(score, in_cache, step):
        a = torch.where(in_cache[:, None, :], heads[:, :, step + 1], 0.0)                          # [L, Q, T]
        mass = a.sum(-1, keepdim=True)
        share = (a / torch.where(mass <= 0.0, 1.0, mass)).sum(1) / a.shape[1]
        return torch.where(in_cache, share, score)

    kept = _decode_evict(score, n, s, plan.budget, 0, 1, update)
    return kept[:, None].expand(len(lis), h, s, t).clone()


def _decode_evict(score, n: int, s: int, budget: int, sinks: int, recent: int, update=None) -> torch.Tensor:
    """Decode-phase eviction of every row of ``score`` [R, T] (float64): each step adds its position and, past
    ``budget``, evicts the lowest-scored positions outside the ``sinks`` and the ``recent`` newest (the kernels'
    `evict_head`); ``update(score, in_cache, step)`` returns the scores after the step (None: static scores).
    Returns kept [R, S, T]."""
    rows, t = score.shape
    kept = torch.zeros((rows, s, t), dtype=torch.bool, device=score.device)
    in_cache = torch.zeros((rows, t), dtype=torch.bool, device=score.device)
    in_cache[:, :n] = True
    size = n
    for step in range(s):
        p = n + step
        in_cache[:, p] = True
        size += 1
        if size > budget:
            evict_lowest(score, in_cache, size - budget, sinks, max(sinks, p - recent + 1))
            size = budget
        kept[:, step] = in_cache
        if update is not None:
            score = update(score, in_cache, step)
    return kept


def _full(trace, lis, plan, device, rng_for):
    return _causal(trace.n_prefill, trace.n_steps, trace.n_tokens, device).expand(len(lis), trace.n_kv_heads,
                                                                                  trace.n_steps, trace.n_tokens)


def _window(trace, lis, plan, device, rng_for):
    """The decode-phase sliding window: the last ``budget`` positions at every step."""
    n, s, t = trace.n_prefill, trace.n_steps, trace.n_tokens
    p = n + torch.arange(s, device=device)[:, None]
    pos = torch.arange(t, device=device)[None, :]
    return ((pos <= p) & (pos > p - plan.budget)).expand(len(lis), trace.n_kv_heads, s, t).clone()


def _evict(trace, lis, plan, device, rng_for):
    """The generic evictor (the kernels' `evict_heads`): kept [L, H, S, T] from the plan's scores
    (`scores.plan_scores`), update, sinks and recent window."""
    n, s, t, h = trace.n_prefill, trace.n_steps, trace.n_tokens, trace.n_kv_heads
    n_l = len(lis)
    scores0 = np.stack([SC.plan_scores(trace, li, plan, rng_for(li)) for li in lis])
    score = torch.from_numpy(np.ascontiguousarray(scores0, dtype=np.float64)).to(device).reshape(n_l * h, t)
    pos = torch.arange(t, device=device)
    sinks, recent = plan.sinks, plan.recent

    if not plan.decode:
        # compress the context once to each layer's budget (sinks and the last `recent` positions protected)
        row_budget = torch.tensor(plan.layer_budgets, device=device).repeat_interleave(h)
        cand = (pos[:n] >= sinks) & (pos[:n] < max(sinks, n - recent))
        evict = valid_top_mask(-score[:, :n], cand.expand(n_l * h, n), (n - row_budget).clamp(min=0))
        return _prefill_then_append(~evict, n, s, t).reshape(n_l, h, s, t)

    update = None
    if plan.update != "static":
        attn = _layer_stack(trace, "attn", lis, device).reshape(n_l * h, s, t)

        def update(score, in_cache, step):
            return update_scores(score, in_cache, attn[:, step], plan.update)

    return _decode_evict(score, n, s, plan.budget, sinks, recent, update).reshape(n_l, h, s, t)


def _adakv(trace, lis, plan, device, rng_for):
    h, n, s, t = trace.n_kv_heads, trace.n_prefill, trace.n_steps, trace.n_tokens
    budget, window = plan.budget, plan.window
    prefix = n - window
    keep = torch.zeros((len(lis), h, n), dtype=torch.bool, device=device)
    keep[..., prefix:] = True
    share = budget - window
    if n <= budget:
        keep[:] = True
    else:
        scores = torch.from_numpy(np.stack([SC.plan_scores(trace, li, plan)[:, :prefix] for li in lis])).to(device)
        caps = torch.from_numpy(np.stack([adakv_capacities(sc, share, plan.args["floor"])
                                          for sc in scores.cpu().numpy()])).to(device)          # [L, H]
        order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        rank.scatter_(-1, order, torch.arange(prefix, device=device).expand_as(order))
        keep[..., :prefix] = rank < caps[..., None]
    return _prefill_then_append(keep, n, s, t)


def _kvcrush(trace, lis, plan, device, rng_for):
    """KVCrush (see `replay.kvcrush_keep`) for all layers and heads at once."""
    h, n, s, t = trace.n_kv_heads, trace.n_prefill, trace.n_steps, trace.n_tokens
    n_l = len(lis)
    budget, window = plan.budget, plan.window
    prefix, share = n - window, budget - window
    keep = torch.zeros((n_l, h, n), dtype=torch.bool, device=device)
    keep[..., prefix:] = True
    if n <= budget:
        return _prefill_then_append(torch.ones_like(keep), n, s, t)
    r = kvcrush_representatives(share, plan.args["fraction"])
    base_k = share - r
    base = np.stack([SC.plan_scores(trace, li, plan) for li in lis])[..., :prefix]
    base = torch.from_numpy(base).to(device)                                        # [L, H, prefix]
    order = torch.sort(base, dim=-1, descending=True, stable=True).indices
    keep[..., :prefix].scatter_(-1, order[..., :base_k], True)
    if r == 0:
        return _prefill_then_append(keep, n, s, t)
    sig = torch.from_numpy(np.stack([SC.head_signatures(trace, li) for li in lis])).to(device)  # [L, n, Q]
    q = sig.shape[-1]
    if plan.args["anchor"] == "mean":
        ref = (sig[:, :prefix].double().mean(dim=1) >= 0.5)[:, None, :].expand(n_l, h, q)
    elif plan.args["anchor"] == "alternate":
        ref = (torch.arange(q, device=device) % 2).bool().expand(n_l, h, q)
    else:  # one draw per head, in the order the numba path draws them
        gens = [rng_for(li) for li in lis]
        ref = torch.from_numpy(np.stack([[g.random(q) < 0.5 for _ in range(h)] for g in gens])).to(device)
    cand = torch.sort(order[..., base_k:], dim=-1).values                          # [L, H, C] ascending
    c = cand.shape[-1]
    cand_sig = torch.gather(sig[:, None].expand(n_l, h, n, q), 2, cand[..., None].expand(n_l, h, c, q))
    dist = (cand_sig != ref[:, :, None, :]).sum(-1)
    grouped = torch.gather(cand, -1, torch.sort(dist, dim=-1, stable=True).indices)  # by (distance, position)
    # np.array_split(grouped, r): the first c % r groups hold c // r + 1 positions, the others c // r
    size, big = divmod(c, r)
    j = torch.arange(c, device=device)
    group = torch.where(j < big * (size + 1), j // (size + 1), big + (j - big * (size + 1)) // max(size, 1))
    vals = torch.gather(base, -1, grouped)
    idx = group.expand(n_l, h, c)
    best = torch.full((n_l, h, r), -_INF, dtype=vals.dtype, device=device).scatter_reduce(
        -1, idx, vals, "amax", include_self=True)
    first = torch.full((n_l, h, r), c, device=device).scatter_reduce(
        -1, idx, torch.where(vals == best.gather(-1, idx), j, c), "amin", include_self=True)
    present = first < c                                                             # empty groups keep nothing
    chosen = torch.gather(grouped, -1, first.clamp(max=c - 1))
    picked = torch.zeros((n_l, h, prefix), dtype=torch.int32, device=device)
    picked.scatter_add_(-1, chosen, present.to(torch.int32))
    keep[..., :prefix] |= picked > 0
    return _prefill_then_append(keep, n, s, t)


# ---------------------------------------------------------------------------------------------- selection


def _select(scores: torch.Tensor, n: int, budget: int) -> torch.Tensor:
    """Kept [..., S, T] keeping the current position plus the ``budget - 1`` best earlier ``scores`` [..., S, T]."""
    s, t = scores.shape[-2:]
    p = n + torch.arange(s, device=scores.device)[:, None]
    pos = torch.arange(t, device=scores.device)[None, :]
    return valid_top_mask(scores, (pos < p).expand(scores.shape), budget - 1) | (pos == p)


def _quest_layer(trace, li, budget, page, device) -> torch.Tensor:
    """Quest for one layer, all heads and steps at once: kept [H, S, T]."""
    h, n, s, t, d = trace.n_kv_heads, trace.n_prefill, trace.n_steps, trace.n_tokens, trace.head_dim
    queries = _layer_f32(trace, "queries", li, device).reshape(h, trace.group_size, t, d)[:, :, n:]
    keys = _layer_f32(trace, "keys", li, device)
    n_full = t // page
    pages = keys[:, : n_full * page].reshape(h, n_full, page, d)
    kmin, kmax = pages.amin(2), pages.amax(2)                                        # [H, P, D]
    p = n + torch.arange(s, device=device)[:, None]
    pos = torch.arange(t, device=device)[None, :]
    cur = p // page
    kept = ((pos >= cur * page) & (pos <= p)).expand(h, s, t).clone()               # the current page
    n_pages = budget // page
    if n_pages > 1:
        # bound[h, g, s, j] = sum_d max(q_d * kmin_jd, q_d * kmax_jd): float32 products, float64 sum in the
        # kernel's order over d (bit-identical bounds; one [H, G, S, P] slab at a time, no [.., P, D] temporary)
        qd = queries.permute(3, 0, 1, 2)[..., None]                                 # [D, H, G, S, 1]
        lo, hi = (x.permute(2, 0, 1)[:, :, None, None, :] for x in (kmin, kmax))    # [D, H, 1, 1, P]
        bound = torch.zeros((h, trace.group_size, s, n_full), dtype=torch.float64, device=device)
        for c in range(d):
            bound += torch.maximum(qd[c] * lo[c], qd[c] * hi[c])
        best = bound.amax(1)                                                        # [H, S, P]
        chosen = valid_top_mask(best, (torch.arange(n_full, device=device)[None, :] < cur).expand_as(best), n_pages - 1)
        kept[..., : n_full * page] |= chosen.repeat_interleave(page, dim=-1)
    return kept | ((pos <= p) & (p + 1 <= budget))


def _head_logits(trace, li, device, dims=None):
    """The decode logits on ``device``, one KV head at a time: yields float32 [G, S, T], the scaled q . k
    (float32 products times float32 ``scaling``) of the head's query group against every position, future
    positions -inf. One matrix product per KV head (its group's queries stacked), or per query head over the
    dimensions ``dims`` (numpy int [Q, d']). Per head, so that no temporary is larger than [G, S, T]."""
    g, h, n, s, t = trace.group_size, trace.n_kv_heads, trace.n_prefill, trace.n_steps, trace.n_tokens
    q = _layer_f32(trace, "queries", li, device)[:, n:]                                 # [Q, S, D]
    k = _layer_f32(trace, "keys", li, device)                                           # [H, T, D]
    scaling = torch.tensor(np.float32(trace.scaling), device=device)
    future = ~_causal(n, s, t, device)
    idx = None if dims is None else torch.from_numpy(np.ascontiguousarray(dims, dtype=np.int64)).to(device)
    for hh in range(h):
        qh = q[hh * g:(hh + 1) * g]                                                   # [G, S, D]
        if idx is None:
            raw = torch.matmul(qh.reshape(g * s, -1), k[hh].T).reshape(g, s, t)
        else:
            ih = idx[hh * g:(hh + 1) * g, None, :]                                    # [G, 1, d']
            qd = torch.gather(qh, 2, ih.expand(-1, s, -1))
            kd = torch.gather(k[hh].expand(g, -1, -1), 2, ih.expand(-1, t, -1))
            raw = torch.matmul(qd, kd.transpose(1, 2))
        yield raw.mul_(scaling).masked_fill_(future, -_INF)


def _softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension in the fused kernel's arithmetic (`select_kernels._softmax_into`): the
    float32 row max, exp(x - max) in float64 rounded to float32, divided by the float64 sum of those exps rounded
    to float32."""
    e = x.double().sub_(x.amax(-1, keepdim=True).double()).exp_()
    return e.float().div_(e.sum(-1, keepdim=True).float())


def _add_softmax(acc, logits: torch.Tensor, how: str) -> torch.Tensor:
    """Aggregate the softmax of each query head of ``logits`` [G, S, T] into ``acc`` [S, T] (None: the first head
    becomes it), in head order as the kernel does: float32 sum ("sum", "mean"; the mean divides at the end), or
    max."""
    for x in logits:
        e = _softmax(x)
        if acc is None:
            acc = e
        elif how == "max":
            torch.maximum(acc, e, out=acc)
        else:
            acc.add_(e)
    return acc


def _tokenselect_scores(trace, li, plan, device) -> torch.Tensor:
    """TokenSelect's soft votes on ``device``: softmax(q . k) per query head, summed over every head of the layer
    (in order) into one selection: float32 [1, S, T]."""
    acc = None
    for logits in _head_logits(trace, li, device):
        acc = _add_softmax(acc, logits, "sum")
    return acc[None]


def _fasa_scores(trace, li, plan, device) -> torch.Tensor:
    """FASA's proxy on ``device`` (only the small dominant-chunk calibration in numpy): float32 [H, S, T],
    the softmax of the partial logits aggregated over each KV head's group (mean or max, per ``trace.gqa``)."""
    half, g = trace.head_dim // 2, trace.group_size
    how = "mean" if trace.gqa == "mean" else "max"
    chunks = SC.fasa_dominant_chunks(trace, li, plan.args["chunks"], plan.args["calibration"])
    dims = np.concatenate([chunks, chunks + half], axis=1)
    out = [_add_softmax(None, logits, how) for logits in _head_logits(trace, li, device, dims)]
    return torch.stack([x.div_(g) for x in out] if how == "mean" else out)


def _hisa_scores(trace, li, plan, device) -> torch.Tensor:
    """HISA's scores on ``device``: float32 [H, S, T], the group's max of the scaled logits on the candidate
    positions (the best ``blocks`` complete earlier blocks by their coarse score, ties to the lowest block, plus
    the current block onward), -inf elsewhere."""
    g, h, n, s, t, d = (trace.group_size, trace.n_kv_heads, trace.n_prefill, trace.n_steps, trace.n_tokens,
                        trace.head_dim)
    block, n_blocks = plan.args["block"], plan.args["blocks"]
    nb = t // block
    keys = _layer_f32(trace, "keys", li, device)[:, : nb * block].reshape(h, nb, block, d)
    reps = keys[:, :, 0].clone()                              # numpy's float32 mean: the block summed in order
    for i in range(1, block):
        reps += keys[:, :, i]
    reps /= block                                                                     # [H, B, D]
    q = _layer_f32(trace, "queries", li, device)[:, n:]                                 # [Q, S, D]
    coarse = torch.matmul(q, reps.repeat_interleave(g, dim=0).transpose(1, 2))        # [Q, S, B]
    coarse = coarse.reshape(h, g, s, nb).amax(1)                                      # [H, S, B]
    cur = (n + torch.arange(s, device=device)) // block                               # [S]
    earlier = torch.arange(nb, device=device)[None, :] < cur[:, None]                  # complete earlier blocks
    chosen = valid_top_mask(coarse, earlier.expand(h, s, nb), n_blocks)                     # [H, S, B]
    cand = (torch.arange(t, device=device)[None, :] >= (cur * block)[:, None]).expand(h, s, t).clone()
    cand[..., : nb * block] |= chosen.repeat_interleave(block, dim=-1)
    fine = torch.stack([logits.amax(0) for logits in _head_logits(trace, li, device)])  # [H, S, T]
    return fine.masked_fill_(~cand, -_INF)


def _quest(trace, lis, plan, device, rng_for):
    return torch.stack([_quest_layer(trace, li, plan.budget, plan.args["page"], device) for li in lis])


def _oracle_scores(trace, li, plan, device) -> torch.Tensor:
    return _layer_f32(trace, "attn", li, device)


def _selection(scores_of):
    """The executor of a selection policy scored by ``scores_of(trace, li, plan, device)`` ([H or 1, S, T]): the
    current position plus the ``budget - 1`` best earlier scores, one layer at a time (the [Q, S, T] logits are
    the large temporaries)."""

    def run(trace, lis, plan, device, rng_for):
        n, s, t, h = trace.n_prefill, trace.n_steps, trace.n_tokens, trace.n_kv_heads
        kept = torch.zeros((len(lis), h, s, t), dtype=torch.bool, device=device)
        for j, li in enumerate(lis):
            kept[j] = _select(scores_of(trace, li, plan, device), n, plan.budget)
        return kept

    return run


# -------------------------------------------------------------------------------------------------- entry

# one routine per `Plan.selector`: (trace, layer indices, plan, device, rng_for) -> kept [L, H, S, T]
EXECUTORS = {"full": _full, "window": _window, "tova_layer": _tova_layer, "evict": _evict, "adakv": _adakv,
             "kvcrush": _kvcrush, "quest": _quest, "oracle": _selection(_oracle_scores),
             "tokenselect": _selection(_tokenselect_scores), "fasa": _selection(_fasa_scores),
             "hisa": _selection(_hisa_scores)}


def run_plan(trace: KVTrace, plan: Plan, layer_indices, *, seed: int = 0, device=None) -> np.ndarray:
    """Kept mask bool [L, H, S, T] (numpy) of a policy's `Plan` over the trace layers ``layer_indices`` (the plan
    made for those layers); identical to the numba path. ``device`` defaults to CUDA when available, else CPU."""
    device = torch_device(device)
    lis = [int(x) for x in layer_indices]
    if not lis:
        return np.zeros((0, trace.n_kv_heads, trace.n_steps, trace.n_tokens), bool)

    def rng_for(li):  # the generator the numba path uses for layer li
        return np.random.default_rng([int(seed), int(trace.layers[li])])

    kept = EXECUTORS[plan.selector](trace, lis, plan, device, rng_for)
    return np.ascontiguousarray(kept.cpu().numpy())


def replay_kept(trace: KVTrace, policy: Policy, budget: int, layer_indices, *, seed: int = 0, device=None):
    """Kept mask bool [L, H, S, T] (numpy), per-layer budgets int64 [L] and the number of protected sinks, for
    ``policy`` (a filled-in `Policy`) at ``budget`` tokens over the trace layers ``layer_indices``; identical to
    the numba path. ``device`` defaults to CUDA when available, else CPU.

    Raises `KVCacheError` for parameters that leave no room in the budget (`Policy.plan`, as `replay` does)."""
    lis = [int(x) for x in layer_indices]
    plan = policy.plan(trace, int(budget), trace.layers[lis])
    kept = run_plan(trace, plan, lis, seed=seed, device=device)
    return kept, np.asarray(plan.layer_budgets, dtype=np.int64), int(plan.sinks)
