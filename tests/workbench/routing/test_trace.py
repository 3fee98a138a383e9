"""`RoutingTrace`: validation, safetensors round trips (property-based), refusing to overwrite, unreadable files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import RoutingError
from workbench.routing import RoutingTrace, route, synthetic_trace


def _trace(n_layers=2, n_tokens=6, n_experts=4, tokens=True, seed=0) -> RoutingTrace:
    rng = np.random.default_rng(seed)
    return RoutingTrace(
        logits=rng.normal(size=(n_layers, n_tokens, n_experts)).astype(np.float32),
        token_ids=np.arange(n_tokens), positions=np.arange(n_tokens) % 3, sequence_ids=np.arange(n_tokens) // 3,
        tags=["code" if i < 3 else "français" for i in range(n_tokens)],
        tokens=[f"tok{i}" for i in range(n_tokens)] if tokens else None,
        meta={"model": "tiny-moe", "layers": [1, 3], "top_k": 2},
    )


def _assert_same(a: RoutingTrace, b: RoutingTrace):
    np.testing.assert_array_equal(a.logits, b.logits)
    for name in ("token_ids", "positions", "sequence_ids"):
        got = getattr(b, name)
        np.testing.assert_array_equal(getattr(a, name), got)
        assert got.dtype == np.int32
    assert b.logits.dtype == np.float32
    assert (a.tags, a.tokens, a.meta) == (b.tags, b.tokens, b.meta)


def test_round_trip(tmp_path):
    tr = _trace()
    path = tr.save(tmp_path / "t.safetensors")
    back = RoutingTrace.load(path)
    _assert_same(tr, back)
    assert (back.n_layers, back.n_tokens, back.n_experts, back.n_sequences) == (2, 6, 4, 2)
    assert "2 layers x 6 tokens x 4 experts" in repr(back) and "tiny-moe" in repr(back)
    no_tokens = _trace(tokens=False)
    _assert_same(no_tokens, RoutingTrace.load(no_tokens.save(tmp_path / "u.safetensors")))


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 3), st.integers(1, 20), st.integers(1, 9), st.lists(st.text(max_size=6), min_size=1, max_size=4),
       st.integers(0, 1000))
def test_round_trip_property(n_layers, n_tokens, n_experts, tag_pool, seed):
    rng = np.random.default_rng(seed)
    tr = RoutingTrace(logits=rng.normal(size=(n_layers, n_tokens, n_experts)) * 10,
                      token_ids=rng.integers(0, 2**31 - 1, n_tokens), positions=np.arange(n_tokens),
                      sequence_ids=np.zeros(n_tokens, int), tags=[tag_pool[i % len(tag_pool)] for i in range(n_tokens)],
                      tokens=[tag_pool[-1] + str(i) for i in range(n_tokens)], meta={"seed": seed, "note": tag_pool[0]})
    with tempfile.TemporaryDirectory() as d:
        _assert_same(tr, RoutingTrace.load(tr.save(Path(d) / "p.safetensors")))


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "t.safetensors"
    _trace(seed=0).save(path)
    with pytest.raises(RoutingError, match="exists"):
        _trace(seed=1).save(path)
    _assert_same(_trace(seed=0), RoutingTrace.load(path))  # untouched
    _trace(seed=1).save(path, overwrite=True)
    _assert_same(_trace(seed=1), RoutingTrace.load(path))
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temporary file left behind


def test_unreadable_files(tmp_path):
    with pytest.raises(RoutingError, match="no routing trace file"):
        RoutingTrace.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    with pytest.raises(RoutingError, match="could not read"):
        RoutingTrace.load(junk)
    from safetensors.numpy import save_file

    other = tmp_path / "weights.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(other))
    with pytest.raises(RoutingError, match="not a workbench routing trace"):
        RoutingTrace.load(other)


def test_layer_and_routing_from_a_trace():
    tr = synthetic_trace(n_layers=3, n_tokens=40, n_experts=8, n_sequences=4, seed=3)
    assert tr.layer(-1).shape == (40, 8) and tr.positions[:12].tolist() == list(range(10)) + [0, 1]
    assert set(tr.tags) == {"domain0", "domain1"} and tr.n_sequences == 4
    assert route(tr.layer(2), "topk_softmax", k=2).loads.sum() == 80
    with pytest.raises(RoutingError, match="out of range"):
        tr.layer(3)


def _kw(**over):
    kw = {"logits": np.zeros((1, 3, 2), np.float32), "token_ids": [1, 2, 3], "positions": [0, 1, 2],
          "sequence_ids": [0, 0, 0]}
    kw.update(over)
    return kw


@pytest.mark.parametrize("over, match", [
    ({"logits": np.zeros((3, 2))}, "3-D"),
    ({"logits": np.zeros((1, 0, 2))}, "empty axis"),
    ({"logits": np.full((1, 3, 2), np.nan)}, "NaN"),
    ({"logits": np.full((1, 3, 2), 1e39)}, "infinite"),
    ({"logits": np.array([[["a", "b"]] * 3])}, "numeric"),
    ({"token_ids": [1, 2]}, "token_ids must have one entry per token"),
    ({"positions": [0.5, 1, 2]}, "integers"),
    ({"sequence_ids": [0, 0, 2**40]}, "int32"),
    ({"tags": ["a"]}, "tags"),
    ({"tokens": ["a", "b"]}, "tokens"),
    ({"meta": [1, 2]}, "meta must be a dict"),
])
def test_validation(over, match):
    with pytest.raises(RoutingError, match=match):
        RoutingTrace(**_kw(**over))


def test_meta_must_be_json(tmp_path):
    tr = RoutingTrace(**_kw(meta={"bad": object()}))
    with pytest.raises(RoutingError, match="JSON"):
        tr.save(tmp_path / "m.safetensors")
    assert not list(tmp_path.iterdir())


def test_select_keeps_the_chosen_tokens_in_order():
    tr = _trace(n_tokens=6)
    sub = tr.select(np.array([4, 1]))
    assert sub.n_tokens == 2 and sub.n_layers == tr.n_layers
    np.testing.assert_array_equal(sub.logits, tr.logits[:, [4, 1]])
    assert sub.tokens == [tr.tokens[4], tr.tokens[1]] and sub.tags == [tr.tags[4], tr.tags[1]]
    np.testing.assert_array_equal(sub.positions, tr.positions[[4, 1]])
    mask = np.zeros(6, bool)
    mask[2:5] = True
    np.testing.assert_array_equal(tr.select(mask).token_ids, tr.token_ids[2:5])
    for bad in (np.zeros(6, bool), np.zeros(3, bool), np.array([7]), np.array([0.5])):
        with pytest.raises(RoutingError):
            tr.select(bad)


def test_gate_bias_round_trip_and_older_files(tmp_path):
    """``bias`` [L, E] (DeepSeek-V3's e_score_correction_bias) is saved and loaded; a file without it (every file
    written before it existed) loads with ``bias=None``; a wrong shape is refused."""
    tr = synthetic_trace(n_layers=2, n_tokens=8, n_experts=4, n_sequences=2)
    assert tr.bias is None and tr.router_params(0) == {}
    old = RoutingTrace.load(tr.save(tmp_path / "old.safetensors"))
    assert old.bias is None
    bias = np.arange(8, dtype=np.float64).reshape(2, 4) / 10
    tr2 = RoutingTrace(logits=tr.logits, token_ids=tr.token_ids, positions=tr.positions, sequence_ids=tr.sequence_ids,
                       meta={"router": "deepseek_v3", "router_params": {"k": 2}}, bias=bias)
    back = RoutingTrace.load(tr2.save(tmp_path / "new.safetensors"))
    np.testing.assert_array_equal(back.bias, bias.astype(np.float32))
    assert back.router_params(1)["k"] == 2
    assert back.router_params(1)["bias"].tolist() == bias[1].astype(np.float32).tolist()
    np.testing.assert_array_equal(back.select([1, 0]).bias, back.bias)
    with pytest.raises(RoutingError, match="bias must have one value per layer and expert"):
        RoutingTrace(logits=tr.logits, token_ids=tr.token_ids, positions=tr.positions, sequence_ids=tr.sequence_ids,
                     bias=np.zeros(4))
    # tiny-MoE traces written before the field kept their bias in meta["bias"]: it moves into ``bias``
    legacy = RoutingTrace(logits=tr.logits, token_ids=tr.token_ids, positions=tr.positions,
                          sequence_ids=tr.sequence_ids, meta={"router": "deepseek_v3", "bias": bias.tolist()})
    np.testing.assert_array_equal(legacy.bias, bias.astype(np.float32))
    assert "bias" not in legacy.meta
