"""Capture and the model runner: the trace must be what the model really computed, and a masked pass must equal
decoding token by token with that evicted cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.errors import KVCacheError, TraceMismatchError
from workbench.kvcache import CaptureRunner, KVTrace, capture, capture_ids, default_capture_runner

pytestmark = pytest.mark.model


def _eager_attentions(model, ids):
    with torch.no_grad():
        out = model(torch.as_tensor(ids[None].astype(np.int64)), output_attentions=True, use_cache=True)
    return out


def test_trace_shapes_and_attention_rows(kv_trace):
    tr = kv_trace
    assert tr.keys.shape == (30, 3, tr.n_tokens, 64) and tr.queries.shape == (30, 9, tr.n_tokens, 64)
    assert tr.attn.shape == (30, 3, tr.n_steps, tr.n_tokens)
    assert tr.n_steps == 24 and tr.n_prefill + 24 == tr.n_tokens
    a = tr.attn.astype(np.float32)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=2e-3)
    future = np.arange(tr.n_tokens)[None, :] > (tr.n_prefill + np.arange(tr.n_steps))[:, None]
    assert not a[:, :, future].any()
    # every prefill query's (mean-aggregated) row sums to 1, so the column sums total n_prefill
    np.testing.assert_allclose(tr.prefill_colsum.sum(-1), tr.n_prefill, rtol=1e-4)
    assert tr.obs_attn.shape == (30, 3, 64, tr.n_prefill)
    assert tr.attn_heads.shape == (30, 9, tr.n_steps + 1, tr.n_tokens)
    np.testing.assert_allclose(tr.attn_heads.astype(np.float32).sum(-1), 1.0, atol=2e-3)
    np.testing.assert_allclose(tr.obs_votes_heads.sum(-1), 64, rtol=1e-4)


@pytest.mark.parametrize("gqa", ["mean", "max"])
def test_capture_matches_the_models_own_attention_and_cache(default_model, gqa):
    model, tok = default_model
    text = "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is"
    tr = capture(text, decode_steps=6, gqa=gqa, layers=[0, 7, 29])
    out = _eager_attentions(model, tr.token_ids)
    for j, layer in enumerate([0, 7, 29]):
        a = out.attentions[layer][0].numpy().reshape(3, 3, tr.n_tokens, tr.n_tokens)
        agg = a.mean(1) if gqa == "mean" else a.max(1)
        np.testing.assert_allclose(tr.attn[j].astype(np.float32), agg[:, tr.n_prefill:], atol=2e-3)
        # per query head: the last context query and every decode query
        np.testing.assert_allclose(tr.attn_heads[j].astype(np.float32),
                                   out.attentions[layer][0].numpy()[:, tr.n_prefill - 1:], atol=2e-3)
        np.testing.assert_allclose(tr.prefill_colsum[j], agg[:, : tr.n_prefill, : tr.n_prefill].sum(1), rtol=2e-3,
                                   atol=2e-3)
        cache = out.past_key_values.layers[layer]
        np.testing.assert_allclose(tr.keys[j].astype(np.float32), cache.keys[0].numpy(), atol=2e-2, rtol=2e-3)
        np.testing.assert_allclose(tr.values[j].astype(np.float32), cache.values[0].numpy(), atol=2e-2, rtol=2e-3)
        # the stored post-RoPE queries reproduce the attention: softmax(q.k * scale)
        q = tr.queries[j].astype(np.float32)
        k = np.repeat(tr.keys[j].astype(np.float32), 3, axis=0)
        logits = q @ k.transpose(0, 2, 1) * tr.scaling
        logits[:, np.triu(np.ones((tr.n_tokens, tr.n_tokens), bool), 1)] = -np.inf
        w = np.exp(logits - logits.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        np.testing.assert_allclose(w, out.attentions[layer][0].numpy(), atol=5e-3)


def test_runner_logits_equal_the_model_and_keep_all_is_a_no_op(default_model, kv_trace):
    model, _ = default_model
    runner = default_capture_runner()
    ids = kv_trace.token_ids[:80].astype(np.int64)
    with torch.no_grad():
        ref = model(torch.as_tensor(ids[None])).logits[0].numpy()
    np.testing.assert_allclose(runner.logits(ids), ref, atol=1e-4)
    keep = {layer: np.tril(np.ones((80, 80), bool))[60:][None].repeat(3, 0) for layer in range(30)}
    np.testing.assert_allclose(runner.logits(ids, n_prefill=60, keep=keep), ref, atol=1e-4)
    np.testing.assert_allclose(runner.logits(ids, last=5), ref[-5:], atol=1e-4)


def test_masked_pass_equals_incremental_decoding_with_an_evicted_cache(default_model, kv_trace):
    """Evict a fixed set of context positions after prefill (sinks + a recent window), then decode the rest one
    token at a time with transformers' own cache: the logits must equal one masked pass."""
    from transformers import DynamicCache

    model, _ = default_model
    runner = default_capture_runner()
    ids = kv_trace.token_ids[:90].astype(np.int64)
    n_pre = 70
    kept_ctx = np.r_[0:4, 50:70]
    with torch.no_grad():
        out = model(torch.as_tensor(ids[None, :n_pre]), use_cache=True)
        cache = DynamicCache()
        for layer in range(30):
            lc = out.past_key_values.layers[layer]
            cache.update(lc.keys[:, :, kept_ctx].clone(), lc.values[:, :, kept_ctx].clone(), layer)
        steps = []
        logits = out.logits[0, -1]
        for p in range(n_pre, len(ids)):
            o = model(torch.as_tensor(ids[None, p:p + 1]), cache=cache, use_cache=True,
                      position_ids=torch.tensor([[p]]))
            steps.append(o.logits[0, -1].numpy())
    incremental = np.stack(steps)
    keep_one = np.zeros((len(ids) - n_pre, len(ids)), bool)
    keep_one[:, kept_ctx] = True
    for s in range(len(ids) - n_pre):
        keep_one[s, n_pre: n_pre + s + 1] = True
    keep = {layer: keep_one[None].repeat(3, 0) for layer in range(30)}
    masked = runner.logits(ids, n_prefill=n_pre, keep=keep)
    np.testing.assert_allclose(masked[n_pre:], incremental, atol=2e-3)
    np.testing.assert_allclose(masked[n_pre - 1], logits.numpy(), atol=2e-3)
    # and the eviction really changed the predictions
    full = runner.logits(ids)
    assert np.abs(full[n_pre:] - masked[n_pre:]).max() > 0.1


def test_save_load_round_trip_and_refusals(kv_trace, tmp_path):
    path = kv_trace.save(tmp_path / "t.safetensors")
    back = KVTrace.load(path)
    for name in ("token_ids", "keys", "attn", "attn_heads", "prefill_colsum", "obs_attn", "obs_votes_heads",
                 "layers"):
        np.testing.assert_array_equal(getattr(back, name), getattr(kv_trace, name))
    assert back.tokens == kv_trace.tokens and back.n_prefill == kv_trace.n_prefill and back.model == kv_trace.model
    assert back.text == kv_trace.text and back.scaling == kv_trace.scaling
    with pytest.raises(KVCacheError, match="exists"):
        kv_trace.save(path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(KVCacheError, match="could not read"):
        KVTrace.load(bad)
    with pytest.raises(KVCacheError, match="no trace file"):
        KVTrace.load(tmp_path / "missing.safetensors")


def test_a_trace_saved_before_attn_heads_loads_and_says_what_the_layer_wide_tova_needs(kv_trace, tmp_path):
    import json

    from safetensors.numpy import save_file

    from workbench.kvcache import make_policy, replay
    from workbench.kvcache.trace import _ARRAYS

    old = tmp_path / "v1.safetensors"
    meta = {"text": kv_trace.text, "tokens": json.dumps(kv_trace.tokens), "n_prefill": str(kv_trace.n_prefill),
            "gqa": kv_trace.gqa, "model": json.dumps(kv_trace.model), "scaling": repr(kv_trace.scaling),
            "format": "workbench-kvtrace-1"}
    save_file({k: np.ascontiguousarray(getattr(kv_trace, k)) for k in _ARRAYS}, str(old), metadata=meta)
    back = KVTrace.load(old)
    assert back.attn_heads is None
    np.testing.assert_array_equal(replay(back, "snapkv", 64).kept, replay(kv_trace, "snapkv", 64).kept)
    np.testing.assert_array_equal(replay(back, make_policy("tova", heads="per_kv_head"), 64).kept,
                                  replay(kv_trace, make_policy("tova", heads="per_kv_head"), 64).kept)
    with pytest.raises(KVCacheError, match="capture the text again.*per_kv_head"):
        replay(back, "tova", 64)
    from dataclasses import replace

    damaged = replace(kv_trace, attn_heads=kv_trace.attn_heads[:, :, :3], _cache={})
    with pytest.raises(KVCacheError, match="attn_heads has shape .* damaged"):
        replay(damaged, "tova", 64)


def test_generate_makes_greedy_tokens_the_decode_steps():
    tr = capture("Once upon a time, in a small village,", generate=5, layers=[3])
    assert tr.n_steps == 5 and tr.layers.tolist() == [3]
    assert tr.text.startswith("Once upon a time")


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(KVCacheError, match="empty"):
        capture("   ")
    with pytest.raises(KVCacheError, match="decode steps"):
        capture("Just a few words.", decode_steps=50)
    with pytest.raises(KVCacheError, match="gqa"):
        capture("Some words here and there.", decode_steps=2, gqa="median")
    with pytest.raises(KVCacheError, match="layers"):
        capture("Some words here and there.", decode_steps=2, layers=[30])
    with pytest.raises(KVCacheError, match="n_prefill"):
        capture_ids(np.arange(10), 10)
    with pytest.raises(KVCacheError, match="attn_dtype"):
        capture("Some words here and there.", decode_steps=2, attn_dtype="bfloat16")


def _tiny(arch: str):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    torch.manual_seed(0)
    common = dict(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    cfg = LlamaConfig(**common) if arch == "llama" else Qwen2Config(**common)
    cfg._attn_implementation = "eager"
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_any_local_causal_lm_works_and_too_long_texts_are_refused(default_model, arch):
    _, tok = default_model
    tiny = _tiny(arch)
    runner = CaptureRunner(tiny, tok)
    text = "A short sentence about cats and dogs and birds."
    tr = capture(text, runner, decode_steps=3)
    assert tr.keys.shape[:2] == (2, 2) and tr.queries.shape[1] == 4
    out = _eager_attentions(tiny, tr.token_ids)
    a = out.attentions[1][0].numpy().reshape(2, 2, tr.n_tokens, tr.n_tokens).mean(1)
    np.testing.assert_allclose(tr.attn[1].astype(np.float32), a[:, tr.n_prefill:], atol=2e-3)
    with pytest.raises(KVCacheError, match="context is 64 tokens"):
        capture("word " * 200, runner)
    with pytest.raises(TraceMismatchError, match="captured from"):
        tr.check_model(default_model[0])
    with pytest.raises(KVCacheError, match="tokenizer"):
        CaptureRunner(tiny)
