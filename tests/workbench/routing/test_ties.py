"""Ties break as torch does: the numba top-k kernels, and every router that selects with a top-k, return what
``torch.topk`` returns on the CPU -- the same experts in the same order -- on thousands of tie-heavy rows
(integer-valued logits, bf16-rounded logits) for the n and k the routers use; and a replay of the bf16 router
logits captured from a tiny bf16 model equals the model's own choices token for token."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.routing import kernels as K
from workbench.routing import route
from workbench.routing.capture import capture_router_logits

torch.set_num_threads(1)

NS = (8, 16, 32, 60, 64, 128, 256)


def _tie_heavy(n_rows: int, n: int, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "int":  # a handful of values: most rows tie everywhere
        return rng.integers(-2, 3, size=(n_rows, n)).astype(np.float64)
    if kind == "bf16":  # router-like logits rounded to bf16 (8 mantissa bits): ties inside many rows
        x = torch.from_numpy(rng.normal(scale=0.5, size=(n_rows, n)).astype(np.float32))
        return x.to(torch.bfloat16).double().numpy()
    return rng.normal(size=(n_rows, n))


def _torch_topk(x: np.ndarray, k: int) -> np.ndarray:
    return torch.topk(torch.from_numpy(np.ascontiguousarray(x)), k).indices.numpy()


@pytest.mark.parametrize("n", NS)
def test_topk_kernel_equals_torch_topk(n):
    """k = 1..8 (and k = n), 300 rows each of three kinds: 9 x 900 rows per n, set and order equal."""
    for k in sorted({1, 2, 3, 4, 5, 6, 7, 8, n} & set(range(1, n + 1))):
        for kind in ("int", "bf16", "normal"):
            x = _tie_heavy(300, n, kind, seed=n * 100 + k)
            np.testing.assert_array_equal(K.topk_rows(x, k), _torch_topk(x, k), err_msg=f"n={n} k={k} {kind}")
            # the queue port itself, unsorted as the DeepSeek-V3 gates call it (the same set, torch's order)
            want = torch.topk(torch.from_numpy(x[:40]), k, sorted=False).indices.numpy()
            for row, w in zip(x[:40], want):
                qv, qi = row.copy(), np.arange(n, dtype=np.int64)
                K.torch_topk_queue(qv, qi, n, k, False)
                assert qi[:k].tolist() == w.tolist()


def _routers_for(n: int, k: int) -> list[tuple[str, dict]]:
    out = [("topk_softmax", {"k": k}), ("capacity_topk", {"k": k, "capacity_factor": 1.0}),
           ("capacity_aware", {"k": k, "capacity_factor": 1.0}), ("null_experts", {"k": k, "n_null": 2})]
    if k == 1:
        out.append(("switch_top1", {}))
    for g, tg in ((4, 2), (8, 4), (8, 1)):
        if n % g == 0 and k <= tg * (n // g):
            out.append(("deepseek_v3", {"k": k, "n_groups": g, "topk_groups": tg}))
    for g in (2, 4):
        if n % g == 0 and k % g == 0:
            out.append(("grouped_topk", {"k": k, "n_groups": g}))
    return out


def _torch_selection(x: np.ndarray, name: str, params: dict) -> np.ndarray:
    """What the routers' official torch code picks (before capacity), written with torch.topk on the CPU."""
    t = torch.from_numpy(x)
    k = params.get("k", 1)
    if name in ("topk_softmax", "capacity_topk", "capacity_aware", "switch_top1"):
        return torch.topk(t, k).indices.numpy()
    if name == "null_experts":
        full = torch.cat([t, torch.zeros(t.shape[0], params["n_null"], dtype=t.dtype)], dim=1)
        idx = torch.topk(full, k).indices
        return torch.where(idx < t.shape[1], idx, -1).numpy()
    n, e = t.shape
    g = params["n_groups"]
    if name == "deepseek_v3":  # transformers' DeepseekV3TopkRouter.forward (bias zero)
        s = t.sigmoid()
        group_scores = s.view(n, g, e // g).topk(min(2, e // g), dim=-1)[0].sum(dim=-1)  # groups of one: top-1
        group_idx = torch.topk(group_scores, k=params["topk_groups"], dim=-1, sorted=False)[1]
        mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        mask = mask.unsqueeze(-1).expand(n, g, e // g).reshape(n, e)
        return torch.topk(s.masked_fill(~mask.bool(), float("-inf")), k).indices.numpy()
    per = torch.topk(t.view(n, g, e // g), k // g, dim=-1).indices  # grouped_topk (MoGE)
    picks = torch.zeros(n, g, e // g, dtype=torch.bool).scatter_(2, per, True).view(n, e)
    return torch.topk(t.masked_fill(~picks, float("-inf")), k).indices.numpy()


@pytest.mark.parametrize("n", (8, 16, 64, 256))
def test_every_topk_router_selects_as_torch_topk(n):
    """Every router that selects with a top-k, numba and torch backends, 200 tie-heavy tokens per (k, kind,
    router): the requested experts equal the torch.topk formulation's, order included."""
    for k in (1, 2, 4, 8):
        if k > n:
            continue
        for kind in ("int", "bf16"):
            x = _tie_heavy(200, n, kind, seed=7 * n + k)
            if kind == "int":
                x = x / 8.0  # sigmoid of small integers stays distinct in float64
            for name, params in _routers_for(n, k):
                want = _torch_selection(x, name, params)
                for backend in ("numba", "torch"):
                    got = route(x, name, backend=backend, **params).requested
                    np.testing.assert_array_equal(got, want, err_msg=f"{name} {params} {kind} {backend}")


def test_bf16_capture_replay_equals_the_models_choices_token_for_token():
    """A tiny Qwen3-MoE in bf16 (64 experts, top-8): its router logits are bf16, ties are common, and the replay
    of the captured logits picks exactly the experts (and order) of the model's own gate on every token."""
    import transformers

    cfg = transformers.Qwen3MoeConfig(vocab_size=128, hidden_size=32, intermediate_size=32, moe_intermediate_size=16,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                      max_position_embeddings=64, num_experts=64, num_experts_per_tok=8,
                                      norm_topk_prob=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16).eval()
    gates = {i: layer.mlp.gate for i, layer in enumerate(model.model.layers)}
    seen: dict = {}
    handles = [g.register_forward_hook(lambda m, a, out, i=i: seen.setdefault(i, []).append(out[2].clone()))
               for i, g in gates.items()]
    rng = np.random.default_rng(0)
    seqs = [rng.integers(3, 128, size=48).tolist() for _ in range(8)]
    try:
        tr = capture_router_logits(seqs, model)
    finally:
        for h in handles:
            h.remove()
    assert tr.meta["router"] == "topk_softmax" and tr.meta["dtype"] == "bfloat16"
    ties_at_boundary = lowest_index_differs = 0
    for li, layer in enumerate(tr.meta["layers"]):
        logits = tr.layer(li)
        assert np.array_equal(logits, torch.from_numpy(logits).bfloat16().float().numpy())  # bf16 values
        used = torch.cat(seen[layer]).numpy()
        replay = route(logits, tr.meta["router"], **tr.router_params(li))
        np.testing.assert_array_equal(replay.assignments, used)
        srt = -np.sort(-logits, axis=1)
        ties_at_boundary += int((srt[:, 7] == srt[:, 8]).sum())
        lowest = np.array([sorted(range(64), key=lambda e, r=r: (-r[e], e))[:8] for r in logits])
        lowest_index_differs += int((np.sort(lowest, 1) != np.sort(used, 1)).any(axis=1).sum())
    assert ties_at_boundary > 0 and lowest_index_differs > 0  # the old tie rule would have missed these tokens
