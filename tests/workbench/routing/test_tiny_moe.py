"""The tiny MoE model: shapes, the routing it does is what its logits say, checkpoints, shipped assets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.errors import RoutingError
from workbench.routing import deepseek_v3, topk_softmax
from workbench.routing.tiny_moe import (
    ASSETS_DIR,
    VARIANTS,
    TinyMoE,
    TinyMoEConfig,
    checkpoint_name,
    load_tiny_moe,
    load_tiny_moe_tokenizer,
    read_checkpoint_meta,
    round_to_storage,
    save_tiny_moe,
    trace_text,
)

torch.set_num_threads(1)
SMALL = TinyMoEConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=2, n_experts=4, top_k=2, d_expert=16,
                      context=16)


def _model(cfg=SMALL, seed=0) -> TinyMoE:
    model = TinyMoE(cfg)
    model.reset_parameters(seed=seed)
    with torch.no_grad():  # a router with real preferences (the 0.02 init makes every logit nearly 0)
        for block in model.blocks:
            block.moe.router.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed + 1))
    return model.eval()


def _ids(cfg=SMALL, b=3, s=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (b, s or cfg.context), generator=gen)


def test_forward_shapes():
    model, ids = _model(), _ids()
    out = model(ids)
    n = ids.numel()
    assert out.logits.shape == (3, SMALL.context, SMALL.vocab_size)
    assert out.router_logits.shape == (SMALL.n_layers, n, SMALL.n_experts)
    assert out.router_logits.dtype == torch.float32
    assert out.experts.shape == out.gates.shape == (SMALL.n_layers, n, SMALL.top_k)
    torch.testing.assert_close(out.gates.sum(-1), torch.ones(SMALL.n_layers, n))
    # causal: changing the last token changes nothing before it
    ids2 = ids.clone()
    ids2[:, -1] = (ids2[:, -1] + 1) % SMALL.vocab_size
    torch.testing.assert_close(model(ids2).logits[:, :-1], out.logits[:, :-1])


def test_router_logits_are_what_was_routed_softmax():
    model, ids = _model(), _ids()
    out = model(ids)
    for layer in range(SMALL.n_layers):
        ref = topk_softmax(out.router_logits[layer], k=SMALL.top_k)
        np.testing.assert_array_equal(ref.assignments, out.experts[layer].detach().numpy())
        np.testing.assert_allclose(ref.weights, out.gates[layer].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_router_logits_are_what_was_routed_sigmoid_with_bias():
    cfg = TinyMoEConfig(**{**SMALL.to_dict(), "gate": "sigmoid"})
    model, ids = _model(cfg), _ids(cfg)
    bias = torch.tensor([[0.3, -0.2, 0.0, 0.1], [-0.4, 0.0, 0.25, 0.05]])
    for block, b in zip(model.blocks, bias):
        block.moe.bias.copy_(b)
    out = model(ids)
    for layer in range(cfg.n_layers):
        ref = deepseek_v3(out.router_logits[layer], k=cfg.top_k, bias=bias[layer].numpy())
        np.testing.assert_array_equal(ref.assignments, out.experts[layer].detach().numpy())
        np.testing.assert_allclose(ref.weights, out.gates[layer].detach().numpy(), rtol=1e-5, atol=1e-6)
    assert not np.array_equal(out.experts.numpy(), _model(cfg)(ids).experts.numpy())  # bias changed choices


def test_moe_layer_matches_per_token_reference():
    model = _model()
    moe = model.blocks[0].moe
    x = torch.randn(20, SMALL.d_model, generator=torch.Generator().manual_seed(3))
    y, logits, experts, gates = moe(x)
    ref = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(SMALL.top_k):
            e = int(experts[t, j])
            a, b = (x[t] @ moe.w_in[e]).chunk(2)
            ref[t] += gates[t, j] * ((torch.nn.functional.silu(a) * b) @ moe.w_out[e])
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)


def test_gradients_reach_router_and_experts():
    model, ids = _model(), _ids()
    model.train()
    out = model(ids)
    torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    moe = model.blocks[0].moe
    assert moe.router.weight.grad.abs().sum() > 0
    assert moe.w_in.grad.abs().sum() > 0 and moe.w_out.grad.abs().sum() > 0
    assert moe.bias.requires_grad is False


def test_checkpoint_round_trip(tmp_path):
    model = _model()
    model.variant = "global"
    path = save_tiny_moe(model, tmp_path / "m.safetensors", extra={"note": "x"})
    loaded = load_tiny_moe(path=path)
    assert loaded.config == SMALL and loaded.variant == "global"
    assert read_checkpoint_meta(path)["extra"] == {"note": "x"}
    ids = _ids()
    torch.testing.assert_close(loaded(ids).logits, round_to_storage(model)(ids).logits)
    with pytest.raises(RoutingError, match="exists"):
        save_tiny_moe(model, path)
    save_tiny_moe(model, path, overwrite=True)


def test_bad_inputs_raise_routing_errors(tmp_path):
    with pytest.raises(RoutingError, match="multiple of n_heads"):
        TinyMoEConfig(d_model=30, n_heads=4)
    with pytest.raises(RoutingError, match="top_k"):
        TinyMoEConfig(n_experts=2, top_k=3)
    with pytest.raises(RoutingError, match="gate"):
        TinyMoEConfig(gate="relu")
    with pytest.raises(RoutingError, match="unknown variant"):
        load_tiny_moe("nope")
    with pytest.raises(RoutingError, match="no tiny MoE checkpoint"):
        load_tiny_moe(path=tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(RoutingError, match="could not read"):
        load_tiny_moe(path=tmp_path / "junk.safetensors")
    with pytest.raises(RoutingError, match="context"):
        _model()(_ids(s=SMALL.context + 1))


# --------------------------------------------------------------------------------------------- shipped assets


@pytest.mark.parametrize("variant", VARIANTS)
def test_shipped_checkpoints_load(variant):
    path = ASSETS_DIR / checkpoint_name(variant)
    assert path.is_file() and path.stat().st_size < 8e6  # a few MB in the package (load time: `workbench moe info`)
    model = load_tiny_moe(variant)
    assert model.variant == variant and not model.training
    assert (model.config.gate == "sigmoid") == (variant == "bias")
    assert (np.abs(model.biases).sum() > 0) == (variant == "bias")


def test_shipped_model_traces_text_and_reroutes_exactly():
    tok = load_tiny_moe_tokenizer()
    model = load_tiny_moe("bias")
    assert tok.n_vocab <= model.config.vocab_size
    texts = ["def add(a, b):\n    return a + b\n", "Alle Menschen sind frei und gleich an Würde und Rechten."]
    tr = trace_text(model, tok, texts, tags=["code", "de"])
    n_code = len(tok.encode(texts[0]))
    n_all = n_code + len(tok.encode(texts[1]))
    assert tr.logits.shape == (model.config.n_layers, n_all, model.config.n_experts)
    assert tr.tags[:n_code] == ["code"] * n_code and tr.tags[-1] == "de"
    assert "".join(tr.tokens[:n_code]) == texts[0]
    assert tr.meta["router"] == "deepseek_v3" and tr.n_sequences == 2
    assert tr.bias.shape == (tr.n_layers, tr.n_experts) and "bias" not in tr.meta
    ids = torch.as_tensor(tr.token_ids[:n_code], dtype=torch.long)[None]
    experts = model(ids).experts
    for layer in range(tr.n_layers):
        r = deepseek_v3(tr.layer(layer)[:n_code], k=tr.meta["top_k"], **tr.router_params(layer))  # its bias
        np.testing.assert_array_equal(r.assignments, experts[layer].numpy())


def test_trace_text_splits_long_texts_into_context_windows():
    tok = load_tiny_moe_tokenizer()
    model = load_tiny_moe("global")
    text = "word " * (model.config.context + 40)
    tr = trace_text(model, tok, text, tags="english")
    n = len(tok.encode(text))
    assert tr.n_tokens == n and tr.n_sequences == 2
    assert tr.positions.max() == model.config.context - 1 and tr.positions[model.config.context] == 0
    with pytest.raises(RoutingError, match="one label per text"):
        trace_text(model, tok, ["a", "b"], tags=["x"])
    with pytest.raises(RoutingError, match="0 tokens"):
        trace_text(model, tok, [""])
