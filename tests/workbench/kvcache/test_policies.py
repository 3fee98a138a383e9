"""Every KV policy against the slow pure-Python reference (tests/workbench/kvcache/reference.py), the
invariants the policies promise, Quest's page bound, and the errors bad budgets and parameters raise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tests.workbench.kvcache import reference as R
from workbench.errors import KVCacheError
from workbench.kvcache import POLICY_NAMES, make_policy, replay
from workbench.kvcache.policy_base import pyramid_budgets, resolve_budget
from workbench.kvcache.scores import quest_page_bounds

REAL_LAYERS = [0, 13, 29]
P = make_policy

# variants beyond the defaults (every name of POLICY_NAMES is also run with its defaults). HISA blocks are
# powers of two: blocks of 3 average the tie-heavy integer keys into thirds, whose float rounding (not the
# documented "lowest block first") then decides exact ties between blocks.
VARIANTS = [
    P("window", phase="prefill"), P("recency", phase="prefill"),
    P("random", seed=7), P("random", phase="prefill", seed=3),
    P("streaming_llm", sinks=2), P("streaming_llm", phase="prefill", sinks=3),
    P("h2o", sinks=2, recent=3), P("h2o", phase="prefill", recent=2), P("tova", phase="prefill"),
    P("tova", heads="per_kv_head"), P("tova", heads="per_kv_head", phase="prefill"),
    P("snapkv", pooling="avg", kernel=3), P("snapkv", pooling="none"), P("snapkv", kernel=1),
    P("pyramidkv", beta=2), P("adakv", floor=0.0), P("adakv", floor=1.0), P("adakv", pooling="avg"),
    P("kvcrush", base="h2o", anchor="random"), P("kvcrush", base="tova", anchor="alternate", fraction=0.6),
    P("kvcrush", anchor="random", fraction=0.1),
    P("quest", page=2), P("quest", page=4), P("hisa", block=4, blocks=1), P("hisa", block=2),
    P("fasa", chunks=2, calibration=3), P("fasa", chunks=100, calibration=1),
]
ALL_POLICIES = [P(name) for name in POLICY_NAMES] + VARIANTS
SNAP_FAMILY = ("snapkv", "pyramidkv", "adakv", "kvcrush")


def _id(policy) -> str:
    return policy.label()


def _replay(trace, policy, budget, **kw):
    """`replay` on the numba kernels (the path the reference checks; "auto" would pick torch on a GPU)."""
    kw.setdefault("backend", "numba")
    return replay(trace, policy, budget, **kw)


def _synthetic_traces():
    out = []
    for seed in range(3):
        for ties in (False, True):
            gqa = "max" if seed % 2 else "mean"
            out.append(R.synthetic_trace(n=24 + 6 * seed, steps=5 + seed, obs=6 + seed, seed=seed, ties=ties,
                                         gqa=gqa))
    return out


SYNTHETIC = _synthetic_traces()


def _rejected(trace, policy, budget: int) -> bool:
    """Whether replay must refuse ``policy`` at ``budget`` tokens (parameters that leave no room in the
    budget)."""
    prm = policy.params
    if policy.name == "streaming_llm":
        return budget <= prm["sinks"]
    if policy.name == "h2o":
        recent = prm["recent"] if prm["recent"] is not None else max(1, budget // 2)
        return prm["sinks"] + recent > budget
    if policy.name == "quest":
        return budget < prm["page"]
    if policy.name in SNAP_FAMILY and prm["window"] is not None:
        return prm["window"] >= budget or prm["window"] > min(trace.n_prefill, trace.obs_window)
    return False


def _policies_for(policy, budget: int):
    """The policy plus, for the SnapKV family, the same with an explicit window of 2 and of budget - 1."""
    out = [policy]
    if policy.name in SNAP_FAMILY and policy.params["window"] is None:
        out += [make_policy(policy, window=w) for w in sorted({2, budget - 1}) if w >= 1]
    return out


def _assert_same_as_reference(trace, policy, budget, layers=None, metrics=True):
    r = _replay(trace, policy, budget, layers=layers, metrics=metrics)
    kept, budgets = R.kept_mask(trace, policy, budget, layers=layers)
    where = np.argwhere(r.kept != kept)
    assert where.size == 0, (
        f"{policy.label()} at budget {budget}: {len(where)} cells differ from the reference; first "
        f"(layer index, head, step, position): {where[:5].tolist()}")
    assert r.layer_budgets.tolist() == budgets
    if metrics:
        mass, iou, n_kept, err = R.metrics(trace, r.kept, layers=layers)
        np.testing.assert_array_equal(r.n_kept, n_kept)
        np.testing.assert_allclose(r.mass, mass, atol=1e-5)
        np.testing.assert_allclose(r.iou, iou, atol=1e-5)
        np.testing.assert_allclose(r.output_error, err, atol=1e-5, rtol=1e-4)
    return r


# ------------------------------------------------------------------------------------- reference equivalence


@pytest.mark.model
@pytest.mark.parametrize("budget", [16, 48, 0.25])
@pytest.mark.parametrize("policy", [P(n) for n in POLICY_NAMES] + [
    P("h2o", sinks=4, recent=8), P("snapkv", window=8, pooling="avg"), P("quest", page=8),
    P("hisa", block=16), P("kvcrush", base="h2o", anchor="random"), P("window", phase="prefill")], ids=_id)
def test_reference_matches_replay_on_the_real_trace(kv_trace, policy, budget):
    _assert_same_as_reference(kv_trace, policy, budget, layers=REAL_LAYERS)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=_id)
def test_reference_matches_replay_on_synthetic_traces(policy):
    """Random and tie-heavy traces, both GQA aggregations, budgets from 1 to the whole trace (and window ==
    budget - 1 for the SnapKV family)."""
    checked = 0
    for trace in SYNTHETIC:
        for budget in (1, 2, 3, 5, 8, 0.3, trace.n_prefill, trace.n_tokens):
            tokens = resolve_budget(budget, trace.n_prefill, trace.n_tokens)
            for pol in _policies_for(policy, tokens):
                if _rejected(trace, pol, tokens):
                    with pytest.raises(KVCacheError):
                        _replay(trace, pol, budget)
                    continue
                _assert_same_as_reference(trace, pol, budget, metrics=budget in (3, 0.3))
                checked += 1
    assert checked >= 10


def test_fasa_calibrates_on_a_key_scatter_computed_once_per_layer(monkeypatch):
    """The keys' scatter matrix is a statistic of the trace: cached on it, shared by every FASA replay (any budget,
    either backend), and equal to its definition."""
    from workbench.kvcache import scores as SC

    trace = R.synthetic_trace(seed=5)
    calls = []
    compute = SC.key_scatter
    monkeypatch.setattr(SC, "key_scatter", lambda tr, li: calls.append(li) or compute(tr, li))
    first = replay(trace, "fasa", 3, metrics=False)
    for budget, backend in ((3, "numba"), (5, "numba"), (3, "torch")):
        kept = replay(trace, "fasa", budget, metrics=False, backend=backend).kept
        if budget == 3:
            np.testing.assert_array_equal(kept, first.kept)
    assert sorted(calls) == list(range(trace.n_layers))
    keys = trace.keys[0, :, : trace.n_prefill - 1].astype(np.float64)
    centred = keys - keys.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(trace.cached(("key_scatter", 0), None), centred.transpose(0, 2, 1) @ centred)


@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("policy", [P("tokenselect"), P("fasa", chunks=2), P("hisa", block=4), P("hisa", block=8,
                                                                                                   blocks=1)], ids=_id)
def test_query_aware_policies_with_other_group_sizes(policy, group):
    """The tiled kernels take query heads three at a time: a group of one (MHA) and of four (two passes, the
    second padded) against the reference too, for a length that is not a multiple of the 32-position tile."""
    for gqa in ("mean", "max"):
        trace = R.synthetic_trace(n=45, steps=6, group=group, dim=8, seed=group, gqa=gqa)
        for budget in (3, 9, 0.5):
            _assert_same_as_reference(trace, policy, budget, metrics=False)


@pytest.mark.parametrize("seed", [None, 11])
def test_random_policy_mirrors_the_per_layer_generator(seed):
    trace = SYNTHETIC[0]
    r = _replay(trace, "random", 5, seed=seed)
    kept, _ = R.kept_mask(trace, "random", 5, seed=seed)
    np.testing.assert_array_equal(r.kept, kept)
    if seed is not None:
        assert not np.array_equal(r.kept, _replay(trace, "random", 5).kept)


# ------------------------------------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("name", [n for n in POLICY_NAMES if n not in SNAP_FAMILY + ("full",)])
def test_budget_one_keeps_only_the_current_position(name):
    policy = P(name, **({"sinks": 0} if name == "streaming_llm" else {"page": 1} if name == "quest" else {}))
    for trace in SYNTHETIC[:2]:
        r = _assert_same_as_reference(trace, policy, 1)
        for s in range(trace.n_steps):
            assert np.array_equal(np.nonzero(r.kept[:, :, s].any(axis=(0, 1)))[0], [trace.n_prefill + s])
        assert (r.n_kept == 1).all()


@pytest.mark.parametrize("name", ["snapkv", "adakv", "kvcrush"])
def test_budget_one_prefill_policies_keep_only_the_last_context_token(name):
    """The default window of a budget of 1 is 1 token: the compressed context is that token (KVCrush used to
    keep the whole context here: its representatives overflowed the empty share)."""
    for trace in SYNTHETIC[:2]:
        r = _assert_same_as_reference(trace, name, 1)
        n = trace.n_prefill
        assert (r.kept[..., : n - 1] == 0).all() and r.kept[..., n - 1].all()
        assert (r.n_kept == 2 + np.arange(trace.n_steps)).all()


@pytest.mark.parametrize("policy", [P(n) for n in POLICY_NAMES if n != "pyramidkv"], ids=_id)
def test_a_budget_of_the_whole_trace_keeps_everything(policy):
    for trace in SYNTHETIC[:2]:
        r = _replay(trace, policy, trace.n_tokens)
        causal = R.causal_mask(trace.n_prefill, trace.n_steps, trace.n_tokens)
        assert (r.kept == causal).all()
        assert np.allclose(r.mass, 1) and np.allclose(r.iou, 1) and np.allclose(r.output_error, 0, atol=1e-6)


@pytest.mark.parametrize("name", ["snapkv", "adakv", "kvcrush"])
def test_a_ratio_of_one_keeps_the_whole_context(name):
    trace = SYNTHETIC[1]
    r = _replay(trace, name, 1.0)
    assert r.budget == trace.n_prefill
    assert (r.kept == R.causal_mask(trace.n_prefill, trace.n_steps, trace.n_tokens)).all()


@pytest.mark.parametrize("name", SNAP_FAMILY)
def test_window_of_budget_minus_one_leaves_one_scored_slot(name):
    trace = SYNTHETIC[2]
    budget = 6
    r = _assert_same_as_reference(trace, P(name, window=budget - 1), budget)
    n = trace.n_prefill
    context = r.kept[:, :, 0, :n].sum(-1)
    assert (r.kept[:, :, :, n - budget + 1: n]).all()  # the window
    if name == "pyramidkv":
        assert (context <= r.layer_budgets[:, None]).all()
    elif name == "adakv":
        assert (context.sum(-1) == trace.n_kv_heads * budget).all()
    else:
        assert (context == budget).all()


def _uniform_trace():
    """Every attention row (decode and observation window) uniform over its causal positions: every score
    ties."""
    trace = R.synthetic_trace(n=20, steps=6, obs=5, seed=4)
    for name, first in (("attn", trace.n_prefill), ("obs_attn", trace.n_prefill - trace.obs_window),
                        ("attn_heads", trace.n_prefill - 1)):
        a = getattr(trace, name).astype(np.float64)
        rows = a.shape[2]
        for r in range(rows):
            a[:, :, r, : first + r + 1] = 1.0 / (first + r + 1)
        setattr(trace, name, a.astype(np.float16))
    return trace


def test_ties_go_to_the_oldest_position():
    """Selection keeps the oldest of tied positions; eviction evicts the oldest of them."""
    trace = _uniform_trace()
    n, budget = trace.n_prefill, 7
    oracle = _assert_same_as_reference(trace, "oracle", budget)
    for s in range(trace.n_steps):
        assert np.nonzero(oracle.kept[0, 0, s])[0].tolist() == [*range(budget - 1), n + s]
    window = _replay(trace, "window", budget).kept
    np.testing.assert_array_equal(_assert_same_as_reference(trace, "tova", budget).kept, window)
    snap = _assert_same_as_reference(trace, P("snapkv", window=2, pooling="max"), budget)  # avg pooling: edges lower
    assert np.nonzero(snap.kept[0, 0, 0, :n])[0].tolist() == list(range(n - budget, n))
    assert (oracle.iou == 1).all()


# ------------------------------------------------------------------------------------------------ invariants


def _check_invariants(trace, r, policy):
    n, s_steps, t = trace.n_prefill, trace.n_steps, trace.n_tokens
    kept, budget = r.kept, r.budget
    causal = R.causal_mask(n, s_steps, t)
    p = n + np.arange(s_steps)
    assert not (kept & ~causal).any(), "a position beyond the current query is kept"
    assert kept[:, :, np.arange(s_steps), p].all(), "the current position is not kept"
    assert ((r.mass >= 0) & (r.mass <= 1 + 1e-6)).all() and ((r.iou >= 0) & (r.iou <= 1)).all()
    assert (r.output_error >= 0).all() and np.isfinite(r.output_error).all()
    np.testing.assert_array_equal(r.n_kept, kept.sum(-1))
    name = policy.name
    if policy.kind == "full":
        assert (kept == causal).all() and np.allclose(r.mass, 1) and (r.iou == 1).all()
        return
    if policy.kind == "selection":
        assert (r.n_kept <= budget).all()
        if name != "quest":
            assert (r.n_kept == np.minimum(p + 1, budget)).all()
        if name == "oracle":
            assert (r.iou == 1).all()
        return
    # eviction: an evicted position never comes back
    gone = causal & ~kept
    assert not (np.logical_or.accumulate(gone, axis=2) & kept).any(), "an evicted position came back"
    if policy.phase == "decode":
        assert (r.n_kept == np.minimum(p + 1, budget)).all()
    else:
        context = kept[..., :n].sum(-1)
        assert (kept[..., n:] == causal[:, n:]).all(), "a decode token was evicted in the prefill phase"
        assert (context == context[:, :, :1]).all(), "the compressed context changed during decoding"
        if name == "adakv":
            assert (context.sum(axis=1) <= trace.n_kv_heads * budget).all()
        else:
            assert (context <= r.layer_budgets[:, None, None]).all()
            assert (context == np.minimum(n, r.layer_budgets)[:, None, None]).all()
    if name == "streaming_llm":  # exactly the sinks + the most recent budget - sinks positions
        sinks = policy.params["sinks"]
        for s in range(s_steps):
            if policy.phase == "decode":
                expect = [*range(sinks), *range(p[s] - (budget - sinks) + 1, p[s] + 1)] if p[s] + 1 > budget \
                    else range(p[s] + 1)
            else:
                context = [*range(sinks), *range(n - (budget - sinks), n)] if n > budget else range(n)
                expect = [*context, *range(n, p[s] + 1)]
            row = np.zeros(t, bool)
            row[list(expect)] = True
            assert (kept[:, :, s] == row).all()


@pytest.mark.model
@pytest.mark.parametrize("budget", [16, 0.25])
@pytest.mark.parametrize("policy", [P(n) for n in POLICY_NAMES] + [P("streaming_llm", phase="prefill")],
                         ids=_id)
def test_invariants_on_the_real_trace(kv_trace, policy, budget):
    r = _replay(kv_trace, policy, budget, layers=REAL_LAYERS)
    _check_invariants(kv_trace, r, policy)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=_id)
def test_invariants_on_synthetic_traces(policy):
    for trace in SYNTHETIC:
        for budget in (1, 4, 9, 0.5):
            tokens = resolve_budget(budget, trace.n_prefill, trace.n_tokens)
            if _rejected(trace, policy, tokens):
                continue
            _check_invariants(trace, _replay(trace, policy, budget), policy)


def test_window_and_recency_agree_and_full_keeps_everything():
    for trace in SYNTHETIC:
        for budget in (1, 3, 10, trace.n_tokens):
            for phase in ("decode", "prefill"):
                a = _replay(trace, P("window", phase=phase), budget)
                b = _replay(trace, P("recency", phase=phase), budget)
                np.testing.assert_array_equal(a.kept, b.kept)
        full = _replay(trace, "full", 1)
        assert (full.kept == R.causal_mask(trace.n_prefill, trace.n_steps, trace.n_tokens)).all()
        assert full.budget == trace.n_tokens and (full.output_error < 1e-6).all()


def test_pyramid_budgets_follow_kvcache_factorys_integer_rule():
    for budget, window, beta, n in ((64, 8, 20, 1000), (20, 4, 2, 500), (7, 6, 5, 300), (300, 32, 1, 2000),
                                    (96, 32, 20, 150), (96, 32, 20, 100), (128, 64, 20, 200)):
        got = pyramid_budgets(budget, window, 30, beta, range(30), n)
        assert got == [R.pyramid_budget(budget, window, 30, beta, layer, n) for layer in range(30)]
        assert all(a >= b for a, b in zip(got, got[1:])) and min(got) >= window
        if n >= 2 * (budget - window):   # the pyramid: the mean is the budget up to the integer steps
            assert budget <= np.mean(got) <= budget + 29 / 2
        else:                             # a short context: plain SnapKV in every layer
            assert got == [budget] * 30
    # a window larger than budget - window makes the official step negative: budgets stop at the context
    assert pyramid_budgets(100, 64, 30, 20, [0, 29], 80) == [80, 80]


# ---------------------------------------------------------------------------------------- Quest's page bound


def _assert_bound_holds(q, keys):
    """The bound the replay uses (`scores.quest_page_bounds`) for query ``q`` [D] and one page of ``keys`` [P, D]:
    the page is a whole P-position trace, ``q`` its last position's (decode) query."""
    q = np.asarray(q, np.float32)
    keys = np.asarray(keys, np.float32)
    queries = np.zeros((1, 1, len(keys), len(q)), np.float32)
    queries[0, 0, -1] = q
    bound = quest_page_bounds(queries, keys[None], len(keys) - 1, len(keys))[0, 0, 0]
    dots = keys.astype(np.float64) @ q.astype(np.float64)
    slack = 1e-5 * (np.abs(keys).astype(np.float64) @ np.abs(q).astype(np.float64) + 1)
    assert (bound >= dots - slack).all()
    assert bound == pytest.approx(R.page_bound(q, keys.min(axis=0), keys.max(axis=0)), rel=1e-5, abs=1e-5)


_finite = st.floats(-8, 8, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 16).flatmap(lambda d: st.tuples(
    arrays(np.float32, d, elements=_finite), arrays(np.float32, st.tuples(st.integers(1, 12), st.just(d)),
                                                    elements=_finite))))
def test_page_bound_is_an_upper_bound_of_every_key(q_keys):
    _assert_bound_holds(*q_keys)


@pytest.mark.model
def test_page_bound_holds_on_the_real_queries_and_keys(kv_trace):
    tr, page = kv_trace, 16
    for layer in REAL_LAYERS:
        li = tr.layer_index(layer)
        for qh in range(tr.n_query_heads):
            keys = tr.f32("keys", li)[qh // tr.group_size]
            for s in (0, tr.n_steps - 1):
                p = tr.n_prefill + s
                q = tr.f32("queries", li)[qh, p]
                for j in range(p // page):
                    _assert_bound_holds(q, keys[j * page:(j + 1) * page])


# ---------------------------------------------------------------------------------------------------- errors

ERRORS = [
    ("budget 0", lambda tr: _replay(tr, "window", 0), "at least 1 token"),
    ("negative budget", lambda tr: _replay(tr, "h2o", -3), "at least 1 token"),
    ("budget beyond the trace", lambda tr: _replay(tr, "window", tr.n_tokens + 1),
     "larger than the whole context"),
    ("ratio rounding to 0", lambda tr: _replay(tr, "snapkv", 0.0001), "rounds to 0 tokens"),
    ("ratio above 1", lambda tr: _replay(tr, "tova", 1.5), r"ratio must be in \(0, 1\]"),
    ("negative ratio", lambda tr: _replay(tr, "tova", -0.5), r"ratio must be in \(0, 1\]"),
    ("bool budget", lambda tr: _replay(tr, "window", True), "must be a number of tokens"),
    ("string budget", lambda tr: _replay(tr, "window", "16"), "must be a number of tokens"),
    ("unknown policy", lambda tr: _replay(tr, "lru", 8),
     "unknown KV policy 'lru'; choose one of full, window"),
    ("unknown parameter", lambda tr: make_policy("h2o", recnt=4), r"no parameter\(s\) \['recnt'\]; it takes"),
    ("snapkv window beyond the context", lambda tr: _replay(tr, P("snapkv", window=tr.n_prefill + 1), 20),
     "larger than the context"),
    ("snapkv window beyond the observation window",
     lambda tr: _replay(tr, P("snapkv", window=tr.obs_window + 1), 20),
     "observation window"),
    ("snapkv window not below the budget", lambda tr: _replay(tr, P("snapkv", window=4), 4),
     "leaves no room"),
    ("adakv window not below the budget", lambda tr: _replay(tr, P("adakv", window=5), 3), "leaves no room"),
    ("streaming_llm budget within the sinks", lambda tr: _replay(tr, "streaming_llm", 4), "must be larger"),
    ("h2o sinks + recent beyond the budget", lambda tr: _replay(tr, P("h2o", sinks=3, recent=4), 6),
     "more than the budget"),
    ("quest budget below a page", lambda tr: _replay(tr, "quest", 8), "at least one page"),
    ("kvcrush fraction 1.5", lambda tr: make_policy("kvcrush", fraction=1.5),
     r"fraction must be in \(0, 1\)"),
    ("kvcrush base", lambda tr: make_policy("kvcrush", base="oracle"), "base must be one of"),
    ("bad phase", lambda tr: make_policy("h2o", phase="sideways"), "phase must be 'prefill' or 'decode'"),
    ("snapkv in the decode phase", lambda tr: make_policy("snapkv", phase="decode"),
     "only runs with phase='prefill'"),
    ("even pooling kernel", lambda tr: make_policy("snapkv", kernel=4), "odd number"),
    ("negative sinks", lambda tr: make_policy("streaming_llm", sinks=-1), "must be a positive number"),
    ("a pooling kernel that is not a number", lambda tr: make_policy("snapkv", kernel="5"),
     "kernel must be a number"),
    ("an adakv floor that is not a number", lambda tr: make_policy("adakv", floor="0.2"), "floor must be a number"),
    ("uncaptured layer", lambda tr: _replay(tr, "window", 4, layers=[1]),
     r"layer 1 was not captured.*\[0, 3\]"),
    ("unknown backend", lambda tr: _replay(tr, "window", 4, backend="tpu"), "backend must be"),
]


@pytest.mark.parametrize("call, message", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_raises_a_helpful_error(call, message):
    with pytest.raises(KVCacheError, match=message) as info:
        call(SYNTHETIC[0])
    assert isinstance(info.value, ValueError)


def test_every_policy_name_resolves_to_its_own_class():
    """One `Policy` subclass per name of `SPECS`, built by `make_policy` or directly, immutable, equal by
    parameters, and planned by a selector that both backends execute."""
    import copy
    import pickle

    from workbench.kvcache import SPECS, Policy
    from workbench.kvcache.policies import POLICIES
    from workbench.kvcache.policy_base import SCORES, SELECTORS, UPDATES
    from workbench.kvcache.replay import EXECUTORS as NUMBA_EXECUTORS
    from workbench.kvcache.torch_replay import EXECUTORS as TORCH_EXECUTORS

    assert list(SPECS) == list(POLICY_NAMES) == list(POLICIES)
    classes = [type(make_policy(name)) for name in POLICY_NAMES]
    assert len(set(classes)) == len(POLICY_NAMES) and Policy not in classes
    for name, cls in zip(POLICY_NAMES, classes):
        assert issubclass(cls, Policy) and cls is POLICIES[name]
        assert cls.name == name and cls.spec is SPECS[name]
        policy = make_policy(name)
        assert policy == cls() and hash(policy) == hash(cls()) and policy.params == SPECS[name].defaults
        assert make_policy(policy) is policy and pickle.loads(pickle.dumps(policy)) == policy
        assert copy.deepcopy(policy) == policy and eval(repr(policy), {cls.__name__: cls}) == policy
        with pytest.raises(AttributeError):
            policy.params = {}
    h2o = make_policy("h2o", recent=16)
    assert h2o.params == {"phase": "decode", "recent": 16, "sinks": 0} and h2o.label() == "h2o(recent=16)"
    assert make_policy(h2o, sinks=2) == P("h2o", recent=16, sinks=2) != h2o
    assert P("window") != P("recency") and P("snapkv") != P("pyramidkv")   # same parameters, other policies
    assert set(NUMBA_EXECUTORS) == set(TORCH_EXECUTORS) == set(SELECTORS)
    trace = SYNTHETIC[0]
    for policy in ALL_POLICIES:
        tokens = 8 if policy.name != "quest" else policy.params["page"]
        plan = policy.plan(trace, tokens, trace.layers)
        assert plan.selector in SELECTORS and plan.update in UPDATES and plan.score in ("", *SCORES)
        assert len(plan.layer_budgets) == trace.n_layers


def test_difference_of_two_replays_cell_by_cell():
    """`Retention.difference` (the KV lab's difference map) against the two kept masks, cell by cell."""
    from workbench.kvcache.replay import D_BOTH, D_FUTURE, D_NEITHER, D_ONLY_A, D_ONLY_B

    tr = R.synthetic_trace(n=30, steps=6, obs=8, seed=3)
    a, b = _replay(tr, "streaming_llm", 12), _replay(tr, "h2o", 12)
    d = a.difference(b, 1, 0)
    ka, kb, written = a.kept[1, 0], b.kept[1, 0], a.written()
    assert d.shape == ka.shape and np.array_equal(d == D_FUTURE, ~written)
    assert np.array_equal(d == D_BOTH, ka & kb) and np.array_equal(d == D_ONLY_A, ka & ~kb)
    assert np.array_equal(d == D_ONLY_B, kb & ~ka) and np.array_equal(d == D_NEITHER, written & ~ka & ~kb)
    assert (d == D_ONLY_A).any() and (d == D_ONLY_B).any()
    with pytest.raises(KVCacheError, match="same trace"):
        a.difference(_replay(R.synthetic_trace(n=31, steps=6, obs=8, seed=3), "h2o", 12), 1, 0)
