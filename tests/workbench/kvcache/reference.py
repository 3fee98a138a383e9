"""A slow, readable reference for every KV policy's kept mask and for the per-step metrics.

Written from the documented semantics (the docstrings of ``workbench.kvcache.policies``, ``kernels``,
``scores`` and ``replay``), not from the numba kernels: plain loops over decode steps, Python sets and
``sorted``. Scores are recomputed here in float64 where they are small (pooling, H2O/TOVA updates, Quest
bounds, q.k softmaxes).

Conventions (``kernels`` module docstring):

* step ``s`` is the query at ``p = n + s`` (``n`` context tokens); nothing beyond ``p`` is kept and ``p``
  always is.
* eviction drops the lowest score among unprotected cached positions, ties to the oldest position; protected
  are the positions ``< sinks`` and the ``recent`` most recent ones (the current one included).
* selection keeps ``p`` plus the ``budget - 1`` best-scored earlier positions, ties to the oldest position.
"""

from __future__ import annotations

import math

import numpy as np

from workbench.kvcache.policies import make_policy

NEG_INF = float("-inf")
POS_INF = float("inf")


# --------------------------------------------------------------------------------------------------- helpers


def causal_mask(n: int, n_steps: int, n_tokens: int) -> np.ndarray:
    """bool [S, T]: position i exists for the query of step s (i <= n + s)."""
    out = np.zeros((n_steps, n_tokens), bool)
    for s in range(n_steps):
        out[s, : n + s + 1] = True
    return out


def resolve_budget(budget, n: int, n_tokens: int) -> int:
    """Tokens from an int budget or a float ratio of the context (round(ratio * n))."""
    if isinstance(budget, float) and budget <= 1.0:
        return int(round(budget * n))
    return int(budget)


def default_window(budget: int, obs_window: int, n: int) -> int:
    """The SnapKV observation window replay uses when none is given: 64 (the official default) capped by the
    captured window and the context, or budget // 2 when that does not fit in the budget."""
    window = min(64, obs_window, n)
    return window if window < budget else max(1, budget // 2)


def pyramid_budget(budget: int, window: int, n_layers: int, beta: float, layer: int, q_len: int) -> int:
    """PyramidKV as KVCache-Factory's pyramidkv_utils.py writes it (max_capacity_prompt = budget, q_len = context)."""
    if q_len < (budget - window) * 2:                     # the official middle branch: plain SnapKV
        return budget
    min_num = (budget - window) // beta
    max_num = (budget - window) * 2 - min_num
    if max_num >= q_len - window:
        max_num = q_len - window
        min_num = (budget - window) * 2 - max_num
    steps = (max_num - min_num) // (n_layers - 1)
    return int(max(0, max_num - layer * steps)) + window


def top_positions(scores, candidates, k: int) -> list[int]:
    """The ``k`` best-scored ``candidates`` (ties: the oldest / lowest index first)."""
    return sorted(candidates, key=lambda i: (-scores[i], i))[:k]


def select_mask(score_rows, n: int, budget: int, n_tokens: int) -> np.ndarray:
    """Selection: at step s keep p plus the budget - 1 best of scores[s][:p] (everything while p + 1 <=
    budget)."""
    n_steps = len(score_rows)
    kept = np.zeros((n_steps, n_tokens), bool)
    for s in range(n_steps):
        p = n + s
        if p + 1 <= budget:
            kept[s, : p + 1] = True
            continue
        row = [float(x) for x in score_rows[s][:p]]
        for i in top_positions(row, range(p), budget - 1):
            kept[s, i] = True
        kept[s, p] = True
    return kept


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


# -------------------------------------------------------------------------------------------------- eviction


def evict_mask(scores0, attn, n: int, budget: int, sinks: int, recent: int, update: str | None,
               phase: str) -> np.ndarray:
    """One KV head of an eviction policy. ``scores0`` [T] starting scores, ``attn`` [S, T] decode attention.

    ``update``: None (static scores), "accumulate" (H2O: add each step's attention renormalised over the
    cache) or "last" (TOVA: replace by it). ``phase`` "prefill": compress the context once to ``budget``
    (protecting sinks and the last ``recent`` context positions) then append; "decode": after adding each
    token evict down to ``budget``, protecting sinks and the ``recent`` newest positions (the current one
    included)."""
    n_steps, n_tokens = attn.shape
    score = [float(x) for x in scores0]
    cache = set(range(n))

    def evict(count, protected):
        candidates = sorted((score[i], i) for i in cache if i not in protected)  # lowest first, then oldest
        for _, i in candidates[:count]:
            cache.remove(i)

    if phase == "prefill" and n > budget:
        evict(n - budget, set(range(sinks)) | set(range(n - recent, n)))
    kept = np.zeros((n_steps, n_tokens), bool)
    for s in range(n_steps):
        p = n + s
        cache.add(p)
        if phase == "decode" and len(cache) > budget:
            evict(len(cache) - budget, set(range(sinks)) | set(range(p - recent + 1, p + 1)))
        for i in cache:
            kept[s, i] = True
        if update is not None:
            mass = 0.0
            for i in sorted(cache):
                mass += float(attn[s, i])
            if mass <= 0.0:
                mass = 1.0
            for i in cache:
                share = float(attn[s, i]) / mass
                score[i] = score[i] + share if update == "accumulate" else share
    return kept


def pool(x: list[float], kernel: int, how: str) -> list[float]:
    """Same-size 1-D pooling: max over the (clipped) neighbourhood, or its sum / kernel (zero padding)."""
    r = kernel // 2
    out = []
    for i in range(len(x)):
        neighbours = x[max(0, i - r): i + r + 1]
        out.append(max(neighbours) if how == "max" else sum(neighbours) / kernel)
    return out


def snapkv_scores(trace, li: int, window: int, kernel: int, pooling: str) -> np.ndarray:
    """float64 [H, T]: summed attention of the last ``window`` prefill queries on each position before the
    window, pooled; +inf for the window and every decode position."""
    n, w_obs = trace.n_prefill, trace.obs_window
    prefix = n - window
    out = np.full((trace.n_kv_heads, trace.n_tokens), POS_INF)
    for h in range(trace.n_kv_heads):
        votes = np.zeros(prefix)
        for r in range(w_obs - window, w_obs):  # one observation query at a time, in order
            votes += trace.obs_attn[li, h, r, :prefix].astype(np.float64)
        votes = [float(v) for v in votes]
        out[h, :prefix] = votes if pooling == "none" or prefix == 0 else pool(votes, kernel, pooling)
    return out


def h2o_start(trace, li: int, h: int) -> list[float]:
    return [float(x) for x in trace.prefill_colsum[li, h]] + [0.0] * trace.n_steps


def tova_start(trace, li: int, h: int) -> list[float]:
    return [float(x) for x in trace.obs_attn[li, h, -1]] + [0.0] * trace.n_steps


def tova_layer_start(trace, li: int) -> list[float]:
    """The last context query's attention averaged over every query head of the layer; decode positions 0."""
    n_q = trace.n_query_heads
    return [sum(float(trace.attn_heads[li, q, 0, i]) for q in range(n_q)) / n_q
            for i in range(trace.n_prefill)] + [0.0] * trace.n_steps


def tova_layer(trace, li: int, budget: int) -> np.ndarray:
    """Layer-wide TOVA at every decode step, kept [H, S, T] (the same set for every KV head): the cache holds
    ``budget`` positions with the current one; the lowest-scored other position goes (ties: the oldest); then
    each cached position's score is the mean over query heads of the step's attention renormalised over the
    cache head by head."""
    n, n_steps, t, n_q = trace.n_prefill, trace.n_steps, trace.n_tokens, trace.n_query_heads
    score = tova_layer_start(trace, li)
    cache = set(range(n))
    kept = np.zeros((n_steps, t), bool)
    for s in range(n_steps):
        p = n + s
        cache.add(p)
        while len(cache) > budget:
            cache.remove(min((score[i], i) for i in cache if i != p)[1])
        kept[s, sorted(cache)] = True
        masses = [sum(float(trace.attn_heads[li, q, s + 1, i]) for i in sorted(cache)) or 1.0 for q in range(n_q)]
        for i in cache:
            score[i] = sum(float(trace.attn_heads[li, q, s + 1, i]) / masses[q] for q in range(n_q)) / n_q
    return np.stack([kept] * trace.n_kv_heads)


def eviction_layer(trace, li: int, policy, budget: int, seed: int) -> tuple[np.ndarray, int]:
    """kept [H, S, T] and the layer budget of a generic eviction policy (window ... pyramidkv)."""
    name, prm = policy.name, policy.params
    n, t, n_steps = trace.n_prefill, trace.n_tokens, trace.n_steps
    attn = trace.attn[li].astype(np.float32)
    phase = prm["phase"]
    sinks, recent, update = 0, 1, None
    positions = [float(i) for i in range(t)]
    if name == "window" and phase == "decode":
        kept = np.zeros((n_steps, t), bool)
        for s in range(n_steps):
            p = n + s
            kept[s, max(0, p - budget + 1): p + 1] = True
        return np.stack([kept] * trace.n_kv_heads), budget
    starts = None
    if name in ("window", "recency", "streaming_llm"):
        starts = [positions] * trace.n_kv_heads
        sinks = int(prm["sinks"]) if name == "streaming_llm" else 0
    elif name == "random":
        rand = np.random.default_rng([seed, int(trace.layers[li])]).random((trace.n_kv_heads, t))
        starts = [list(rand[h]) for h in range(trace.n_kv_heads)]
    elif name == "h2o":
        starts = [h2o_start(trace, li, h) for h in range(trace.n_kv_heads)]
        update, sinks = "accumulate", int(prm["sinks"])
        recent = int(prm["recent"]) if prm["recent"] is not None else max(1, budget // 2)
    elif name == "tova" and prm["heads"] == "layer":
        if phase == "decode":
            return tova_layer(trace, li, budget), budget
        starts = [tova_layer_start(trace, li)] * trace.n_kv_heads
    elif name == "tova":
        starts = [tova_start(trace, li, h) for h in range(trace.n_kv_heads)]
        update = "last"
    elif name in ("snapkv", "pyramidkv"):
        window = prm["window"] or default_window(budget, trace.obs_window, trace.n_prefill)
        sc = snapkv_scores(trace, li, window, int(prm["kernel"]), prm["pooling"])
        starts = [list(sc[h]) for h in range(trace.n_kv_heads)]
        recent = window
        if name == "pyramidkv":
            n_layers = int(trace.model.get("n_layers", trace.n_layers))
            budget = pyramid_budget(budget, window, n_layers, float(prm["beta"]), int(trace.layers[li]), n)
    else:
        raise ValueError(name)
    kept = np.stack([evict_mask(starts[h], attn[h], n, budget, sinks, recent, update, phase)
                     for h in range(trace.n_kv_heads)])
    return kept, budget


def compressed_context(trace, context_keep: np.ndarray) -> np.ndarray:
    """kept [H, S, T] from a fixed compressed context [H, n]: decode tokens are appended and never evicted."""
    n = trace.n_prefill
    kept = np.zeros((trace.n_kv_heads, trace.n_steps, trace.n_tokens), bool)
    for h in range(trace.n_kv_heads):
        for s in range(trace.n_steps):
            kept[h, s, :n] = context_keep[h]
            kept[h, s, n: n + s + 1] = True
    return kept


def adakv_layer(trace, li: int, policy, budget: int) -> np.ndarray:
    """AdaKV as FFY0/AdaKV's AdaptiveSnapKVCluster: head h's capacity is round(c_h (1 - floor) + int(share floor))
    where c_h counts head h's entries among the layer's best H x share scores (ties: head, then position); each
    head keeps its best positions up to that capacity, plus the window."""
    prm = policy.params
    n, n_heads = trace.n_prefill, trace.n_kv_heads
    window = prm["window"] or default_window(budget, trace.obs_window, trace.n_prefill)
    prefix = n - window
    sc = snapkv_scores(trace, li, window, int(prm["kernel"]), prm["pooling"])
    keep = np.zeros((n_heads, n), bool)
    keep[:, prefix:] = True
    if n <= budget:
        keep[:] = True
        return compressed_context(trace, keep)
    share = budget - window
    alpha = float(prm["floor"])
    ranked = sorted((-sc[h, i], h, i) for h in range(n_heads) for i in range(prefix))[: n_heads * share]
    for h in range(n_heads):
        count = sum(1 for _, hh, _ in ranked if hh == h)
        capacity = min(prefix, round(count * (1 - alpha) + int(share * alpha)))  # round half to even
        for i in top_positions(sc[h], range(prefix), capacity):
            keep[h, i] = True
    return compressed_context(trace, keep)


def head_signatures(trace, li: int) -> list[tuple[bool, ...]]:
    """Per context position, bit q = query head q voted for it more than that head's mean vote."""
    votes = trace.obs_votes_heads[li].astype(np.float64)
    means = [float(np.mean(votes[q])) for q in range(votes.shape[0])]
    n_q = votes.shape[0]
    return [tuple(bool(votes[q, i] > means[q]) for q in range(n_q)) for i in range(trace.n_prefill)]


def kvcrush_layer(trace, li: int, policy, budget: int, seed: int) -> np.ndarray:
    """KVCrush: the base policy's best ``share - r`` context positions + the window; the r representatives
    come from the rest, ordered by Hamming distance of their head signature to an anchor (then position), cut
    into r nearly equal groups (numpy array_split: the first groups one longer), one best-scored position per
    group."""
    prm = policy.params
    n = trace.n_prefill
    rng = np.random.default_rng([seed, int(trace.layers[li])])
    window = prm["window"] or default_window(budget, trace.obs_window, trace.n_prefill)
    prefix = n - window
    if prm["base"] == "snapkv":
        base = snapkv_scores(trace, li, window, int(prm["kernel"]), prm["pooling"])
    else:
        start = h2o_start if prm["base"] == "h2o" else tova_start
        base = np.array([start(trace, li, h) for h in range(trace.n_kv_heads)])
    sig = head_signatures(trace, li)
    n_q = trace.n_query_heads
    keep = np.zeros((trace.n_kv_heads, n), bool)
    for h in range(trace.n_kv_heads):
        keep[h, prefix:] = True
        share = budget - window
        if n <= budget:
            keep[h] = True
            continue
        if prm["anchor"] == "mean":
            anchor = tuple(sum(sig[i][q] for i in range(prefix)) / prefix >= 0.5 for q in range(n_q))
        elif prm["anchor"] == "alternate":
            anchor = tuple(q % 2 == 1 for q in range(n_q))
        else:  # one draw of the layer's generator per head, in head order
            anchor = tuple(bool(x) for x in rng.random(n_q) < 0.5)
        r = min(share, max(1, int(round(float(prm["fraction"]) * share))))
        ranked = top_positions(base[h], range(prefix), prefix)
        for i in ranked[: share - r]:
            keep[h, i] = True
        rest = sorted(ranked[share - r:])
        hamming = {i: sum(a != b for a, b in zip(sig[i], anchor)) for i in rest}
        rest.sort(key=lambda i: (hamming[i], i))
        size, extra = divmod(len(rest), r) if r else (0, 0)
        start = 0
        for g in range(r):
            group = rest[start: start + size + (1 if g < extra else 0)]
            start += len(group)
            if group:
                best = group[0]
                for i in group:
                    if base[h, i] > base[h, best]:
                        best = i
                keep[h, best] = True
    return compressed_context(trace, keep)


# ------------------------------------------------------------------------------------------------- selection


def logits_row(trace, li: int, qh: int, p: int, dims=None) -> np.ndarray:
    """q . k * scaling (float64) of query head ``qh`` at position p over positions 0..p."""
    q = trace.queries[li, qh, p].astype(np.float64)
    k = trace.keys[li, qh // trace.group_size, : p + 1].astype(np.float64)
    if dims is not None:
        q, k = q[dims], k[:, dims]
    return (k @ q) * float(np.float32(trace.scaling))


def oracle_layer(trace, li: int, budget: int) -> np.ndarray:
    attn = trace.attn[li].astype(np.float32)
    return np.stack([select_mask(attn[h], trace.n_prefill, budget, trace.n_tokens)
                     for h in range(trace.n_kv_heads)])


def tokenselect_votes(trace, li: int) -> np.ndarray:
    """[S, T]: softmax(q.k) of every query head of the layer, summed (one score shared by all KV heads)."""
    n = trace.n_prefill
    votes = np.zeros((trace.n_steps, trace.n_tokens))
    for s in range(trace.n_steps):
        p = n + s
        for qh in range(trace.n_query_heads):
            votes[s, : p + 1] += softmax(logits_row(trace, li, qh, p))
    return votes


def tokenselect_layer(trace, li: int, budget: int) -> np.ndarray:
    one = select_mask(tokenselect_votes(trace, li), trace.n_prefill, budget, trace.n_tokens)
    return np.stack([one] * trace.n_kv_heads)


def fasa_chunks(trace, li: int, qh: int, n_chunks: int, calibration: int) -> list[int]:
    """Dominant RoPE pairs (d, d + D/2) of query head qh: mean over the last ``c`` context queries of the
    correlation (over context positions 0..n-2) between the pair's partial logit and the full logit."""
    n, half = trace.n_prefill, trace.head_dim // 2
    c = max(1, min(calibration, n - 1))
    keys = trace.keys[li, qh // trace.group_size, : n - 1].astype(np.float64)
    agreement = np.zeros(half)
    for row in range(n - c, n):
        q = trace.queries[li, qh, row].astype(np.float64)
        part = np.zeros((n - 1, half))
        for d in range(half):
            part[:, d] = q[d] * keys[:, d] + q[d + half] * keys[:, d + half]
        full = part.sum(axis=1)
        for d in range(half):
            a = part[:, d] - part[:, d].mean()
            b = full - full.mean()
            agreement[d] += (a @ b) / (math.sqrt((a @ a) * (b @ b)) + 1e-12) / c
    return sorted(top_positions(agreement, range(half), n_chunks))


def fasa_layer(trace, li: int, policy, budget: int) -> np.ndarray:
    prm = policy.params
    n, half, g = trace.n_prefill, trace.head_dim // 2, trace.group_size
    n_chunks = min(int(prm["chunks"]), half)
    dims = []
    for qh in range(trace.n_query_heads):
        chunks = fasa_chunks(trace, li, qh, n_chunks, int(prm["calibration"]))
        dims.append(chunks + [d + half for d in chunks])
    out = []
    for h in range(trace.n_kv_heads):
        rows = []
        for s in range(trace.n_steps):
            p = n + s
            probs = [softmax(logits_row(trace, li, qh, p, dims[qh])) for qh in range(h * g, (h + 1) * g)]
            agg = np.mean(probs, axis=0) if trace.gqa == "mean" else np.max(probs, axis=0)
            rows.append(np.concatenate([agg, np.zeros(trace.n_tokens - p - 1)]))
        out.append(select_mask(rows, n, budget, trace.n_tokens))
    return np.stack(out)


def hisa_layer(trace, li: int, policy, budget: int) -> np.ndarray:
    """HISA: complete earlier blocks ranked by max over the group of q . mean(block keys); the best ``blocks``
    of them plus the current block are candidates, ranked by max over the group of q . k (others -inf)."""
    prm = policy.params
    n, g, t = trace.n_prefill, trace.group_size, trace.n_tokens
    block = int(prm["block"])
    n_blocks = int(prm["blocks"]) if prm["blocks"] is not None else max(1, math.ceil(2 * budget / block))
    complete = t // block
    out = []
    for h in range(trace.n_kv_heads):
        keys = trace.keys[li, h].astype(np.float64)
        means = [keys[b * block:(b + 1) * block].mean(axis=0) for b in range(complete)]
        rows = []
        for s in range(trace.n_steps):
            p = n + s
            cur = p // block
            queries = [trace.queries[li, qh, p].astype(np.float64) for qh in range(h * g, (h + 1) * g)]
            available = range(min(cur, complete))
            coarse = {b: max(float(q @ means[b]) for q in queries) for b in available}
            candidates = set(range(cur * block, p + 1))
            for b in top_positions(coarse, available, min(n_blocks, len(available))):
                candidates.update(range(b * block, (b + 1) * block))
            fine = np.max([logits_row(trace, li, qh, p) for qh in range(h * g, (h + 1) * g)], axis=0)
            row = np.full(t, NEG_INF)
            for i in candidates:
                row[i] = fine[i]
            rows.append(row)
        out.append(select_mask(rows, n, budget, t))
    return np.stack(out)


def page_bound(q: np.ndarray, kmin: np.ndarray, kmax: np.ndarray) -> np.ndarray:
    """Quest: an upper bound of q . k for every k with kmin <= k <= kmax elementwise (each term q_d k_d is at
    most the larger of q_d kmin_d and q_d kmax_d). ``q`` [D], ``kmin``/``kmax`` [..., D] -> [...] float64."""
    q = np.asarray(q, np.float64)
    return np.maximum(q * np.asarray(kmin, np.float64), q * np.asarray(kmax, np.float64)).sum(axis=-1)


def quest_layer(trace, li: int, policy, budget: int) -> np.ndarray:
    """Quest: the page of p (up to p) plus the budget // page - 1 complete earlier pages with the highest
    bound (max over the group's query heads), kept whole."""
    page = int(policy.params["page"])
    n, g, t = trace.n_prefill, trace.group_size, trace.n_tokens
    n_pages = budget // page
    out = np.zeros((trace.n_kv_heads, trace.n_steps, t), bool)
    for h in range(trace.n_kv_heads):
        keys = trace.keys[li, h].astype(np.float64)
        for s in range(trace.n_steps):
            p = n + s
            if p + 1 <= budget:
                out[h, s, : p + 1] = True
                continue
            cur = p // page
            out[h, s, cur * page: p + 1] = True
            if n_pages <= 1 or cur == 0:
                continue
            pages = keys[: cur * page].reshape(cur, page, -1)  # the complete earlier pages
            kmin, kmax = pages.min(axis=1), pages.max(axis=1)
            group = range(h * g, (h + 1) * g)
            bounds = np.max([page_bound(trace.queries[li, qh, p], kmin, kmax) for qh in group], axis=0)
            for j in top_positions(bounds, range(cur), n_pages - 1):
                out[h, s, j * page:(j + 1) * page] = True
    return out


# ---------------------------------------------------------------------------------------------- entry points


def kept_mask(trace, policy, budget, layers=None, seed=None) -> tuple[np.ndarray, list[int]]:
    """The reference of ``replay(trace, policy, budget, layers=layers).kept`` and its ``layer_budgets``."""
    policy = make_policy(policy)
    n, t = trace.n_prefill, trace.n_tokens
    b = t if policy.kind == "full" else resolve_budget(budget, n, t)
    seed = int(policy.params.get("seed", 0) if seed is None else seed)
    lis = range(trace.n_layers) if layers is None else [trace.layer_index(x) for x in layers]
    masks, budgets = [], []
    for li in lis:
        lb = b
        if policy.kind == "full":
            m = np.stack([causal_mask(n, trace.n_steps, t)] * trace.n_kv_heads)
        elif policy.name == "adakv":
            m = adakv_layer(trace, li, policy, b)
        elif policy.name == "kvcrush":
            m = kvcrush_layer(trace, li, policy, b, seed)
        elif policy.kind == "eviction":
            m, lb = eviction_layer(trace, li, policy, b, seed)
        elif policy.name == "oracle":
            m = oracle_layer(trace, li, b)
        elif policy.name == "tokenselect":
            m = tokenselect_layer(trace, li, b)
        elif policy.name == "fasa":
            m = fasa_layer(trace, li, policy, b)
        elif policy.name == "hisa":
            m = hisa_layer(trace, li, policy, b)
        elif policy.name == "quest":
            m = quest_layer(trace, li, policy, b)
        else:
            raise ValueError(policy.name)
        masks.append(m)
        budgets.append(lb)
    return np.stack(masks), budgets


def step_metrics(attn_row: np.ndarray, kept_row: np.ndarray, values: np.ndarray, p: int) -> tuple:
    """(mass, iou, n_kept, output_error) of one head at one step: ``attn_row`` [T], ``kept_row`` bool [T],
    ``values`` [T, D].

    mass: share of the attention (over 0..p) on kept positions. iou: |kept & O| / |kept | O| for the oracle
    set O of the same size k (the current position plus the k - 1 earlier positions with the most attention);
    among the valid O (ties at the threshold) the one most favourable to the policy. output_error: relative L2
    distance of the attention output renormalised over the kept positions to the full one."""
    a = [float(x) for x in attn_row[: p + 1]]
    kept = {i for i in range(p + 1) if kept_row[i]}
    total = sum(a)
    got = sum(a[i] for i in sorted(kept))
    mass = got / total if total > 0 else 1.0
    k = len(kept)
    if k >= p + 1:
        iou = 1.0
    else:
        oracle = {p}
        # earlier positions by attention, best first; among equal attention the kept ones first
        for i in sorted(range(p), key=lambda i: (-a[i], i not in kept)):
            if len(oracle) >= k:
                break
            oracle.add(i)
        iou = len(oracle & kept) / len(oracle | kept)
    v = values.astype(np.float64)
    aa = np.array(a)
    full = aa @ v[: p + 1]
    part = (aa * kept_row[: p + 1]) @ v[: p + 1] / max(mass, 1e-12)
    err = float(np.linalg.norm(part - full) / max(np.linalg.norm(full), 1e-12))
    return mass, iou, k, err


def metrics(trace, kept: np.ndarray, layers=None) -> tuple[np.ndarray, ...]:
    """mass, iou, n_kept, output_error [L, H, S] of kept [L, H, S, T] (see `step_metrics`)."""
    lis = range(trace.n_layers) if layers is None else [trace.layer_index(x) for x in layers]
    shape = kept.shape[:3]
    mass, iou, err = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    n_kept = np.zeros(shape, int)
    for j, li in enumerate(lis):
        for h in range(trace.n_kv_heads):
            for s in range(trace.n_steps):
                m = step_metrics(trace.attn[li, h, s].astype(np.float32), kept[j, h, s], trace.values[li, h],
                                 trace.n_prefill + s)
                mass[j, h, s], iou[j, h, s], n_kept[j, h, s], err[j, h, s] = m
    return mass, iou, n_kept, err


# ------------------------------------------------------------------------------------------ synthetic traces


def synthetic_trace(n: int = 40, steps: int = 6, n_kv: int = 2, group: int = 2, dim: int = 8, obs: int = 8,
                    layers=(0, 3), n_model_layers: int = 4, gqa: str = "mean", seed: int = 0,
                    ties: bool = False):
    """A small random `KVTrace` with the documented shapes and dtypes: causal, normalised attention rows.

    ``ties=True`` draws integer keys/queries and two-level attention weights, so that scores tie often."""
    from workbench.kvcache.trace import KVTrace

    rng = np.random.default_rng(seed)
    t, n_layers, n_q = n + steps, len(layers), n_kv * group

    def vectors(*shape):
        if ties:
            return rng.integers(-1, 2, shape).astype(np.float16)
        return rng.standard_normal(shape).astype(np.float16)

    def weights(*shape):
        return rng.integers(1, 3, shape).astype(np.float64) if ties else rng.random(shape) ** 3 + 1e-3

    def causal_rows(w, first_query):
        """Zero beyond each row's query position, rows normalised."""
        for r in range(w.shape[-2]):
            w[..., r, first_query + r + 1:] = 0.0
        return w / w.sum(axis=-1, keepdims=True)

    attn = causal_rows(weights(n_layers, n_kv, steps, t), n).astype(np.float16)
    w_obs = min(obs, n)
    obs_attn = causal_rows(weights(n_layers, n_kv, w_obs, n), n - w_obs).astype(np.float16)
    colsum = (rng.integers(0, 4, (n_layers, n_kv, n)) if ties else rng.random((n_layers, n_kv, n)) * 3)
    votes = causal_rows(weights(n_layers, n_q, w_obs, n), n - w_obs).sum(axis=2)
    attn_heads = causal_rows(weights(n_layers, n_q, steps + 1, t), n - 1).astype(np.float16)
    return KVTrace(
        text="synthetic", tokens=[f"t{i}" for i in range(t)], token_ids=np.arange(t, dtype=np.int32),
        n_prefill=n,
        layers=np.asarray(layers, np.int32), gqa=gqa, keys=vectors(n_layers, n_kv, t, dim),
        values=rng.standard_normal((n_layers, n_kv, t, dim)).astype(np.float16),
        queries=vectors(n_layers, n_q, t, dim), attn=attn, prefill_colsum=colsum.astype(np.float32),
        obs_attn=obs_attn, obs_votes_heads=votes.astype(np.float32), attn_heads=attn_heads,
        model={"name": "synthetic", "n_layers": n_model_layers}, scaling=dim ** -0.5)
