"""`capture_router_logits` on tiny randomly initialised Hugging Face MoE models (Mixtral, Qwen2-MoE, Qwen3-MoE,
OLMoE; built from configs, nothing downloaded): the captured logits are each model's own router applied to the
hidden states entering its MoE blocks, their top-k are the experts the blocks used, and sequences, tags and round
trips come out right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.errors import RoutingError
from workbench.routing import RoutingTrace, route
from workbench.routing.capture import capture_router_logits

torch.set_num_threads(1)

VOCAB = 128
WORDS = ["[UNK]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "def", "f", "(", ")", ":", "x", "return"]


def _config(family: str, **over):
    import transformers

    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=32, num_experts_per_tok=2, bos_token_id=1,
                  eos_token_id=2, pad_token_id=0)
    common.update(over)
    if family == "mixtral":
        cfg = transformers.MixtralConfig(num_local_experts=4, **common)
    elif family == "qwen2_moe":
        cfg = transformers.Qwen2MoeConfig(num_experts=8, moe_intermediate_size=32, shared_expert_intermediate_size=32,
                                          norm_topk_prob=False, **common)
    elif family == "qwen3_moe":
        cfg = transformers.Qwen3MoeConfig(num_experts=8, moe_intermediate_size=32, head_dim=8, norm_topk_prob=True,
                                          **common)
    else:
        cfg = transformers.OlmoeConfig(num_experts=8, norm_topk_prob=False, **common)
    return cfg


_CONFIG_CLASSES = {"mixtral": "MixtralConfig", "qwen2_moe": "Qwen2MoeConfig", "qwen3_moe": "Qwen3MoeConfig",
                   "olmoe": "OlmoeConfig"}
_MODELS: dict = {}


def _tiny(family: str, **over):
    import transformers

    if not hasattr(transformers, _CONFIG_CLASSES[family]):
        pytest.skip(f"this transformers ({transformers.__version__}) has no {_CONFIG_CLASSES[family]}")
    key = (family, repr(sorted(over.items())))
    if key not in _MODELS:
        torch.manual_seed(0)
        _MODELS[key] = transformers.AutoModelForCausalLM.from_config(_config(family, **over)).eval()
    return _MODELS[key]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def _moe_blocks(model) -> dict:
    return {i: layer.mlp for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "gate")
            and hasattr(layer.mlp, "experts")}


def _record_blocks(model):
    """Pre-hooks recording, per forward pass, the hidden states entering each MoE block and the expert indices
    the block hands its experts."""
    seen = {"inputs": {}, "used": {}}
    handles = []
    for i, block in _moe_blocks(model).items():
        handles.append(block.register_forward_pre_hook(
            lambda m, args, i=i: seen["inputs"].setdefault(i, []).append(args[0].detach().clone())))
        handles.append(block.experts.register_forward_pre_hook(
            lambda m, args, i=i: seen["used"].setdefault(i, []).append(args[1].detach().clone())))
    return seen, handles


SEQS = [[5, 17, 99, 3, 42, 8, 77], [1, 2, 3, 120]]


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"])
def test_captured_logits_are_the_models_own_router(family):
    model = _tiny(family)
    n_experts, k = (4 if family == "mixtral" else 8), 2
    seen, handles = _record_blocks(model)
    try:
        tr = capture_router_logits(SEQS, model)
    finally:
        for h in handles:
            h.remove()
    assert tr.logits.shape == (2, 11, n_experts)
    assert tr.meta["capture_path"] == "router_logits" and tr.meta["layers"] == [0, 1]
    assert tr.meta["n_experts"] == n_experts and tr.meta["top_k"] == k and tr.meta["model_type"] == family
    assert tr.meta["architecture"] == type(model).__name__ and tr.tokens is None
    assert np.abs(tr.logits).max() > 1e-3  # a real random router, not zeros
    starts = [0, 7, 11]
    for layer, block in _moe_blocks(model).items():
        assert len(seen["inputs"][layer]) == len(SEQS)  # one forward pass per sequence
        for s in range(len(SEQS)):
            got = tr.logits[layer, starts[s]:starts[s + 1]]
            h = seen["inputs"][layer][s].reshape(-1, 32)
            expected = torch.nn.functional.linear(h, block.gate.weight).detach().numpy()
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
            top = np.sort(np.argsort(-got, axis=1, kind="stable")[:, :k], axis=1)
            used = np.sort(seen["used"][layer][s].numpy(), axis=1)
            np.testing.assert_array_equal(top, used)
            # the lab's replay of the model's router picks the same experts
            replay = route(got, tr.meta["router"], **tr.meta["router_params"])
            np.testing.assert_array_equal(np.sort(replay.assignments, axis=1), used)
    # the forward-hook path on the gates gives the same numbers
    hooked = capture_router_logits(SEQS, model, via="hooks")
    assert hooked.meta["capture_path"] == "hooks"
    np.testing.assert_allclose(hooked.logits, tr.logits, rtol=1e-6, atol=1e-7)


def test_router_hints_follow_each_family():
    mix = capture_router_logits([[3, 4]], _tiny("mixtral"))
    assert mix.meta["router"] == "topk_softmax" and mix.meta["router_params"] == {"k": 2, "renormalize": True}
    qwen2 = capture_router_logits([[3, 4]], _tiny("qwen2_moe"))
    assert qwen2.meta["router_params"] == {"k": 2, "renormalize": False} and qwen2.meta["shared_experts"] == 1
    assert qwen2.meta["norm_topk_prob"] is False and qwen2.meta["router_config"]["num_experts"] == 8
    olmoe = capture_router_logits([[3, 4]], _tiny("olmoe"))
    assert olmoe.meta["shared_experts"] == 0 and olmoe.meta["router_score"] == "softmax"


def test_sequences_positions_tags_max_tokens_and_round_trip(tmp_path):
    model = _tiny("mixtral")
    seqs = [[5, 6, 7], torch.tensor([8, 9]), np.array([10, 11, 12, 13])]
    tr = capture_router_logits(seqs, model, tags=["code", "fr", "code"])
    np.testing.assert_array_equal(tr.sequence_ids, [0, 0, 0, 1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(tr.positions, [0, 1, 2, 0, 1, 0, 1, 2, 3])
    np.testing.assert_array_equal(tr.token_ids, [5, 6, 7, 8, 9, 10, 11, 12, 13])
    assert tr.tags == ["code"] * 3 + ["fr"] * 2 + ["code"] * 4 and tr.n_sequences == 3
    alone = capture_router_logits([8, 9], model)  # a flat int list is one sequence
    np.testing.assert_allclose(tr.logits[:, 3:5], alone.logits, atol=1e-6)
    batch = capture_router_logits(torch.tensor([[5, 6, 7], [10, 11, 12]]), model, layers=[1], max_tokens=2)
    assert batch.logits.shape == (1, 4, 4) and batch.meta["layers"] == [1]
    np.testing.assert_array_equal(batch.token_ids, [5, 6, 10, 11])
    np.testing.assert_allclose(batch.logits[0, :2], tr.logits[1, :2], atol=1e-6)
    done = []
    capture_router_logits(seqs, model, progress=lambda p: done.append((p.done, p.total)))
    assert done == [(1, 3), (2, 3), (3, 3)]
    back = RoutingTrace.load(tr.save(tmp_path / "mixtral.safetensors"))
    np.testing.assert_array_equal(back.logits, tr.logits)
    for name in ("token_ids", "positions", "sequence_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(tr, name))
    assert back.tags == tr.tags and back.meta == tr.meta


def test_texts_with_a_tokenizer_record_token_strings():
    model, tok = _tiny("olmoe"), _tokenizer()
    tr = capture_router_logits(["the cat sat on the mat", "def f ( x ) :"], model, tokenizer=tok, tags="mixed")
    assert tr.tokens == ["the", "cat", "sat", "on", "the", "mat", "def", "f", "(", "x", ")", ":"]
    np.testing.assert_array_equal(tr.token_ids[:3], [1, 2, 3])
    assert set(tr.tags) == {"mixed"} and tr.n_sequences == 2
    single = capture_router_logits("a dog ran", model, tokenizer=tok)
    assert single.n_tokens == 3 and single.tokens == ["a", "dog", "ran"]
    ids = capture_router_logits([[7, 8]], model, tokenizer=tok)  # ids plus a tokenizer: strings decoded too
    assert ids.tokens == ["dog", "ran"]
    with pytest.raises(RoutingError, match="empty"):
        capture_router_logits(["the cat", "   "], model, tokenizer=tok)
    with pytest.raises(RoutingError, match="tokenizer"):
        capture_router_logits("the cat", model)
    with pytest.raises(RoutingError, match="one label per sequence"):
        capture_router_logits(["the cat", "a dog"], model, tokenizer=tok, tags=["x"])
    long_text = " ".join(["the cat sat"] * 20)  # 60 tokens, context 32
    with pytest.raises(RoutingError, match="context is 32 tokens"):
        capture_router_logits(long_text, model, tokenizer=tok)
    assert capture_router_logits(long_text, model, tokenizer=tok, max_tokens=32).n_tokens == 32


def test_dense_layers_of_qwen2_moe_are_skipped_and_numbered_as_model_layers():
    model = _tiny("qwen2_moe", num_hidden_layers=3, mlp_only_layers=[1])
    tr = capture_router_logits([SEQS[0]], model)
    assert tr.meta["layers"] == [0, 2] and tr.logits.shape == (2, 7, 8)
    hooked = capture_router_logits([SEQS[0]], model, via="hooks", layers=[2])
    np.testing.assert_allclose(hooked.logits[0], tr.logits[1], atol=1e-6)
    with pytest.raises(RoutingError, match=r"not MoE layers.*\[0, 2\]"):
        capture_router_logits([SEQS[0]], model, layers=[1])


def test_falls_back_to_gate_hooks_when_the_model_returns_no_router_logits(monkeypatch):
    model = _tiny("qwen3_moe")
    expected = capture_router_logits(SEQS, model).logits
    own = model.forward

    def without_router_logits(*args, output_router_logits=None, **kwargs):
        return own(*args, output_router_logits=False, **kwargs)

    monkeypatch.setattr(model, "forward", without_router_logits)
    tr = capture_router_logits(SEQS, model)
    assert tr.meta["capture_path"] == "hooks"
    np.testing.assert_allclose(tr.logits, expected, atol=1e-6)
    with pytest.raises(RoutingError, match="returned no router logits"):
        capture_router_logits(SEQS, model, via="router_logits")


def test_a_dense_model_and_bad_inputs_are_refused():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    dense = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32))
    with pytest.raises(RoutingError, match="not a mixture-of-experts"):
        capture_router_logits(SEQS, dense)
    with pytest.raises(RoutingError, match="loaded transformers model"):
        capture_router_logits(SEQS, "mistralai/Mixtral-8x7B-v0.1")
    model = _tiny("mixtral")
    with pytest.raises(RoutingError, match="no sequences"):
        capture_router_logits([], model)
    with pytest.raises(RoutingError, match="no tokens"):
        capture_router_logits([[1, 2], []], model)
    with pytest.raises(RoutingError, match="outside the model's vocabulary"):
        capture_router_logits([[1, VOCAB]], model)
    with pytest.raises(RoutingError, match="context is 32 tokens"):
        capture_router_logits(torch.arange(40) % VOCAB, model)
    with pytest.raises(RoutingError, match="via"):
        capture_router_logits(SEQS, model, via="magic")
    with pytest.raises(RoutingError, match="max_tokens"):
        capture_router_logits(SEQS, model, max_tokens=0)
    assert model.training is False
    model.train()
    capture_router_logits(SEQS, model)  # runs in eval mode and gives the mode back
    assert model.training is True and model.model.layers[0].mlp.training is True
    model.eval()


def test_the_old_model_first_order_still_captures_with_a_deprecation_warning():
    model = _tiny("mixtral")
    with pytest.warns(DeprecationWarning, match="text comes first"):
        old = capture_router_logits(model, SEQS)
    assert np.array_equal(old.logits, capture_router_logits(SEQS, model).logits)
