"""Heavy hitters come from H2O's own scores: every position H2O evicts is the lowest-scored candidate."""

import numpy as np
import pytest

from workbench.errors import KVCacheError
from workbench.kvcache import make_policy, replay
from workbench.kvcache.heavy_hitters import attention_received, heavy_hitters, uses_replay_scores


@pytest.fixture(scope="module")
def h2o(kv_trace):
    budget = kv_trace.n_prefill // 3
    return replay(kv_trace, make_policy("h2o", recent=8), budget, layers=[3, 15], metrics=False)


def test_every_h2o_eviction_takes_the_lowest_of_these_scores(kv_trace, h2o):
    recent, evictions = 8, 0
    n = h2o.n_prefill
    for li in range(2):
        for head in range(kv_trace.n_kv_heads):
            kept = h2o.kept[li, head]
            for s in range(1, h2o.n_steps):
                gone = np.flatnonzero(kept[s - 1] & ~kept[s])
                if gone.size == 0:
                    continue
                assert gone.size == 1  # the decode-time cache drops one position per step
                score = attention_received(kv_trace, h2o, li, head, s - 1)
                hi = n + s - recent + 1
                candidates = np.flatnonzero(kept[s - 1, :hi])
                lowest = candidates[np.argmin(score[candidates])]
                assert gone[0] == lowest, (li, head, s)
                evictions += 1
    assert evictions > 50


def test_h2o_uses_its_renormalised_scores_and_other_policies_the_raw_attention(kv_trace, h2o):
    assert uses_replay_scores(kv_trace, h2o)
    raw = replay(kv_trace, "snapkv", h2o.budget, layers=[3, 15], metrics=False)
    assert not uses_replay_scores(kv_trace, raw)
    step = h2o.n_steps - 1
    tli = kv_trace.layer_index(15)
    received = kv_trace.prefill_colsum[tli][0].astype(np.float64)
    expected = np.zeros(kv_trace.n_tokens)
    expected[: kv_trace.n_prefill] = received
    expected += kv_trace.f32("attn", tli)[0].astype(np.float64).sum(axis=0)
    assert np.allclose(attention_received(kv_trace, raw, 1, 0, step), expected)
    ours = attention_received(kv_trace, h2o, 1, 0, step)
    assert not np.allclose(ours, expected)  # the renormalisation over the kept keys changes the scores
    top = heavy_hitters(kv_trace, h2o, 1, 0, step, 10)
    assert top.size == 10 and np.all(np.diff(top) > 0)
    assert np.all(ours[top][:, None] >= np.delete(ours[: h2o.n_prefill + step + 1], top)[None, :])


def test_bad_arguments_are_kv_cache_errors(kv_trace, h2o):
    with pytest.raises(KVCacheError, match="KV head"):
        attention_received(kv_trace, h2o, 0, 99, 0)
    with pytest.raises(KVCacheError, match="step"):
        attention_received(kv_trace, h2o, 0, 0, h2o.n_steps)
    with pytest.raises(KVCacheError, match="layer index"):
        attention_received(kv_trace, h2o, 2, 0, 0)
    with pytest.raises(KVCacheError, match="k must"):
        heavy_hitters(kv_trace, h2o, 0, 0, 0, -1)
