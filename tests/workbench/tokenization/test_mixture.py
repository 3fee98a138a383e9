"""Data-mixture inference: the Numba replay against a recount-everything reference, the lazily grown program against
the full one, and recovery of known training mixtures of the shipped corpora."""

from collections import Counter
from functools import cache

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from workbench.data import load_corpus, parallel_texts, stdlib_paths
from workbench.errors import ConfigurationError, TokenizerError
from workbench.tokenization import load_tokenizer, split_bytes, train_bpe
from workbench.tokenization.mixture import (
    BYTES_UNIT,
    infer_mixture,
    infer_mixture_details,
    replay_pair_counts,
)


# -- the readable reference -----------------------------------------------------------------------------------------
def reference_replay(tok, docs: list[bytes], n_merges: int) -> list[dict]:
    """Pair counts before each merge step 0..n_merges, recounting every pair of every word at every step."""
    words = Counter()
    for data in docs:
        b = split_bytes(data, tok.pretokenizer)
        words.update(tuple(int(tok._byte_tok[x]) for x in data[b[i]:b[i + 1]]) for i in range(len(b) - 1))

    def count(words):
        pairs = Counter()
        for w, c in words.items():
            for x, y in zip(w, w[1:]):
                if x >= 0 and y >= 0:   # -1: a byte without a token
                    pairs[x, y] += c
        return dict(pairs)

    out = [count(words)]
    for a, b, new in tok.merge_list[:n_merges].tolist():
        merged = Counter()
        for w, c in words.items():
            o, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    o.append(new)
                    i += 2
                else:
                    o.append(w[i])
                    i += 1
            merged[tuple(o)] += c
        words = merged
        out.append(count(words))
    return out


def reference_mixture(tok, samples: dict[str, str], n_merges: int):
    """The whole linear program, every (step, competing pair) written out, solved once:
    (proportions, objective, number of constraints)."""
    counts = {k: reference_replay(tok, [v.encode()], n_merges) for k, v in samples.items()}
    size = {k: len(v.encode()) for k, v in samples.items()}
    names = list(samples)
    pair_ids: dict = {}
    rows = []
    for t, (a, b, _) in enumerate(tok.merge_list[:n_merges].tolist()):
        at_t = [counts[k][t] for k in names]
        if not any(c.get((a, b), 0) for c in at_t):
            continue  # the merge occurs in no sample: no information
        for p in set().union(*at_t) - {(a, b)}:
            coef = [(c.get((a, b), 0) - c.get(p, 0)) * BYTES_UNIT / size[k] for c, k in zip(at_t, names)]
            rows.append((coef, t, pair_ids.setdefault(p, len(pair_ids))))
    n, k, n_u = len(names), len(rows), len(pair_ids)
    a_ub = np.zeros((k, n + n_merges + n_u))
    for r, (coef, t, p) in enumerate(rows):
        a_ub[r, :n] = -np.array(coef)
        a_ub[r, n + t] = a_ub[r, n + n_merges + p] = -1
    c = np.r_[np.zeros(n), np.ones(n_merges + n_u)]
    a_eq = np.r_[np.ones(n), np.zeros(n_merges + n_u)][None]
    res = linprog(c, A_ub=sp.csr_matrix(a_ub), b_ub=np.zeros(k), A_eq=a_eq, b_eq=[1.0],
                  bounds=[(0, 1)] * n + [(0, None)] * (n_merges + n_u), method="highs")
    assert res.status == 0
    return res.x[:n], res.fun, k


# -- the replay -----------------------------------------------------------------------------------------------------
@cache
def real(name):
    return load_tokenizer(name)


@cache
def prose() -> str:
    return load_corpus("prose_en").read_text()


def check_replay(tok, text, n_merges):
    replay = replay_pair_counts(tok, text, max_merges=n_merges)
    ref = reference_replay(tok, [text.encode()], replay.n_merges)
    for step in range(replay.n_merges + 1):
        assert replay.counts_at(step) == ref[step], step


@pytest.mark.parametrize("name", ["trained", "gpt2", "smollm2"])
def test_replay_matches_the_reference(name):
    tok = train_bpe([prose()[:40_000], " aaaaaaa ==== ----"], 500) if name == "trained" else real(name)
    texts = [prose()[50_000:60_000], "aaaa aaa aa abab ababab ====== ---- " * 3,
             "x\x04yy\x04\x04 zz \x06\x13",  # bytes SmolLM2 has no token for
             "\n".join(parallel_texts()["ru"][:3]), "    \n\n\n  ====  -----"]
    for text in texts:
        check_replay(tok, text, 200)


@settings(max_examples=40, deadline=None)
@given(corpus=st.text(alphabet="ab c\n", min_size=1, max_size=200), text=st.text(alphabet="ab c\n", min_size=1,
                                                                                 max_size=200))
def test_replay_matches_the_reference_on_random_text(corpus, text):
    tok = train_bpe(corpus, 300)
    if len(tok.merge_list):
        check_replay(tok, text, 100)


def test_replay_counts_a_documents_list_like_the_concatenated_pieces():
    tok = train_bpe(prose()[:20_000], 400)
    docs = [prose()[30_000:31_000], prose()[31_000:32_000]]
    replay = replay_pair_counts(tok, docs, max_merges=50)
    ref = reference_replay(tok, [d.encode() for d in docs], 50)
    assert replay.n_bytes == 2000 and all(replay.counts_at(t) == ref[t] for t in (0, 25, 50))


# -- the lazily grown program equals the full one -----------------------------------------------------------------
def test_lazy_program_reaches_the_full_programs_optimum():
    par = parallel_texts()
    samples = {"en": prose()[100_000:104_000], "de": "\n".join(par["de"][16:]), "ru": "\n".join(par["ru"][16:])}
    tok = train_bpe([prose()[:3_000], "\n".join(par["de"][:16])[:2_000], "\n".join(par["ru"][:16])[:2_000]], 330)
    n_merges = len(tok.merge_list)
    est = infer_mixture_details(tok, samples, max_merges=n_merges, top_k=2)
    proportions, objective, n_full = reference_mixture(tok, samples, n_merges)
    assert est.converged and est.rounds > 2
    assert est.objective == pytest.approx(objective, rel=1e-6, abs=1e-6)
    assert est.n_constraints < n_full / 3      # lazily: a fraction of the constraints
    np.testing.assert_allclose(est.proportions, proportions, atol=0.02)
    assert est.proportions.sum() == pytest.approx(1.0)


# -- recovering known mixtures ------------------------------------------------------------------------------------
def _blocks(text: str, size: int = 4096) -> list[str]:
    """``text`` cut into ~``size``-character blocks at line ends."""
    out, start = [], 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        out.append(text[start:end])
        start = end
    return out


def _spread(items: list[str], budget: int) -> bytes:
    """About ``budget`` bytes of evenly spaced ``items`` (so a small budget still spans the whole category)."""
    sizes = np.array([len(x.encode()) for x in items])
    k = int(np.clip(np.ceil(len(items) * budget / sizes.sum()), 1, len(items)))
    picked = np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))
    return "".join(items[i] for i in picked).encode()[:budget]


@pytest.fixture(scope="module")
def categories() -> dict[str, tuple[list[str], str]]:
    """category -> (training pool of blocks, held-out sample): English prose, Python code (stdlib), and the UDHR in
    18 languages other than English. Training and held-out data are disjoint: alternate blocks of the novel and of
    the code, alternate passages of each language."""
    code, total = [], 0
    for path in stdlib_paths():
        code.append(path.read_text(encoding="utf-8", errors="replace"))
        total += len(code[-1])
        if total > 1_400_000:
            break
    par = {k: v for k, v in parallel_texts().items() if k != "en"}
    n = min(len(v) for v in par.values())
    out = {}
    for name, items in {"english": _blocks(prose()), "code": _blocks("\n".join(code))}.items():
        out[name] = (items[0::2], "".join(items[1::2]))
    out["multilingual"] = ([v[i] + "\n\n" for i in range(0, n, 2) for v in par.values()],
                           "".join(v[i] + "\n\n" for i in range(1, n, 2) for v in par.values()))
    return out


MIXTURES = [(0.6, 0.3, 0.1), (0.2, 0.5, 0.3), (0.34, 0.33, 0.33), (0.1, 0.8, 0.1)]


@pytest.mark.parametrize("weights", MIXTURES, ids=lambda w: "/".join(f"{x:g}" for x in w))
def test_recovers_known_training_mixtures(categories, weights):
    budget = 400_000
    docs = [_spread(categories[name][0], int(w * budget)) for name, w in zip(categories, weights)]
    truth = np.array([len(d) for d in docs]) / sum(len(d) for d in docs)
    tok = train_bpe(docs, 256 + 1000)
    est = infer_mixture_details(tok, {name: held for name, (_, held) in categories.items()})
    error = np.abs(est.proportions - truth).max()
    print(f"truth {np.round(truth, 3)} estimate {np.round(est.proportions, 3)} max error {100 * error:.2f} pp; {est}")
    assert est.converged and est.n_merges == 500
    assert error < 0.05


def test_a_single_category_tokenizer_is_recognised(categories):
    tok = train_bpe(_spread(categories["english"][0], 200_000), 256 + 600)
    calls = []
    est = infer_mixture(tok, {name: held for name, (_, held) in categories.items()}, max_merges=300,
                        progress=lambda p: calls.append((p.stage, p.done, p.total)))
    assert calls[:3] == [("replay", 1, 3), ("replay", 2, 3), ("replay", 3, 3)] and calls[-1][0] == "solve"
    assert list(est) == ["english", "code", "multilingual"]
    assert sum(est.values()) == pytest.approx(1.0)
    assert est["english"] > 0.9


# -- bad input ----------------------------------------------------------------------------------------------------
def test_bad_input_raises_project_errors():
    tok = train_bpe("the cat sat on the mat " * 20, 280)
    good = {"a": "the cat", "b": "on the mat"}
    with pytest.raises(ConfigurationError, match="non-empty"):
        infer_mixture(tok, {})
    with pytest.raises(ConfigurationError, match="'b' has no text"):
        infer_mixture(tok, {"a": "the cat", "b": ""})
    with pytest.raises(ConfigurationError, match="'b' has no text"):
        infer_mixture(tok, {"a": "the cat", "b": []})
    with pytest.raises(ConfigurationError, match="str, bytes"):
        infer_mixture(tok, {"a": "the cat", "b": 42})
    with pytest.raises(TokenizerError, match="no merge list"):
        infer_mixture(train_bpe("the cat", 256), good)
    with pytest.raises(ConfigurationError, match="Tokenizer"):
        infer_mixture("gpt2", good)
    with pytest.raises(ConfigurationError, match="max_merges"):
        infer_mixture(tok, good, max_merges=0)
    with pytest.raises(ConfigurationError, match="top_k"):
        infer_mixture(tok, good, top_k=0)
    with pytest.raises(ConfigurationError, match="occurs in any sample"):
        infer_mixture(tok, {"a": "x y z", "b": "1 2 3"})
    with pytest.raises(ConfigurationError, match="step"):
        replay_pair_counts(tok, "the cat", max_merges=5).counts_at(6)
