"""Quality with the real model: the full cache is a no-op, eviction costs perplexity, the memory is counted."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import KVCacheError, TraceMismatchError
from workbench.kvcache import capture, evaluate, passkey_probe, quality_sweep, replay
from workbench.kvcache.evaluate import kv_bytes, passkey_text

pytestmark = pytest.mark.model


def test_full_cache_changes_nothing(kv_trace):
    q = evaluate(None, "full", 1, trace=kv_trace)
    assert q.delta_ppl == 0 and q.kl == 0 and q.top1 == 1 and q.memory_fraction == 1
    assert q.ppl_full > 1 and q.nll.shape == (kv_trace.n_steps - 1,) and q.kl_steps.shape == (kv_trace.n_steps,)


def test_eviction_costs_quality_and_more_budget_costs_less(kv_trace):
    small = evaluate(None, "window", 8, trace=kv_trace)
    large = evaluate(None, "window", 200, trace=kv_trace)
    assert small.ppl > small.ppl_full and small.kl > 0.1 and small.top1 < 1
    assert large.kl < small.kl and large.memory_fraction > small.memory_fraction
    # the oracle at the same tiny budget loses less than the sliding window
    assert evaluate(None, "oracle", 8, trace=kv_trace).kl < small.kl


def test_memory_is_counted_from_the_kept_positions(kv_trace):
    ret = replay(kv_trace, "streaming_llm", 32, metrics=False)
    kept, full = kv_bytes(ret, 30, 64, 2)
    steps = kv_trace.n_prefill + 1 + np.arange(kv_trace.n_steps)
    assert full == pytest.approx(30 * 3 * steps.mean() * 2 * 64 * 2)
    assert kept == pytest.approx(30 * 3 * 32 * 2 * 64 * 2)  # every step holds exactly the budget
    half = replay(kv_trace, "streaming_llm", 32, metrics=False, layers=list(range(15)))
    kept_half, _ = kv_bytes(half, 30, 64, 2)  # layers not replayed count as full
    assert kept_half == pytest.approx((15 * 3 * 32 + 15 * 3 * steps.mean()) * 2 * 64 * 2)


def test_quality_sweep_table(kv_trace):
    seen = []
    sweep = quality_sweep(None, ["full", "h2o", "snapkv"], [16, 64], trace=kv_trace,
                          progress=lambda p: seen.append((p.done, p.total)))
    t = sweep.table
    assert list(t.policy) == ["full", "h2o", "h2o", "snapkv", "snapkv"]
    assert {"budget", "kept_fraction", "delta_ppl", "kl", "top1", "passkey"} <= set(t.columns)
    assert seen[-1] == (6, 6)
    h2o = t[t.policy == "h2o"]
    assert h2o.kl.iloc[0] > h2o.kl.iloc[1]  # 16 tokens lose more than 64


def test_quality_sweep_on_a_dask_cluster_equals_the_local_sweep(kv_text):
    """Two worker processes, each with its own default model: the same table (up to float32 rounding: a worker's
    torch runs on one thread), the progress counted in table cells."""
    pytest.importorskip("distributed")
    from workbench.distributed import connect

    kv_trace = capture(kv_text[:600], decode_steps=12)  # ~130 tokens: a masked pass is cheap
    policies, budgets = ["full", "tova", "snapkv"], [32, 64]
    local = quality_sweep(None, policies, budgets, trace=kv_trace)
    client = connect(workers=2)
    try:
        seen = []
        dist = quality_sweep(None, policies, budgets, trace=kv_trace, client=client,
                             progress=lambda p: seen.append((p.done, p.total)))
        with pytest.raises(KVCacheError, match="default model"):
            quality_sweep(None, policies, budgets, trace=kv_trace, client=client, model=object())
    finally:
        client.close()
    assert seen[-1] == (6, 6)
    assert list(dist.table.policy) == list(local.table.policy) and list(dist.table.budget) == list(local.table.budget)
    for col in ("kept_fraction", "ppl_full", "ppl", "kl", "top1", "kv_mb"):
        np.testing.assert_allclose(dist.table[col], local.table[col], rtol=1e-4, atol=1e-6, err_msg=col)


def test_passkey_probe_full_cache_finds_the_key():
    res = passkey_probe(["full", "window"], [16], depths=(0.5,), trials=1, n_filler=6)
    t = res.table
    assert len(t) == 2 and res.context_tokens > 100
    full = t[t.policy == "full"].iloc[0]
    assert full.correct and full.digits == 1.0
    win = t[t.policy == "window"].iloc[0]
    assert not win.correct  # a 16-token window after the context cannot hold the key
    acc = res.accuracy()
    assert acc[acc.policy == "full"].accuracy.iloc[0] == 1.0


def test_sweep_with_passkey_fills_matching_rows_only(kv_trace):
    res = passkey_probe(["window"], [16], depths=(0.5,), trials=1, n_filler=6)
    sweep = quality_sweep(None, ["window"], [16, 32], trace=kv_trace)
    filled = sweep.with_passkey(res).table
    assert filled.passkey.iloc[0] == 0.0 and np.isnan(filled.passkey.iloc[1])
    assert sweep.table.passkey.isna().all()  # the original is unchanged
    assert filled.drop(columns="passkey").equals(sweep.table.drop(columns="passkey"))


def test_passkey_text_places_the_needle():
    ctx, q, a = passkey_text(12345, 0.0, 4)
    assert ctx.index("12345") < ctx.index("The grass")
    ctx, _, _ = passkey_text(12345, 1.0, 4)
    assert ctx.index("12345") > ctx.rindex("The grass")
    assert a == " 12345" and "pass key" in q
    with pytest.raises(KVCacheError, match="depth"):
        passkey_text(1, 1.5, 4)


def test_bad_inputs(kv_trace, kv_text):
    with pytest.raises(KVCacheError, match="budget"):
        evaluate(None, "h2o", 0, trace=kv_trace)
    with pytest.raises(KVCacheError, match="larger than the whole context"):
        evaluate(None, "h2o", 10_000, trace=kv_trace)
    with pytest.raises(KVCacheError, match="text or a trace"):
        evaluate(None, "h2o", 10)
    with pytest.raises(TraceMismatchError, match="another text"):
        evaluate("a different text altogether", "h2o", 10, trace=kv_trace)
    with pytest.raises(KVCacheError, match="empty"):
        evaluate("", "h2o", 10)
    with pytest.raises(KVCacheError, match="at least 2 decode steps"):
        evaluate(None, "h2o", 10, trace=capture(kv_text[:300], decode_steps=1, layers=[0]))
