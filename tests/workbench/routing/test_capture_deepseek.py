"""`capture_router_logits` on tiny random DeepSeek-V3-style models (DeepSeek-V3 and the families whose gate copies
its router, as far as the installed transformers has them; built from configs, nothing downloaded), with a
non-zero random ``e_score_correction_bias`` set on every gate: the capture suggests `deepseek_v3` with the model's
parameters, keeps each layer's bias in the trace, and replaying the trace picks the experts the gates picked on
every token, with their weights to 1e-6 -- also when tied gate rows make ties at the top-k and group boundaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.routing import RoutingTrace, route
from workbench.routing.capture import capture_router_logits

torch.set_num_threads(1)

E, K, GROUPS, TOPK_GROUPS, SCALE = 16, 4, 4, 2, 2.5
FAMILIES = {  # model_type: config class in transformers
    "deepseek_v3": "DeepseekV3Config", "glm4_moe": "Glm4MoeConfig", "dots1": "Dots1Config",
    "glm4_moe_lite": "Glm4MoeLiteConfig", "solar_open": "SolarOpenConfig",
}  # (mimo_v2_flash has the same gate; its hybrid attention needs more than a tiny config to run, so it is left out)
_MLA = dict(q_lora_rank=None, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8)
SEQS = [[5, 17, 99, 3, 42, 8, 77, 1, 64, 33, 2], [1, 2, 3, 120, 7, 7, 7], list(range(10, 40))]
_MODELS: dict = {}


def _tiny(family: str, *, seed: int = 0, tied: bool = False, **over):
    """A 3-layer model (layer 0 dense where the family has first_k_dense_replace, the others MoE: 16 experts in
    4 groups, top-4 of the 2 best groups) with a random bias on every gate; ``tied``: gate rows and biases
    repeated (groups 1 = 0, 3 = 2; expert 2m + 1 = 2m) so that experts and groups tie exactly."""
    import transformers

    cls = getattr(transformers, FAMILIES[family], None)
    if cls is None:
        pytest.skip(f"this transformers ({transformers.__version__}) has no {FAMILIES[family]}")
    key = (family, seed, tied, repr(sorted(over.items())))
    if key in _MODELS:
        return _MODELS[key]
    kw = dict(vocab_size=128, hidden_size=32, intermediate_size=32, moe_intermediate_size=16, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=4, head_dim=8, max_position_embeddings=64,
              num_experts_per_tok=K, n_routed_experts=E, n_group=GROUPS, topk_group=TOPK_GROUPS,
              first_k_dense_replace=1, n_shared_experts=1, routed_scaling_factor=SCALE, norm_topk_prob=True,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family in ("deepseek_v3", "glm4_moe_lite"):
        kw.update(_MLA)
    kw.update(over)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cls(**kw)).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("mlp.gate") and hasattr(module, "e_score_correction_bias"):
                module.weight.normal_(0.0, 0.3, generator=gen)  # logits spread enough for the bias to matter
                bias = torch.randn(E, generator=gen) * 0.05
                if tied:
                    w = module.weight.view(GROUPS, E // GROUPS, -1)
                    w[:, 1::2] = w[:, 0::2].clone()
                    w[1], w[3] = w[0].clone(), w[2].clone()
                    b = bias.view(GROUPS, E // GROUPS)
                    b[:, 1::2] = b[:, 0::2].clone()
                    b[1], b[3] = b[0].clone(), b[2].clone()
                module.e_score_correction_bias.copy_(bias)
    _MODELS[key] = model
    return model


def _gates(model) -> dict:
    return {i: layer.mlp.gate for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "gate")}


def _capture_with_gate_outputs(model, **kw):
    """The trace, and per MoE layer the gate's own (weights, indices) of every forward pass (one per sequence)."""
    seen: dict = {}
    handles = [gate.register_forward_hook(
        lambda m, args, out, i=i: seen.setdefault(i, []).append((out[1].detach().clone(), out[2].detach().clone())))
        for i, gate in _gates(model).items()]
    try:
        tr = capture_router_logits(SEQS, model, **kw)
    finally:
        for h in handles:
            h.remove()
    return tr, seen


def _assert_replay_is_the_gate(tr, seen):
    starts = np.cumsum([0] + [len(s) for s in SEQS])
    for li, layer in enumerate(tr.meta["layers"]):
        replay = route(tr.layer(li), tr.meta["router"], **tr.router_params(li), backend="numba")
        torch_replay = route(tr.layer(li), tr.meta["router"], **tr.router_params(li), backend="torch")
        np.testing.assert_array_equal(torch_replay.assignments, replay.assignments)
        assert len(seen[layer]) == len(SEQS)
        for s, (weights, idx) in enumerate(seen[layer]):
            mine = replay.assignments[starts[s]:starts[s + 1]]
            w = replay.weights[starts[s]:starts[s + 1]]
            idx, weights = idx.numpy(), weights.float().numpy()
            a, b = np.argsort(mine, axis=1), np.argsort(idx, axis=1)  # the gate's order is torch.topk's unsorted
            np.testing.assert_array_equal(np.take_along_axis(mine, a, 1), np.take_along_axis(idx, b, 1))
            np.testing.assert_allclose(np.take_along_axis(w, a, 1), np.take_along_axis(weights, b, 1), atol=1e-6,
                                       rtol=0)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_capture_suggests_deepseek_v3_and_replay_is_the_models_own_gate(family):
    model = _tiny(family)
    tr, seen = _capture_with_gate_outputs(model)
    gates = _gates(model)
    assert tr.meta["model_type"] == family and tr.meta["layers"] == sorted(gates)  # [1, 2]; solar_open: [0, 1, 2]
    assert tr.meta["router"] == "deepseek_v3" and tr.meta["router_score"] == "sigmoid"
    assert tr.meta["router_params"] == {"k": K, "n_groups": GROUPS, "topk_groups": TOPK_GROUPS, "route_scale": SCALE,
                                        "normalize": True}
    assert tr.bias.shape == (len(gates), E) and tr.bias.dtype == np.float32
    for li, layer in enumerate(tr.meta["layers"]):
        np.testing.assert_array_equal(tr.bias[li], gates[layer].e_score_correction_bias.numpy())
    assert np.abs(tr.bias).min() > 0
    _assert_replay_is_the_gate(tr, seen)
    # the bias matters here: the old suggestion (softmax top-k) and the unbiased router both pick other experts
    li = 0
    with_bias = route(tr.layer(li), "deepseek_v3", **tr.router_params(li)).assignments
    no_bias = route(tr.layer(li), "deepseek_v3", **tr.meta["router_params"]).assignments
    softmax = route(tr.layer(li), "topk_softmax", k=K).assignments
    assert (np.sort(with_bias, 1) != np.sort(no_bias, 1)).any(axis=1).sum() > 0
    assert (np.sort(with_bias, 1) != np.sort(softmax, 1)).any(axis=1).mean() > 0.5


def test_capture_via_hooks_and_the_saved_trace_replay_the_same(tmp_path):
    model = _tiny("deepseek_v3")
    tr, seen = _capture_with_gate_outputs(model, via="hooks")
    assert tr.meta["capture_path"] == "hooks" and tr.meta["router"] == "deepseek_v3"
    _assert_replay_is_the_gate(tr, seen)
    back = RoutingTrace.load(tr.save(tmp_path / "ds.safetensors"))
    np.testing.assert_array_equal(back.bias, tr.bias)
    assert back.router_params(1)["bias"].tolist() == tr.bias[1].astype(np.float64).tolist()
    part = tr.select(np.arange(5))
    np.testing.assert_array_equal(part.bias, tr.bias)


def test_tied_gate_rows_tie_like_torch_topk():
    """Pairs of equal experts and pairs of equal groups, top-3 of the one best group: every token ties at the
    group boundary (group 0 = 1, 2 = 3) and at the top-k boundary (the third pick is one of two equal experts),
    and the replay still picks the gate's experts. With ties to the lower index no token would ever take group
    1 or 3, or an odd expert without its even twin; the gates do, on many tokens."""
    model = _tiny("deepseek_v3", tied=True, num_experts_per_tok=3, topk_group=1)
    tr, seen = _capture_with_gate_outputs(model)
    _assert_replay_is_the_gate(tr, seen)
    picks = np.concatenate([np.concatenate([idx.numpy() for _, idx in seen[layer]]) for layer in tr.meta["layers"]])
    odd_group = ((picks // (E // GROUPS)) % 2 == 1).all(axis=1)
    odd_alone = np.array([any(e % 2 and e - 1 not in row for e in row) for row in picks.tolist()])
    assert odd_group.mean() > 0.1 and odd_alone.mean() > 0.1


@pytest.mark.parametrize("family", ["deepseek_v3", "glm4_moe"])
def test_other_gate_settings(family):
    """No group limit, no renormalisation, another scale and k."""
    model = _tiny(family, seed=3, n_group=1, topk_group=1, norm_topk_prob=False, routed_scaling_factor=1.5,
                  num_experts_per_tok=3)
    tr, seen = _capture_with_gate_outputs(model)
    assert tr.meta["router_params"] == {"k": 3, "n_groups": 1, "topk_groups": 1, "route_scale": 1.5,
                                        "normalize": False}
    _assert_replay_is_the_gate(tr, seen)


def test_a_biased_gate_that_routes_otherwise_gets_no_suggestion():
    import transformers

    model = _tiny("deepseek_v3", seed=5)
    originals = {}
    for i, gate in _gates(model).items():  # a gate that scales its weights its own way
        originals[i] = gate.forward
        gate.forward = lambda h, f=gate.forward: (lambda o: (o[0], o[1] * 3.0, o[2]))(f(h))
    try:
        tr = capture_router_logits(SEQS[:1], model)
    finally:
        for gate in _gates(model).values():
            del gate.forward
    assert tr.meta["router"] is None and tr.meta["router_params"] == {} and tr.bias is None
    assert "e_score_correction_bias" in tr.meta["router_note"]
    assert transformers is not None
