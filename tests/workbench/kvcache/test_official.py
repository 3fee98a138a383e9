"""Our KV policies against the official code, transcribed in a few lines each, on a real SmolLM2 trace captured with
float32 attention (`capture(..., attn_dtype="float32")`).

Each transcription keeps the official structure (what is scored, how the cache is reduced, which positions are
protected) and names its source; it feeds on the trace, so "the attention of a query over its cache" is the
query's attention restricted to the cached keys and renormalised (a softmax over the kept keys). Where the official
code has no GQA rule (it was written for multi-head models), the transcription aggregates a query group as the
trace does (``gqa="mean"``, kvpress's rule) and says so. Budgets: ours count the current token.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.workbench.kvcache import reference as R
from workbench.kvcache import capture, make_policy, replay

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def trace(kv_text, default_model):
    return capture(kv_text, decode_steps=24, attn_dtype="float32")


def _ours(trace, policy, budget):
    return replay(trace, policy, budget, metrics=False, backend="numba").kept


def _as_mask(sets, t):
    out = np.zeros((len(sets), t), bool)
    for s, cache in enumerate(sets):
        out[s, cache] = True
    return out


# ------------------------------------------------------------------------ TOVA: schwartz-lab-NLP/TOVA tova_cache.py


def official_tova(heads: np.ndarray, n: int, cache_size: int) -> list[np.ndarray]:
    """`TOVACache.reduce` after the prefill and after every decode query. ``heads`` [Q, S + 1, T]: each query
    head's attention of the last context query (row 0) and of every decode query. Returns the cache each decode
    query attends to (its ``cache_size`` positions plus itself)."""

    def reduce(cache, weights):                      # weights: [Q, len(cache)], a softmax over the cache
        if len(cache) <= cache_size:
            return cache
        mean = weights.mean(axis=0)                  # torch.mean(attn_weights[:, :, -1, :], dim=1)
        ind = torch.topk(torch.from_numpy(mean), k=cache_size).indices.numpy()
        return cache[np.sort(ind)]

    cache = reduce(np.arange(n), heads[:, 0, :n].astype(np.float64))
    seen = []
    for s in range(heads.shape[1] - 1):
        cache = np.append(cache, n + s)
        seen.append(cache)
        w = heads[:, s + 1, cache].astype(np.float64)
        cache = reduce(cache, w / w.sum(axis=1, keepdims=True))
    return seen


@pytest.mark.parametrize("cache_size", [16, 63, 160])
def test_tova_keeps_what_the_official_cache_keeps(trace, cache_size):
    kept = _ours(trace, "tova", cache_size + 1)
    for li in range(trace.n_layers):
        want = _as_mask(official_tova(trace.attn_heads[li], trace.n_prefill, cache_size), trace.n_tokens)
        for h in range(trace.n_kv_heads):  # one set per layer, shared by its KV heads
            np.testing.assert_array_equal(kept[li, h], want, err_msg=f"layer {li} head {h}")


def test_tova_per_kv_head_is_a_different_rule(trace):
    """The head-wise variant (our earlier default) keeps other sets than the official layer-wide rule."""
    layer = _ours(trace, "tova", 64)
    heads = _ours(trace, make_policy("tova", heads="per_kv_head"), 64)
    assert (layer != heads).any()
    assert (heads[:, 0] != heads[:, 1]).any()  # per head, the sets differ between heads


def test_tova_prefill_phase_keeps_what_kvpress_keeps(trace):
    """kvpress's TOVAPress.score: the last query's attention averaged over heads, the last position padded with the
    maximum, then the ScorerPress keeps the top n_kept."""
    n = trace.n_prefill
    n_kept = 100
    kept = _ours(trace, make_policy("tova", phase="prefill"), n_kept)
    for li in range(trace.n_layers):
        scores = torch.from_numpy(trace.attn_heads[li, :, 0, : n - 1].astype(np.float64)).mean(0)
        scores = F.pad(scores, (0, 1), value=scores.max().item())
        idx = scores.topk(n_kept).indices.numpy()
        for h in range(trace.n_kv_heads):
            assert set(np.flatnonzero(kept[li, h, 0, :n])) == set(idx), f"layer {li} head {h}"


# ------------------------------------------------ SnapKV: FasterDecoding/SnapKV snapkv/monkeypatch/snapkv_utils.py


def official_snapkv_indices(votes_heads: np.ndarray, n: int, window: int, keep: int, kernel: int, group: int):
    """`SnapKVCluster.update_kv`: attention of the last ``window`` queries summed per position before the window,
    ``F.avg_pool1d`` (kernel 5, padding 2), top ``keep`` per head; the group averaged as kvpress does.
    ``votes_heads`` [Q, n]: per query head, the window's attention summed (the trace's obs_votes_heads)."""
    sums = torch.from_numpy(votes_heads[:, : n - window].astype(np.float64))[None]
    pooled = F.avg_pool1d(sums, kernel_size=kernel, padding=kernel // 2, stride=1)[0]
    per_kv = pooled.view(-1, group, n - window).mean(1)
    return per_kv.topk(keep, dim=-1).indices.numpy()


@pytest.mark.parametrize("budget", [96, 160])
def test_snapkv_defaults_are_the_official_ones_and_keep_the_same_sets(trace, budget):
    policy = make_policy("snapkv")
    assert (policy.params["kernel"], policy.params["pooling"]) == (5, "avg")
    n, window = trace.n_prefill, 64
    assert trace.obs_window == window and n > budget
    kept = _ours(trace, policy, budget)
    for li in range(trace.n_layers):
        idx = official_snapkv_indices(trace.obs_votes_heads[li], n, window, budget - window, 5, trace.group_size)
        for h in range(trace.n_kv_heads):
            want = set(idx[h]) | set(range(n - window, n))
            assert set(np.flatnonzero(kept[li, h, 0, :n])) == want, f"layer {li} head {h}"


def test_snapkv_window_is_capped_by_the_budget_and_the_context(trace):
    r = replay(trace, "snapkv", 40, metrics=False)
    n = trace.n_prefill
    assert r.kept[:, :, 0, n - 20:n].all()       # budget 40 <= 64: the window is budget // 2
    assert r.kept[:, :, 0, :n].sum(-1).max() == 40


# --------------------------------------------- PyramidKV: Zefan-Cai/KVCache-Factory pyramidkv/pyramidkv_utils.py


def test_pyramidkv_keeps_what_kvcache_factory_keeps(trace):
    budget, window, n = 96, 64, trace.n_prefill
    kept = _ours(trace, "pyramidkv", budget)
    n_layers = trace.model["n_layers"]
    for li in range(trace.n_layers):
        capacity = R.pyramid_budget(budget, window, n_layers, 20, int(trace.layers[li]), n) - window
        idx = official_snapkv_indices(trace.obs_votes_heads[li], n, window, capacity, 5, trace.group_size)
        for h in range(trace.n_kv_heads):
            want = set(idx[h]) | set(range(n - window, n))
            assert set(np.flatnonzero(kept[li, h, 0, :n])) == want, f"layer {li} head {h}"


# --------------------------------------- AdaKV: FFY0/AdaKV adaptive_snapkv/monkeypatch/snapkv_utils.py


def test_adakv_keeps_what_the_adaptive_snapkv_cluster_keeps(trace):
    """`AdaptiveSnapKVCluster.update_kv`: window-mean attention pooled per head, the layer's top H x base_capacity
    scores decide each head's capacity round(c_h (1 - floor_alpha) + floor_capacity), each head keeps its best."""
    budget, window, alpha, n = 96, 64, 0.2, trace.n_prefill
    kept = _ours(trace, "adakv", budget)
    for li in range(trace.n_layers):
        sums = torch.from_numpy(trace.obs_votes_heads[li, :, : n - window].astype(np.float64))[None] / window
        pooled = F.avg_pool1d(sums, kernel_size=5, padding=2, stride=1)[0]
        attn_score = pooled.view(trace.n_kv_heads, trace.group_size, -1).mean(1)          # kvpress's GQA rule
        base_capacity = budget - window
        floor_capacity = int(base_capacity * alpha)
        sorted_score, sorted_index = attn_score.sort(dim=-1, descending=True, stable=True)
        top = torch.topk(sorted_score.reshape(-1), k=trace.n_kv_heads * base_capacity).indices // (n - window)
        counts = torch.zeros(trace.n_kv_heads, dtype=torch.int64).scatter_add_(0, top, torch.ones_like(top))
        capacity = torch.round(counts * (1 - alpha) + floor_capacity).int()
        for h in range(trace.n_kv_heads):
            want = set(sorted_index[h, : capacity[h]].tolist()) | set(range(n - window, n))
            assert set(np.flatnonzero(kept[li, h, 0, :n])) == want, f"layer {li} head {h}"


# ------------------------------------------ StreamingLLM: mit-han-lab/streaming-llm streaming_llm/kv_cache.py


def test_streaming_llm_keeps_what_start_recent_kv_cache_keeps(trace):
    """`StartRecentKVCache.evict_for_space(past, 1)`: keep [0, start) and the last recent - 1 positions, then the new
    token is appended: the query sees start + recent positions."""
    start, recent = 4, 60
    kept = _ours(trace, "streaming_llm", start + recent)
    n = trace.n_prefill
    for s in range(trace.n_steps):
        seq_len = n + s                                            # positions in the cache before the new token
        want = set(range(start)) | set(range(seq_len - recent + 1, seq_len)) | {seq_len}
        assert all(set(np.flatnonzero(kept[li, h, s])) == want for li in range(trace.n_layers)
                   for h in range(trace.n_kv_heads)), f"step {s}"


# -------------------------------------------- H2O: FMInference/H2O h2o_hf/utils_real_drop/modify_llama.py


def official_h2o(colsum: np.ndarray, attn: np.ndarray, n: int, hh: int, recent: int) -> list[np.ndarray]:
    """`H2OKVCache_LayerWise` for one head: ``hh_score`` starts as the prefill attention's column sums and adds each
    query's attention over its cache; after every forward the cache keeps the top ``hh`` of the positions before
    the last ``recent`` plus those ``recent``. ``colsum`` [n], ``attn`` [S, T] (a query group aggregated by mean)."""
    cache_size = hh + recent
    cache, score = np.arange(n), colsum.astype(np.float64)

    def reduce(cache, score):
        if len(cache) <= cache_size:
            return cache, score
        head = len(cache) - recent
        top = np.sort(torch.topk(torch.from_numpy(score[:head]), hh).indices.numpy())
        keep = np.concatenate([top, np.arange(head, len(cache))])
        return cache[keep], score[keep]

    cache, score = reduce(cache, score)
    seen = []
    for s in range(attn.shape[0]):
        cache, score = np.append(cache, n + s), np.append(score, 0.0)
        seen.append(cache)
        w = attn[s, cache].astype(np.float64)
        score = score + w / w.sum()
        cache, score = reduce(cache, score)
    return seen


def test_h2o_keeps_what_the_official_real_drop_cache_keeps(trace):
    hh, recent = 32, 31
    kept = _ours(trace, make_policy("h2o", recent=recent + 1), hh + recent + 1)
    for li in range(trace.n_layers):
        for h in range(trace.n_kv_heads):
            want = _as_mask(official_h2o(trace.prefill_colsum[li, h], trace.attn[li, h], trace.n_prefill, hh, recent),
                            trace.n_tokens)
            np.testing.assert_array_equal(kept[li, h], want, err_msg=f"layer {li} head {h}")


def test_float32_capture_stores_float32_attention_and_float16_is_the_default(trace, kv_trace):
    assert trace.attn.dtype == trace.obs_attn.dtype == trace.attn_heads.dtype == np.float32
    assert kv_trace.attn.dtype == kv_trace.attn_heads.dtype == np.float16
    # attn_heads averaged over a group is the decode attention the trace aggregates (gqa="mean")
    g = trace.group_size
    grouped = trace.attn_heads[:, :, 1:].reshape(trace.n_layers, trace.n_kv_heads, g, trace.n_steps, -1).mean(2)
    np.testing.assert_allclose(grouped, trace.attn, atol=1e-6)
