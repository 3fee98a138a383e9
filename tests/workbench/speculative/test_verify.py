"""Verifiers: losslessness by sampling, equivalence with the readable reference, greedy semantics, bad input.

Losslessness: a target p(. | last token) and a draft q(. | last token) over V = 8 tokens (fixed random tables with
some zeros). Each simulated step draws a draft tree from q (with or without replacement, or deterministic top-k
point masses), runs the verifier kernel and records the first two output tokens (when a step emits only one, the
second is drawn from the target directly). The exact law of two target samples is p(a | root) p(b | a); the
observed one must be within total variation 0.01 (first token and pair) and pass a chi-square test at p > 0.001.
The simulation loop is Numba-compiled so 300,000 steps per case take well under a second.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from scipy import stats

from workbench.errors import SpeculativeError
from workbench.speculative import verify_kernels as K
from workbench.speculative.tree import DraftTree, tree_children
from workbench.speculative.verify import VERIFIER_NAMES, Verdict, make_verifier

from .verify_reference import ref_multidraft_is, ref_multistep, ref_selection_distribution, ref_spectr

V = 8
ROOT = 0
N_SAMPLES = 300_000
IID, WITHOUT, POINT = 0, 1, 2  # how the harness draws siblings
KIND = {"chain_sampling": 0, "specinfer": 0, "sequoia": 1, "spectr": 2, "multidraft_is": 3}


def _tables(seed=7):
    """Target T[a] = p(. | a) and draft D[a] = q(. | a): related but different, both with zeros."""
    rng = np.random.default_rng(seed)
    T = rng.dirichlet(np.full(V, 0.7), size=V)
    D = 0.55 * T + 0.45 * rng.dirichlet(np.full(V, 1.0), size=V)
    for a in range(V):
        T[a, rng.choice(np.argsort(T[a])[:-1], 2, replace=False)] = 0.0  # keep the mode
        D[a, rng.choice(V, 1)] = 0.0
    return T / T.sum(1, keepdims=True), D / D.sum(1, keepdims=True)


T_TABLE, D_TABLE = _tables()


def _structure(shape):
    """Parents (breadth-first) of a tree where every node at depth d has shape[d] children."""
    parents, level = [], [-1]
    for b in shape:
        nxt = []
        for par in level:
            for _ in range(b):
                parents.append(par)
                nxt.append(len(parents) - 1)
        level = nxt
    return np.array(parents, np.int32)


@njit(cache=True)
def _simulate(kind, T, D, root, parents, ptr, child, draw_mode, n, seed):
    np.random.seed(seed)
    Vn = T.shape[0]
    N = parents.shape[0]
    tokens = np.zeros(N, np.int64)
    P = np.empty((N + 1, Vn), np.float64)
    Q = np.empty((N + 1, Vn), np.float32)
    path = np.empty(max(N, 1), np.int32)
    buf = np.empty(Vn, np.float64)
    order = np.empty((Vn, Vn), np.int64)
    for a in range(Vn):
        order[a] = np.argsort(-D[a], kind="mergesort")
    counts = np.zeros((Vn, Vn), np.int64)
    n_acc_hist = np.zeros(N + 1, np.int64)
    errors = 0
    has_q = draw_mode != 2
    for _ in range(n):
        for s in range(N + 1):
            ctx = root if s == 0 else tokens[s - 1]
            for j in range(Vn):
                P[s, j] = T[ctx, j]
                Q[s, j] = D[ctx, j]
            kids = ptr[s + 1] - ptr[s]
            if kids == 0:
                continue
            if draw_mode == 2:
                for i in range(kids):
                    tokens[child[ptr[s] + i]] = order[ctx, i]
            else:
                for j in range(Vn):
                    buf[j] = D[ctx, j]
                for i in range(kids):
                    x = K.sample_index(buf, np.random.random())
                    tokens[child[ptr[s] + i]] = x
                    if draw_mode == 1:
                        buf[x] = 0.0
        u = np.random.random(2 * N + 4)
        if kind == 0 or kind == 1:
            status, node, n_acc, bonus = K.multistep_kernel(tokens, ptr, child, P, Q, has_q, kind == 1, u, path)
        elif kind == 2:
            status, node, n_acc, bonus = K.spectr_kernel(tokens, parents, ptr, child, P, Q, has_q, u, path, 1e-9)
        else:
            status, node, n_acc, bonus = K.multidraft_is_kernel(tokens, ptr, child, P, Q, has_q, u, path,
                                                                16777216.0)
        if status != 0:
            errors += 1
            continue
        first = tokens[path[0]] if n_acc >= 1 else bonus
        if n_acc >= 2:
            second = tokens[path[1]]
        elif n_acc == 1:
            second = bonus
        else:
            second = K.sample_index(T[first], np.random.random())
        counts[first, second] += 1
        n_acc_hist[n_acc] += 1
    return counts, n_acc_hist, errors


def _chi2_pvalue(observed, expected_prob):
    obs = observed.ravel().astype(np.float64)
    exp = expected_prob.ravel() * obs.sum()
    zero = exp == 0
    assert obs[zero].sum() == 0, "a token pair the target never produces was emitted"
    small = (exp < 5) & ~zero
    big = ~zero & ~small
    o = np.concatenate([obs[big], [obs[small].sum()]]) if small.any() else obs[big]
    e = np.concatenate([exp[big], [exp[small].sum()]]) if small.any() else exp[big]
    return float(stats.chisquare(o, e * (o.sum() / e.sum())).pvalue)


def _compare(counts):
    """(TV of the first token, TV of the pair, chi-square p of the first token, of the pair)."""
    exact = T_TABLE[ROOT][:, None] * T_TABLE
    n = counts.sum()
    first = counts.sum(1)
    tv1 = 0.5 * np.abs(first / n - exact.sum(1)).sum()
    tv2 = 0.5 * np.abs(counts / n - exact).sum()
    return tv1, tv2, _chi2_pvalue(first, exact.sum(1)), _chi2_pvalue(counts, exact)


def _run(kind, shape, draw_mode, n=N_SAMPLES, seed=1):
    parents = _structure(shape)
    ptr, child = tree_children(parents)
    return _simulate(kind, T_TABLE, D_TABLE, ROOT, parents, ptr, child, draw_mode, n, seed)


LOSSLESS_CASES = [
    ("chain_sampling", (1, 1, 1), IID),
    ("chain_sampling", (1, 1, 1), POINT),
    ("specinfer", (3, 2), IID),
    ("specinfer", (2, 2, 2), IID),
    ("specinfer", (3, 2), POINT),
    ("sequoia", (3, 2), WITHOUT),
    ("sequoia", (2, 2, 2), WITHOUT),
    ("sequoia", (4, 1), POINT),
    ("spectr", (3, 1), IID),
    ("spectr", (3, 2), IID),
    ("spectr", (2, 2), POINT),
    ("multidraft_is", (3, 2), IID),
    ("multidraft_is", (3, 2), POINT),
]


@pytest.mark.parametrize("name,shape,draw_mode", LOSSLESS_CASES,
                         ids=[f"{n}-{'x'.join(map(str, s))}-{['iid', 'without', 'point'][d]}"
                              for n, s, d in LOSSLESS_CASES])
def test_lossless_by_sampling(name, shape, draw_mode):
    assert make_verifier(name).lossless
    counts, n_acc_hist, errors = _run(KIND[name], shape, draw_mode)
    assert errors == 0
    n = counts.sum()
    assert n == N_SAMPLES
    # not vacuous: steps reject at the first level and accept two or more tokens, both often
    assert n_acc_hist[0] > 0.02 * n and n_acc_hist[2:].sum() > 0.05 * n
    tv1, tv2, p1, p2 = _compare(counts)
    print(f"{name} {shape} {['iid', 'without', 'point'][draw_mode]}: TV1={tv1:.4f} TV2={tv2:.4f} "
          f"chi2 p1={p1:.3f} p2={p2:.3f} accept-hist={n_acc_hist.tolist()}")
    assert tv1 < 0.01 and tv2 < 0.01
    assert p1 > 0.001 and p2 > 0.001


def test_the_sampling_test_has_power():
    """SpecInfer's with-replacement rule on siblings drawn WITHOUT replacement is biased: the test must see it."""
    counts, _, errors = _run(0, (3, 2), WITHOUT, n=100_000)
    assert errors == 0
    tv1, tv2, p1, p2 = _compare(counts)
    print(f"specinfer rule on without-replacement drafts: TV1={tv1:.4f} TV2={tv2:.4f} p1={p1:.2g} p2={p2:.2g}")
    assert min(p1, p2) < 1e-6


def _typical_exact_output(verifier):
    """Exact law of the first two output tokens of `verifier` over chain drafts of depth 2 drawn from q,
    by enumerating all V^2 drafts (typical with fast=True is deterministic given the draft)."""
    out = np.zeros((V, V))
    for a in range(V):
        for b in range(V):
            prob = D_TABLE[ROOT, a] * D_TABLE[a, b]
            if prob == 0:
                continue
            tree = DraftTree.chain([a, b])
            probs = T_TABLE[[ROOT, a, b]]
            t = verifier.verify(tree, probs).tokens
            if len(t) >= 2:
                out[t[0], t[1]] += prob
            else:
                out[t[0]] += prob * T_TABLE[t[0]]
    return out


def test_typical_is_lossy_and_labelled():
    verifier = make_verifier("typical")
    assert verifier.lossless is False
    assert "lossy" in type(verifier).__doc__.lower()
    out = _typical_exact_output(verifier)
    exact = T_TABLE[ROOT][:, None] * T_TABLE
    tv_first = 0.5 * np.abs(out.sum(1) - exact.sum(1)).sum()
    tv_pair = 0.5 * np.abs(out - exact).sum()
    print(f"typical: exact TV1={tv_first:.4f} TV2={tv_pair:.4f}")
    assert tv_first > 0.05 and tv_pair > 0.05
    v = verifier.verify(DraftTree.chain([1, 2]), T_TABLE[[ROOT, 1, 2]])
    assert isinstance(v, Verdict) and v.lossless is False


def test_typical_follows_medusa_threshold_and_bonus():
    # row after the root: entropy-based threshold min(0.09, 0.3 * exp(-H))
    p0 = np.array([0.5, 0.3, 0.15, 0.05])
    H = -np.sum(p0 * np.log(p0 + 1e-5))
    thr = min(0.09, 0.3 * np.exp(-H))
    assert 0.05 < thr < 0.15  # token 3 (0.05) is below, token 2 (0.15) above
    p1 = np.array([0.1, 0.1, 0.1, 0.7])
    probs = np.stack([p0, p1, p1, p1])
    tree = DraftTree.from_parents(tokens=[3, 2, 0], parents=[-1, -1, 1])  # 3 rejected; 2 -> 0 (0.1 > thr(p1))
    v = make_verifier("typical").verify(tree, probs)
    thr1 = min(0.09, 0.3 * np.exp(np.sum(p1 * np.log(p1 + 1e-5))))
    assert v.accepted.tolist() == ([1, 2] if 0.1 > thr1 else [1])
    assert v.bonus == 3  # fast=True: argmax after the last accepted node
    v2 = make_verifier("typical", fast=False).verify(tree, probs, rng=0)
    assert v2.accepted.tolist() == v.accepted.tolist() and v2.bonus in (0, 1, 2, 3)


# ---------------------------------------------------------------------------------------------------------------
# kernels == readable reference, through the public API
# ---------------------------------------------------------------------------------------------------------------
def _random_tree(rng, n_nodes, vocab, with_q):
    parents, tokens = [], []
    for i in range(n_nodes):
        par = int(rng.integers(-1, i)) if i else -1
        used = {tokens[j] for j in range(i) if parents[j] == par}
        free = [t for t in range(vocab) if t not in used]
        if not free:
            par = -1 if par != -1 else 0
            used = {tokens[j] for j in range(i) if parents[j] == par}
            free = [t for t in range(vocab) if t not in used]
        parents.append(par)
        tokens.append(int(rng.choice(free)))
    dists = rng.dirichlet(np.ones(vocab), size=n_nodes + 1).astype(np.float32) if with_q else None
    return DraftTree.from_parents(tokens=tokens, parents=parents, draft_dists=dists)


def _random_probs(rng, rows, vocab):
    p = rng.dirichlet(np.full(vocab, 0.8), size=rows)
    p[rng.random(p.shape) < 0.15] = 0.0
    p[np.arange(rows), rng.integers(0, vocab, rows)] += 0.05
    return p


REFERENCES = {
    "chain_sampling": lambda t, P, Q, u: ref_multistep(t.tokens, t.parents, P, Q, u, False),
    "specinfer": lambda t, P, Q, u: ref_multistep(t.tokens, t.parents, P, Q, u, False),
    "sequoia": lambda t, P, Q, u: ref_multistep(t.tokens, t.parents, P, Q, u, True),
    "spectr": lambda t, P, Q, u: ref_spectr(t.tokens, t.parents, P, Q, u),
    "multidraft_is": lambda t, P, Q, u: ref_multidraft_is(t.tokens, t.parents, P, Q, u),
}


@pytest.mark.parametrize("name", list(REFERENCES))
def test_kernels_equal_reference(name):
    rng = np.random.default_rng(11)
    verifier = make_verifier(name)
    vocab = 6
    checked = 0
    for case in range(120):
        with_q = case % 2 == 0
        n_nodes = int(rng.integers(0, 9))
        tree = _random_tree(rng, n_nodes, vocab, with_q)
        if name == "chain_sampling":
            tree = DraftTree.from_parents(tokens=tree.tokens, parents=np.arange(-1, n_nodes - 1),
                                          draft_dists=tree.draft_dists)
        if name == "multidraft_is" and tree.size and np.bincount(tree.parents + 1).max() > 3:
            continue  # keep the brute-force reference enumeration small
        probs = _random_probs(rng, n_nodes + 1, vocab)
        seed = int(rng.integers(1 << 30))
        got = verifier.verify(tree, probs, rng=np.random.default_rng(seed))
        u = np.random.default_rng(seed).random(2 * n_nodes + 4)
        path, bonus = REFERENCES[name](tree, probs, tree.draft_dists, u)
        assert got.accepted.tolist() == path and got.bonus == bonus, (case, got, path, bonus)
        assert got.tokens.tolist() == tree.tokens[path].tolist() + [bonus]
        assert got.accepted.dtype == np.int32 and got.tokens.dtype == np.int64
        checked += 1
    assert checked > 80


def test_selection_distribution_matches_brute_force():
    rng = np.random.default_rng(3)
    for k in (1, 2, 3):
        for _ in range(5):
            p = rng.dirichlet(np.ones(5))
            q = rng.dirichlet(np.ones(5))
            p[rng.integers(5)] = 0.0
            q[rng.integers(5)] = 0.0
            p, q = p / p.sum(), q / q.sum()
            s = np.empty(5)
            assert K.selection_distribution(p, q, k, 1e9, s)
            np.testing.assert_allclose(s, ref_selection_distribution(p, q, k), atol=1e-12)
            assert abs(s.sum() - 1) < 1e-12
    assert not K.selection_distribution(p, q, 3, 10.0, s)


def test_spectr_rho_makes_a_valid_residual():
    rng = np.random.default_rng(5)
    for _ in range(50):
        p, q = rng.dirichlet(np.ones(10)), rng.dirichlet(np.ones(10))
        k = int(rng.integers(1, 6))
        rho = K.spectr_rho(p, q, k, 1e-12)
        assert 1.0 <= rho <= k
        beta = np.minimum(q, p / rho).sum()
        coef = (1 - (1 - beta) ** k) / beta
        assert np.all(p - np.minimum(q, p / rho) * coef >= -1e-9)  # the residual is a (sub-)distribution
        if rho > 1 + 1e-6:  # rho* is the smallest valid: a bit less is invalid
            r2 = rho - 1e-6
            b2 = np.minimum(q, p / r2).sum()
            assert 1 - (1 - b2) ** k > r2 * b2


def test_sampling_verifiers_on_empty_tree_sample_the_target():
    probs = np.array([[0.0, 0.25, 0.75]])
    for name in ("chain_sampling", "specinfer", "sequoia", "spectr", "multidraft_is"):
        bonuses = [make_verifier(name).verify(DraftTree.empty(), probs, rng=s).bonus for s in range(200)]
        assert set(bonuses) <= {1, 2} and 100 < bonuses.count(2) < 190


# ---------------------------------------------------------------------------------------------------------------
# greedy
# ---------------------------------------------------------------------------------------------------------------
def test_greedy_first_match_and_bonus():
    # root -> [5, 3, 3]; the first 3 (node 1) has child 4, the second (node 2) has child 6
    tree = DraftTree.from_parents(tokens=[5, 3, 3, 4, 6], parents=[-1, -1, -1, 1, 2])
    probs = np.full((6, 8), 0.01)
    probs[0, 3] = 1.0  # argmax after root: 3 -> first matching sibling is node 1
    probs[2, 4] = 1.0  # after node 1: 4 -> node 3 accepted
    probs[4, 7] = 1.0  # after node 3: 7 -> bonus
    probs[3, 6] = 1.0  # after node 2 (not taken)
    v = make_verifier("greedy").verify(tree, probs)
    assert v.accepted.tolist() == [1, 3] and v.bonus == 7 and v.tokens.tolist() == [3, 4, 7]
    assert v.lossless and v.n_accepted == 2 and v.summary()["tokens"] == [3, 4, 7]
    # nothing matches at the root: empty path, bonus = argmax after the root
    probs[0] = 0.01
    probs[0, 2] = 0.5
    v = make_verifier("greedy").verify(tree, probs)
    assert v.accepted.tolist() == [] and v.bonus == 2 and v.tokens.tolist() == [2]


def test_greedy_ties_take_the_lowest_id_and_empty_tree():
    probs = np.array([[0.1, 0.4, 0.4, 0.1]])
    assert make_verifier("greedy").verify(DraftTree.empty(), probs).tokens.tolist() == [1]
    tree = DraftTree.from_parents(tokens=[2, 1], parents=[-1, -1])
    probs = np.array([[0.1, 0.4, 0.4, 0.1], [1, 0, 0, 0], [0, 0, 0, 1]], np.float32)
    assert make_verifier("greedy").verify(tree, probs).tokens.tolist() == [1, 3]


def test_greedy_property_on_random_trees():
    rng = np.random.default_rng(9)
    greedy = make_verifier("greedy")
    for _ in range(200):
        n = int(rng.integers(0, 12))
        parents = [int(rng.integers(-1, i)) if i else -1 for i in range(n)]
        tokens = rng.integers(0, 4, n)
        tree = DraftTree.from_parents(tokens=tokens, parents=parents)
        logits = rng.normal(size=(n + 1, 4))
        soft = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        onehot = np.eye(4)[logits.argmax(1)]
        v = greedy.verify(tree, soft)
        assert greedy.verify(tree, onehot).tokens.tolist() == v.tokens.tolist()
        node = -1
        for acc in v.accepted:  # each step: the first sibling carrying the argmax
            target = logits[node + 1].argmax()
            matching = [i for i in range(n) if parents[i] == node and tokens[i] == target]
            assert matching and acc == matching[0]
            node = int(acc)
        target = logits[node + 1].argmax()
        assert v.bonus == target
        assert not [i for i in range(n) if parents[i] == node and tokens[i] == target]  # maximal


# ---------------------------------------------------------------------------------------------------------------
# bad input and the registry
# ---------------------------------------------------------------------------------------------------------------
def test_registry_and_params():
    assert set(VERIFIER_NAMES) == {"greedy", "chain_sampling", "specinfer", "sequoia", "spectr", "multidraft_is",
                                   "typical"}
    for name in VERIFIER_NAMES:
        v = make_verifier(name)
        assert v.name == name and isinstance(v.params(), dict)
        assert v.lossless == (name != "typical")
        assert make_verifier(v) is v
    assert make_verifier("typical", fast=False).params()["fast"] is False
    with pytest.raises(SpeculativeError, match="unknown verifier 'nope'.*greedy.*typical"):
        make_verifier("nope")
    with pytest.raises(SpeculativeError, match="no parameter"):
        make_verifier("greedy", alpha=1)
    with pytest.raises(SpeculativeError, match="posterior_threshold"):
        make_verifier("typical", posterior_threshold=0)
    with pytest.raises(SpeculativeError, match="max_enumeration"):
        make_verifier("multidraft_is", max_enumeration=0)
    with pytest.raises(SpeculativeError, match="tol"):
        make_verifier("spectr", tol=-1)


def test_bad_input():
    tree = DraftTree.from_parents(tokens=[1, 2], parents=[-1, 0])
    good = np.full((3, 4), 0.25)
    for name in VERIFIER_NAMES:
        v = make_verifier(name)
        with pytest.raises(SpeculativeError, match="3 rows|needs 3"):
            v.verify(tree, good[:2])
        with pytest.raises(SpeculativeError, match="2-D"):
            v.verify(tree, good[0])
        bad = good.copy()
        bad[1, 2] = np.nan
        with pytest.raises(SpeculativeError, match="row 1 .*NaN"):
            v.verify(tree, bad)
        bad = good.copy()
        bad[2, 0] = -0.1
        with pytest.raises(SpeculativeError, match="negative"):
            v.verify(tree, bad)
        bad = good.copy()
        bad[0] = 0
        with pytest.raises(SpeculativeError, match="sums to zero"):
            v.verify(tree, bad)
        with pytest.raises(SpeculativeError, match="outside"):
            v.verify(tree, good[:, :2])
        with pytest.raises(SpeculativeError, match="DraftTree"):
            v.verify([1, 2], good)
    with pytest.raises(SpeculativeError, match="chain.*root has 2 children"):
        make_verifier("chain_sampling").verify(DraftTree.from_parents([1, 2], [-1, -1]), good)
    with pytest.raises(SpeculativeError, match="rng"):
        make_verifier("specinfer").verify(tree, good, rng="seed")


def test_bad_draft_distributions():
    good = np.full((3, 4), 0.25)
    dists = np.full((3, 4), 0.25, np.float32)
    dup = DraftTree.from_parents([1, 1], [-1, -1], draft_dists=dists)
    # draw u so that the first sibling is rejected: target puts no mass on token 1
    probs = np.array([[0.5, 0.0, 0.5, 0.0]] + [[0.25] * 4] * 2)
    with pytest.raises(SpeculativeError, match="sequoia.*distinct"):
        make_verifier("sequoia").verify(dup, probs, rng=0)
    zero_q = dists.copy()
    zero_q[0, 1] = 0
    with pytest.raises(SpeculativeError, match="probability 0 in the draft distribution"):
        make_verifier("specinfer").verify(DraftTree.from_parents([1, 2], [-1, 0], draft_dists=zero_q), good)
    with pytest.raises(SpeculativeError, match="vocabulary of 4 but target_probs of 5"):
        make_verifier("specinfer").verify(DraftTree.from_parents([1, 2], [-1, 0], draft_dists=dists),
                                          np.full((3, 5), 0.2))
    wide = DraftTree.from_parents([1, 2, 3], [-1, -1, -1], draft_dists=np.full((4, 64), 1 / 64, np.float32))
    with pytest.raises(SpeculativeError, match="64\\^3 terms, more than max_enumeration=1000"):
        make_verifier("multidraft_is", max_enumeration=1000).verify(wide, np.full((4, 64), 1 / 64))
