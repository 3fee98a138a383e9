"""The torch backend (`workbench.kvcache.torch_replay`) gives exactly the numba path's kept masks, layer budgets
and sinks for every policy: on the real SmolLM2 trace, on tie-heavy synthetic traces (budgets from 1 to the whole
trace), and on CUDA when a GPU is present; and it refuses the same parameters with `KVCacheError`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.workbench.kvcache.test_policies import ALL_POLICIES, SYNTHETIC, _policies_for, _rejected
from workbench.errors import KVCacheError
from workbench.kvcache import POLICY_NAMES, make_policy, replay
from workbench.kvcache import scores as SC
from workbench.kvcache.policy_base import resolve_budget
from workbench.kvcache.torch_replay import replay_kept, valid_top_mask

REAL_LAYERS = [0, 14, 29]
REAL_POLICIES = [make_policy(n) for n in POLICY_NAMES] + [
    make_policy("h2o", sinks=4, recent=8), make_policy("streaming_llm", phase="prefill"),
    make_policy("tova", phase="prefill"), make_policy("tova", heads="per_kv_head"),
    make_policy("kvcrush", base="h2o", anchor="random"),
    make_policy("random", seed=5), make_policy("quest", page=8)]


def _assert_same(trace, policy, budget, layers=None, device=None):
    """Torch masks, layer budgets and sinks == the numba path's."""
    ref = replay(trace, policy, budget, layers=layers, metrics=False, backend="numba")
    if device is None:
        got = replay(trace, policy, budget, layers=layers, metrics=False, backend="torch")
        kept, budgets, sinks = got.kept, got.layer_budgets, got.sinks
    else:
        lis = [trace.layer_index(x) for x in layers] if layers is not None else list(range(trace.n_layers))
        kept, budgets, sinks = replay_kept(trace, policy, ref.budget, lis, seed=int(policy.params.get("seed", 0)),
                                           device=device)
    where = np.argwhere(kept != ref.kept)
    assert where.size == 0, (
        f"{policy.label()} at budget {budget}: {len(where)} cells differ from numba; first "
        f"(layer index, head, step, position): {where[:5].tolist()}")
    assert kept.dtype == bool and kept.shape == ref.kept.shape
    assert budgets.tolist() == ref.layer_budgets.tolist()
    assert sinks == ref.sinks


@pytest.mark.model
@pytest.mark.parametrize("budget", [24, 0.25])
@pytest.mark.parametrize("policy", REAL_POLICIES, ids=lambda p: p.label())
def test_torch_matches_numba_on_the_real_trace(kv_trace, policy, budget):
    _assert_same(kv_trace, policy, budget, layers=REAL_LAYERS)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=lambda p: p.label())
def test_torch_matches_numba_on_tie_heavy_synthetic_traces(policy):
    """Random and tie-heavy traces, budgets from 1 to the whole trace; refusals must agree too."""
    for trace in SYNTHETIC:
        for budget in (1, 2, 3, 5, 8, 0.3, trace.n_prefill, trace.n_tokens):
            tokens = resolve_budget(budget, trace.n_prefill, trace.n_tokens)
            for pol in _policies_for(policy, tokens):
                if _rejected(trace, pol, tokens):
                    with pytest.raises(KVCacheError):
                        replay(trace, pol, budget, backend="torch")
                    continue
                _assert_same(trace, pol, budget)


REFUSED = [  # (policy, budget, message): parameters that leave no room in the budget, checked by `Policy.plan`
    (make_policy("streaming_llm"), 4, r"^streaming_llm keeps 4 sinks; the budget \(4\) must be larger$"),
    (make_policy("streaming_llm", sinks=6), 3, r"^streaming_llm keeps 6 sinks; the budget \(3\) must be larger$"),
    (make_policy("h2o", sinks=3, recent=4), 6,
     r"^h2o protects 3 sinks \+ 4 recent tokens, more than the budget 6$"),
    (make_policy("h2o", sinks=2), 2, r"^h2o protects 2 sinks \+ 1 recent tokens, more than the budget 2$"),
    (make_policy("quest"), 8, r"^quest keeps whole pages of 16 tokens; the budget \(8\) must be at least one page$"),
    (make_policy("snapkv", window=4), 4, r"^snapkv window 4 leaves no room in a budget of 4 tokens"),
    (make_policy("adakv", window=5), 3, r"^adakv window 5 leaves no room in a budget of 3 tokens"),
]


@pytest.mark.parametrize("policy, budget, message", REFUSED, ids=[f"{p.label()}-{b}" for p, b, _ in REFUSED])
def test_both_backends_refuse_with_the_same_error(policy, budget, message):
    """The checks live once, in the policy: numba, torch through `replay` and torch's own `replay_kept` raise the
    same `KVCacheError`, word for word, for every layer selection."""
    trace = SYNTHETIC[0]
    messages = []
    for call in (lambda: replay(trace, policy, budget, backend="numba"),
                 lambda: replay(trace, policy, budget, backend="torch"),
                 lambda: replay(trace, policy, budget, layers=[3], backend="torch"),
                 lambda: replay_kept(trace, policy, budget, range(trace.n_layers), device="cpu")):
        with pytest.raises(KVCacheError, match=message) as info:
            call()
        messages.append(str(info.value))
    assert len(set(messages)) == 1


def test_the_torch_backend_does_not_import_the_numba_one():
    from tests.workbench.test_layering import import_graph

    graph = import_graph()
    assert "workbench.kvcache.replay" not in graph["workbench.kvcache.torch_replay"]
    assert "workbench.kvcache.torch_replay" not in graph["workbench.kvcache.policies"]
    assert "workbench.kvcache.replay" not in graph["workbench.kvcache.policies"]


def test_auto_backend_and_bad_backend():
    trace = SYNTHETIC[1]
    auto = replay(trace, "h2o", 5, metrics=False)  # numba without a GPU, torch with one: the same masks
    np.testing.assert_array_equal(auto.kept, replay(trace, "h2o", 5, metrics=False, backend="torch").kept)
    with pytest.raises(KVCacheError, match="backend"):
        replay(trace, "h2o", 5, backend="jax")


def test_torch_replay_metrics_equal_numba():
    trace = SYNTHETIC[0]
    a = replay(trace, "tova", 6, backend="numba")
    b = replay(trace, "tova", 6, backend="torch")
    np.testing.assert_array_equal(a.mass, b.mass)
    np.testing.assert_array_equal(a.iou, b.iou)


QUERY_AWARE = [make_policy("tokenselect"), make_policy("fasa", chunks=2, calibration=3),
               make_policy("hisa", block=4, blocks=1)]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("policy", QUERY_AWARE, ids=lambda p: p.label())
def test_query_aware_scores_are_computed_in_torch_on_the_device(monkeypatch, policy, device):
    """TokenSelect, FASA and HISA score in torch on the requested device: no numpy score helper runs, and every
    q . k product is on ``device``."""
    trace = SYNTHETIC[3]
    ref = replay(trace, policy, 5, metrics=False, backend="numba")

    def refuse(*args, **kwargs):
        raise AssertionError("the torch path called a numpy score helper")

    for name in ("raw_logits", "partial_queries_keys", "hisa_block_means"):
        monkeypatch.setattr(SC, name, refuse)
    devices = []
    matmul = torch.matmul

    def spy(a, b, *args, **kwargs):
        devices.append((a.device.type, b.device.type))
        return matmul(a, b, *args, **kwargs)

    monkeypatch.setattr(torch, "matmul", spy)
    kept, _, _ = replay_kept(trace, policy, ref.budget, range(trace.n_layers), device=device)
    np.testing.assert_array_equal(kept, ref.kept)
    assert devices and set(devices) == {(device, device)}


@pytest.mark.parametrize("k", [0, 1, 3, 4, 6, 9])
def test_valid_top_mask_takes_ties_in_position_order(k):
    x = torch.tensor([[1.0, 3.0, 3.0, -np.inf, 3.0, 2.0, 2.0, 0.0]])
    valid = torch.tensor([[True, True, True, True, False, True, True, True]])
    got = valid_top_mask(x, valid, k)[0].tolist()
    order = sorted((i for i in range(8) if valid[0, i]), key=lambda i: (-x[0, i].item(), i))
    assert got == [i in order[:k] for i in range(8)]
    per_row = valid_top_mask(x.expand(2, 8), valid.expand(2, 8), torch.tensor([k, 0]))
    assert per_row[0].tolist() == got and not per_row[1].any()


@pytest.mark.gpu
@pytest.mark.model
@pytest.mark.parametrize("policy", REAL_POLICIES, ids=lambda p: p.label())
def test_torch_on_cuda_matches_numba(kv_trace, policy):
    for budget in (24, 0.25):
        _assert_same(kv_trace, policy, budget, layers=REAL_LAYERS, device="cuda")
    for trace in SYNTHETIC[:2]:
        for budget in (3, 8, trace.n_prefill):
            if not _rejected(trace, policy, budget):
                _assert_same(trace, policy, budget, device="cuda")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_layers_are_copied_to_the_device_once(device):
    """On the CPU the torch path reads `KVTrace.f32`'s arrays in place; on a GPU each layer is copied once and
    reused by later replays."""
    from workbench.kvcache.torch_replay import _layer_f32

    trace = SYNTHETIC[0]
    a = _layer_f32(trace, "keys", 0, device)
    assert a.device.type == device
    if device == "cpu":
        assert a.data_ptr() == trace.f32("keys", 0).ctypes.data
    else:
        assert a is _layer_f32(trace, "keys", 0, device)
    np.testing.assert_array_equal(a.cpu().numpy(), trace.keys[0].astype(np.float32))
