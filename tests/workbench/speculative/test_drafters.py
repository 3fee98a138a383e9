"""The model-free drafters (prompt lookup, SuffixDecoding, Token Recycling, corpus n-grams): Numba kernels against
the readable references in ``drafters_reference.py``, on random and real SmolLM2-tokenized text; prompt lookup
against Hugging Face's own ``PromptLookupCandidateGenerator``; incremental suffix trees against rebuilds; bad
inputs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.workbench.speculative import drafters_reference as R
from workbench.errors import SpeculativeError
from workbench.speculative.drafter import make_drafter
from workbench.speculative.drafters import corpus_ngram as CN
from workbench.speculative.drafters.corpus_ngram import CorpusNgramDrafter, count_ngrams
from workbench.speculative.drafters.kernels import (
    prompt_lookup_candidates,
    prompt_lookup_match,
    suffix_match_lengths,
)
from workbench.speculative.drafters.prompt_lookup import PromptLookupDrafter
from workbench.speculative.drafters.recycling import TEMPLATE_222, RecyclingDrafter
from workbench.speculative.drafters.suffix import SuffixDrafter, SuffixTrie
from workbench.speculative.tree import DraftTree

MODEL_FREE = ("prompt_lookup", "suffix", "recycling", "corpus_ngram")
SMALL_CORPUS = np.array([5, 6, 7, 5, 6, 8, -1, 5, 6, 7, 9, 5, 6], np.int64)


def _make(name, **params):
    if name == "corpus_ngram":
        params.setdefault("corpus", SMALL_CORPUS)
    return make_drafter(name, **params)


def _random_seq(rng, t, vocab):
    return rng.integers(0, vocab, t).astype(np.int64)


@pytest.fixture(scope="module")
def real_ids():
    """Real SmolLM2 token ids: a shipped Python file (~3000 tokens) and an English prose passage (~2000 tokens)."""
    from workbench.data import load_corpus

    tok = CN._default_tokenizer()
    code_path = next(p for p in load_corpus("code").paths if p.name == "heapq.py")
    code = np.asarray(tok.encode(code_path.read_text(encoding="utf-8")), np.int64)[:3000]
    prose = load_corpus("prose_en").paths[0].read_text(encoding="utf-8")[20000:29000]
    return {"code": code, "prose": np.asarray(tok.encode(prose), np.int64)[:2000]}


# -- registry and shared behaviour --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_FREE)
def test_registry_names_params_and_round_trip(name):
    d = _make(name)
    assert d.name == name and not d.model_based
    again = make_drafter(name, **d.params())
    assert type(again) is type(d)
    assert {k: v for k, v in again.params().items() if k != "corpus"} == \
        {k: v for k, v in d.params().items() if k != "corpus"}
    assert name in repr(d) or type(d).__name__ in repr(d)


@pytest.mark.parametrize("name", MODEL_FREE)
def test_proposals_are_valid_trees_within_budget(name, real_ids):
    ids = real_ids["code"][:400]
    d = _make(name, corpus=ids) if name == "corpus_ngram" else _make(name)
    if name == "recycling":
        rng = np.random.default_rng(0)
        d.observe(ids, rng.integers(0, 49152, (ids.shape[0], 8)))
    for t in (1, 2, 50, 200, 400):
        for budget in (1, 3, 80):
            tree = d.propose(ids[:t], budget)
            assert isinstance(tree, DraftTree) and tree.size <= budget
            assert (tree.tokens >= 0).all()
            tree.check_vocab(49152)
        out = d.expand(ids[:t], [np.zeros(0, np.int64), ids[t:t + 2]], 4)
        assert len(out) == 2
        for toks, probs in out:
            assert toks.dtype == np.int64 and probs.dtype == np.float32 and toks.shape == probs.shape
            assert toks.shape[0] <= 4 and (toks >= 0).all() and ((probs >= 0) & (probs <= 1)).all()
            assert len(set(toks.tolist())) == toks.shape[0]


@pytest.mark.parametrize("name", MODEL_FREE)
@pytest.mark.parametrize("context", [[], [[1, 2]], [1.0, 2.0], [3, -1], "abc"])
def test_bad_contexts_are_rejected(name, context):
    with pytest.raises(SpeculativeError):
        _make(name).propose(np.asarray(context), 4)


@pytest.mark.parametrize("name", MODEL_FREE)
@pytest.mark.parametrize("budget", [0, -3, 1.5, True, None])
def test_bad_budgets_and_k_are_rejected(name, budget):
    d = _make(name)
    with pytest.raises(SpeculativeError):
        d.propose(np.array([5, 6, 7]), budget)
    with pytest.raises(SpeculativeError):
        d.expand(np.array([5, 6, 7]), [np.array([5])], budget)


@pytest.mark.parametrize("name", MODEL_FREE)
def test_bad_paths_are_rejected(name):
    d = _make(name)
    for paths in ([np.array([1.5])], [np.array([-2])], [np.array([[1, 2]])]):
        with pytest.raises(SpeculativeError):
            d.expand(np.array([5, 6, 7]), paths, 2)


@pytest.mark.parametrize(("name", "params"), [
    ("prompt_lookup", {"min_ngram": 0}), ("prompt_lookup", {"max_ngram": -1}),
    ("prompt_lookup", {"min_ngram": 4, "max_ngram": 2}), ("prompt_lookup", {"num_pred_tokens": 0}),
    ("prompt_lookup", {"match": "middle"}), ("prompt_lookup", {"max_ngram": 2.5}),
    ("suffix", {"max_depth": 1}), ("suffix", {"spec_factor": -1.0}), ("suffix", {"min_token_prob": 1.5}),
    ("suffix", {"max_spec_tokens": 0}), ("suffix", {"mode": "forest"}), ("suffix", {"spec_offset": float("nan")}),
    ("recycling", {"k": 0}), ("recycling", {"vocab_size": -5}), ("recycling", {"template": "9.9"}),
    ("recycling", {"template": [[0], [1, 0, 0]]}), ("recycling", {"template": [[0], [0]]}),
    ("recycling", {"template": [[8]]}), ("recycling", {"template": []}), ("recycling", {"rank_prior": [0.5] * 3}),
    ("corpus_ngram", {"n": 0}), ("corpus_ngram", {"backoff": 2.0}), ("corpus_ngram", {"num_pred_tokens": -1}),
    ("corpus_ngram", {"corpus": "no_such_corpus"}), ("corpus_ngram", {"corpus": np.array([-1, -1])}),
    ("corpus_ngram", {"corpus": 42}), ("corpus_ngram", {"tokenizer": object()}),
    ("prompt_lookup", {"bogus": 1}),
])
def test_bad_parameters_are_rejected(name, params):
    with pytest.raises(SpeculativeError):
        _make(name, **params)


# -- prompt lookup ------------------------------------------------------------------------------------------------


def test_prompt_lookup_kernels_equal_the_reference_on_random_text():
    rng = np.random.default_rng(1)
    for trial in range(150):
        seq = _random_seq(rng, int(rng.integers(1, 60)), int(rng.integers(2, 6)))
        max_n = int(rng.integers(1, 5))
        min_n = int(rng.integers(1, max_n + 1))
        assert suffix_match_lengths(seq, max_n).tolist() == R.suffix_match_lengths(seq, max_n)
        for match in ("first", "last"):
            d = PromptLookupDrafter(min_ngram=min_n, max_ngram=max_n, num_pred_tokens=5, match=match)
            want, n = R.prompt_lookup(seq, min_n, max_n, 5, match)
            tree = d.propose(seq, 64)
            assert tree.tokens.tolist() == want, (trial, seq.tolist(), match)
            assert tree.meta["match_len"] == n
            assert (tree.parents == np.arange(-1, tree.size - 1)).all()
        toks, probs, _ = prompt_lookup_candidates(seq, min_n, max_n, 3)
        want_toks, want_probs = R.prompt_lookup_candidates(seq, min_n, max_n, 3)
        assert toks.tolist() == want_toks
        np.testing.assert_allclose(probs, want_probs)


def test_prompt_lookup_matches_hugging_face_on_real_text(real_ids):
    """Same proposed tokens as transformers' PromptLookupCandidateGenerator (min n-gram 1, first match) at every
    sampled position of real code and prose; HF and vLLM define the match the same way."""
    import torch
    from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

    agree = total = nonempty = 0
    for max_n in (1, 2, 3):
        hf = PromptLookupCandidateGenerator(num_output_tokens=10, max_matching_ngram_size=max_n, max_length=10**9)
        ours = PromptLookupDrafter(min_ngram=1, max_ngram=max_n, num_pred_tokens=10)
        for ids in real_ids.values():
            for t in range(2, ids.shape[0], 11):
                ctx = ids[:t]
                cand, _ = hf.get_candidates(torch.as_tensor(ctx[None]))
                want = cand[0, t:].numpy()
                got = ours.propose(ctx, 64).tokens
                total += 1
                agree += int(np.array_equal(want, got))
                nonempty += int(want.size > 0)
    assert total > 1000 and nonempty > 0.5 * total
    assert agree == total


def test_prompt_lookup_kernel_equals_reference_on_real_text(real_ids):
    ids = real_ids["prose"]
    for t in range(3, 800, 17):
        seq = ids[:t]
        for match in ("first", "last"):
            start, n = prompt_lookup_match(seq, 2, 4, match == "last")
            want, want_n = R.prompt_lookup(seq, 2, 4, 10, match)
            assert n == want_n
            assert (seq[start:start + 10].tolist() if start >= 0 else []) == want
        toks, probs, _ = prompt_lookup_candidates(seq, 1, 3, 5)
        want_toks, want_probs = R.prompt_lookup_candidates(seq, 1, 3, 5)
        assert toks.tolist() == want_toks
        np.testing.assert_allclose(probs, want_probs)


def test_prompt_lookup_budget_and_limits():
    ctx = np.array([1, 2, 3, 4, 5, 6, 7, 1, 2])
    d = PromptLookupDrafter(max_ngram=2, num_pred_tokens=4)
    assert d.propose(ctx, 64).tokens.tolist() == [3, 4, 5, 6]
    assert d.propose(ctx, 2).tokens.tolist() == [3, 4]
    assert d.find_match(ctx) == (2, 2)
    assert d.propose(np.array([1, 2, 3]), 8).size == 0  # nothing recurs
    assert d.propose(np.array([4]), 8).size == 0
    # the copy stops at the end of the context (overlapping match)
    assert PromptLookupDrafter(max_ngram=2).propose(np.array([9, 9, 9]), 8).tokens.tolist() == [9]
    # "last" takes the most recent occurrence
    ctx = np.array([1, 2, 3, 1, 2, 4, 1, 2])
    assert PromptLookupDrafter(max_ngram=2, num_pred_tokens=1).propose(ctx, 8).tokens.tolist() == [3]
    assert PromptLookupDrafter(max_ngram=2, num_pred_tokens=1, match="last").propose(ctx, 8).tokens.tolist() == [4]
    toks, probs = PromptLookupDrafter(max_ngram=2).expand(ctx, [np.array([], np.int64)], 5)[0]
    assert toks.tolist() == [4, 3] and probs.tolist() == [0.5, 0.5]


# -- SuffixDecoding -----------------------------------------------------------------------------------------------


def test_suffix_trie_counts_equal_the_reference_and_survive_growth():
    rng = np.random.default_rng(2)
    for _ in range(30):
        depth = int(rng.integers(2, 8))
        seqs = [_random_seq(rng, int(rng.integers(1, 80)), int(rng.integers(2, 6))) for _ in range(3)]
        trie = SuffixTrie(depth, capacity=8)  # forces several rounds of growth and rehashing
        for s in seqs:
            trie.new_sequence()
            trie.extend(s)
        assert trie.counts() == R.suffix_counts(seqs, depth)
        assert int(trie.count[0]) == sum(len(s) for s in seqs)


def test_suffix_incremental_update_equals_rebuild(real_ids):
    """Growing the local tree as the context grows (in uneven steps) gives the same tree and the same drafts as
    building it from scratch on the whole context, and both equal the reference counts."""
    ids = real_ids["code"][:700]
    rng = np.random.default_rng(3)
    for mode in ("tree", "path"):
        inc = SuffixDrafter(max_depth=24, mode=mode)
        inc.reset(ids[:50])
        t = 50
        while t < ids.shape[0]:
            t = min(ids.shape[0], t + int(rng.integers(1, 40)))
            got = inc.propose(ids[:t], 16)
            fresh = SuffixDrafter(max_depth=24, mode=mode)
            want = fresh.propose(ids[:t], 16)
            assert got.tokens.tolist() == want.tokens.tolist()
            assert got.parents.tolist() == want.parents.tolist()
            np.testing.assert_array_equal(got.draft_prob, want.draft_prob)
            if rng.random() < 0.2:
                assert inc.local_tree.counts() == fresh.local_tree.counts() == R.suffix_counts([ids[:t]], 24)
    # a context that is not a continuation rebuilds
    inc.propose(ids[100:200], 8)
    assert inc.local_tree.counts() == R.suffix_counts([ids[100:200]], 24)


@pytest.mark.parametrize("mode", ["tree", "path"])
def test_suffix_speculation_equals_the_reference(real_ids, mode):
    ids = np.concatenate([real_ids["prose"][:500], real_ids["code"][:400]])
    depth = 12
    trie = SuffixTrie(depth)
    trie.extend(ids)
    ref = R.RefTrie([ids], depth)
    rng = np.random.default_rng(4)
    drafted = 0
    for t in range(5, ids.shape[0], 7):
        pattern = ids[max(0, t - depth):t]
        for max_spec, factor, offset, min_prob in ((16, 1.0, 0.0, 0.1), (8, 2.0, 1.0, 0.0), (32, 0.5, 3.0, 0.3)):
            tree = mode == "tree"
            toks, pars, probs, m, score = trie.speculate(pattern, max_spec, factor, offset, min_prob, tree)
            w_toks, w_pars, w_probs, w_m, w_score = ref.speculate(pattern, max_spec, factor, offset, min_prob, tree)
            assert toks.tolist() == w_toks and pars.tolist() == w_pars and m == w_m
            np.testing.assert_allclose(probs, w_probs, rtol=1e-12)
            assert score == pytest.approx(w_score)
            drafted += len(w_toks)
        k = int(rng.integers(1, 6))
        c_toks, c_probs, c_m = trie.candidates(pattern, k)
        w_toks, w_probs, w_m = ref.candidates(pattern, k)
        assert c_toks.tolist() == w_toks and c_m == w_m
        np.testing.assert_allclose(c_probs, w_probs)
    assert drafted > 500


def test_suffix_draft_sizes_follow_match_length_and_caps():
    ctx = np.array([7, 1, 2, 3, 9, 1, 2])
    assert SuffixDrafter(mode="path").propose(ctx, 4).tokens.tolist() == [3, 9]
    assert SuffixDrafter(mode="path").propose(ctx, 1).tokens.tolist() == [3]
    assert SuffixDrafter(mode="path", spec_factor=0.0).propose(ctx, 4).size == 0
    assert SuffixDrafter(mode="path", spec_factor=0.0, spec_offset=1.0).propose(ctx, 4).tokens.tolist() == [3]
    # the trie is max_depth deep: a match of m tokens leaves at most max_depth - m tokens below it
    long_ctx = np.tile(np.arange(10), 8)
    want = R.RefTrie([long_ctx], 64).speculate(long_ctx[-64:], 64, 1.0, 0.0, 0.1, False)[0]
    assert SuffixDrafter(mode="path").propose(long_ctx, 64).tokens.tolist() == want and 20 < len(want) <= 32
    assert SuffixDrafter(mode="path", max_spec_tokens=5).propose(long_ctx, 64).size == 5
    tree = SuffixDrafter(mode="tree", min_token_prob=0.0).propose(np.array([1, 2, 3, 1, 2, 5, 1, 2]), 8)
    assert tree.tokens.tolist() == [3, 5] and tree.parents.tolist() == [-1, -1]
    assert tree.meta["match_len"] == 2 and tree.meta["source"] == "local"


def test_suffix_global_tree_drafts_earlier_outputs():
    d = SuffixDrafter(mode="path")
    output = np.array([40, 41, 42, 43, 44, 45, 46, 47])
    d.reset(np.array([1, 2, 3]))
    d.finish(output)
    assert d.global_tree.counts() == R.suffix_counts([output], 64)
    d.reset(np.array([9, 9, 40, 41]))
    tree = d.propose(np.array([9, 9, 40, 41]), 8)
    assert tree.meta["source"] == "global" and tree.tokens.tolist() == [42, 43]
    assert d.expand(np.array([9, 9, 40, 41]), [np.array([42])], 3)[0][0].tolist() == [43]
    off = SuffixDrafter(mode="path", use_global=False)
    off.finish(output)
    assert off.propose(np.array([9, 9, 40, 41]), 8).size == 0
    d.finish(np.array([], np.int64))  # nothing to add


# -- Token Recycling ----------------------------------------------------------------------------------------------


def test_recycling_template_is_the_official_80_node_depth_6_tree():
    d = RecyclingDrafter(vocab_size=8)
    depth = np.array([len(p) for p in TEMPLATE_222])
    assert len(TEMPLATE_222) == 80 and depth.max() == 6
    assert np.bincount(depth)[1:].tolist() == [8, 21, 25, 15, 8, 3]
    # with every entry known the filled tree has the template's shape
    d.adjacency[:] = np.arange(8)[None, :]
    tree = d.propose(np.array([0]), 100)
    assert tree.size == 80 and tree.max_depth == 6
    assert tree.tokens.tolist() == [p[-1] for p in TEMPLATE_222]  # row r's rank-j entry is j
    assert d.propose(np.array([0]), 10).size == 10
    # the first `budget` template nodes are kept: the shallow ones
    assert d.propose(np.array([0]), 10).depth.tolist() == [1] * 8 + [2, 2]


def test_recycling_adjacency_update_and_fill_equal_the_reference():
    rng = np.random.default_rng(5)
    vocab = 12
    d = RecyclingDrafter(vocab_size=vocab)
    ref = [[-1] * 8 for _ in range(vocab)]
    assert d.propose(np.array([3]), 80).size == 0  # an empty matrix drafts nothing
    for _ in range(40):
        n = int(rng.integers(1, 6))
        fed = rng.integers(0, vocab, n)
        width = int(rng.integers(1, 10))
        top = np.stack([rng.permutation(vocab)[:width] for _ in range(n)])
        d.observe(fed, top)
        R.adjacency_update(ref, fed.tolist(), top.tolist())
        assert d.adjacency.tolist() == ref
        root = int(rng.integers(0, vocab))
        budget = int(rng.integers(1, 90))
        tree = d.propose(np.array([1, root]), budget)
        want_toks, want_pars = R.fill_template(ref, root, TEMPLATE_222, budget)
        assert tree.tokens.tolist() == want_toks and tree.parents.tolist() == want_pars
        np.testing.assert_allclose(tree.draft_prob, d.rank_prior[tree.meta["ranks"]])
        toks, probs = d.expand(np.array([root]), [np.array([], np.int64), np.array([root, 2])], 5)[1]
        row = np.array(ref[2][:5])
        assert toks.tolist() == row[row >= 0].tolist()
        np.testing.assert_allclose(probs, d.rank_prior[:5][row >= 0])


def test_recycling_duplicate_fed_tokens_keep_the_last_row_and_clear_resets():
    d = RecyclingDrafter(vocab_size=10)
    d.observe(np.array([4, 4]), np.array([[1, 2, 3, 4, 5, 6, 7, 8], [9, 8, 7, 6, 5, 4, 3, 2]]))
    assert d.adjacency[4].tolist() == [9, 8, 7, 6, 5, 4, 3, 2]
    d.observe(np.array([4]), np.array([[1, 2]]))
    assert d.adjacency[4].tolist() == [1, 2, -1, -1, -1, -1, -1, -1]
    d.clear()
    assert (d.adjacency == -1).all()
    with pytest.raises(SpeculativeError):
        d.observe(np.array([4, 5]), np.array([[1, 2]]))
    with pytest.raises(SpeculativeError):
        d.observe(np.array([10]), np.array([[1, 2]]))
    with pytest.raises(SpeculativeError):
        d.observe(np.array([1]), np.array([[1, 99]]))
    with pytest.raises(SpeculativeError):
        d.propose(np.array([10]), 4)
    with pytest.raises(SpeculativeError):
        d.expand(np.array([1]), [np.array([10])], 4)


def test_recycling_custom_template_and_rank_prior():
    d = RecyclingDrafter(vocab_size=6, k=2, template=[[0], [1], [0, 0]], rank_prior=[0.6, 0.3])
    d.observe(np.array([0, 1]), np.array([[1, 2], [3, 4]]))
    tree = d.propose(np.array([0]), 8)
    assert tree.tokens.tolist() == [1, 2, 3] and tree.parents.tolist() == [-1, -1, 0]
    np.testing.assert_allclose(tree.draft_prob, [0.6, 0.3, 0.6])


# -- corpus n-grams -----------------------------------------------------------------------------------------------


def test_ngram_counts_equal_a_counter_reference():
    rng = np.random.default_rng(6)
    for _ in range(20):
        ids = rng.integers(-1, 6, int(rng.integers(0, 200)))
        n = int(rng.integers(1, 5))
        table = count_ngrams(ids, n)
        for o in range(1, n + 1):
            assert table.ngram_counts(o) == R.ngram_counts(ids, o)
        for u in range(table.contexts[-1].shape[0]):  # per context: by count desc, then token asc
            lo, hi = table.ptr[-1][u], table.ptr[-1][u + 1]
            pairs = list(zip(-table.counts[-1][lo:hi], table.next_tok[-1][lo:hi]))
            assert pairs == sorted(pairs)


def test_ngram_backoff_and_greedy_chain_equal_the_reference():
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 7, 400)
    ids[rng.integers(0, 400, 10)] = -1
    for n, backoff in ((3, 0.4), (2, 1.0), (4, 0.1), (1, 0.4)):
        d = CorpusNgramDrafter(corpus=ids, n=n, backoff=backoff, num_pred_tokens=6)
        for _ in range(30):
            ctx = rng.integers(0, 9, int(rng.integers(1, 6)))  # tokens 7, 8 never occur: back-off
            path = rng.integers(0, 7, int(rng.integers(0, 3)))
            toks, probs = d.expand(ctx, [path], 4)[0]
            want, want_probs = R.stupid_backoff(ids, n, list(ctx) + list(path), 4, backoff)
            assert toks.tolist() == want
            np.testing.assert_allclose(probs, want_probs, rtol=1e-6)
            chain, seq = [], list(ctx)
            for _ in range(6):
                top, _ = R.stupid_backoff(ids, n, seq, 1, backoff)
                chain.append(top[0])
                seq.append(top[0])
            assert d.propose(ctx, 64).tokens.tolist() == chain
            assert d.propose(ctx, 2).tokens.tolist() == chain[:2]


def test_corpus_ngram_counts_a_real_file_with_the_smollm2_tokenizer(tmp_path, monkeypatch):
    text_a = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
    text_b = "It is a truth universally acknowledged, that a single man in possession of a good fortune."
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.py").write_text(text_a)
    (tmp_path / "corpus" / "b.txt").write_text(text_b)
    tok = CN._default_tokenizer()
    docs = [np.asarray(tok.encode(text_a), np.int64), np.asarray(tok.encode(text_b), np.int64)]
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(CN, "SAVE_AFTER_S", -1.0)  # always save, to test the disk cache
    d = CorpusNgramDrafter(corpus=tmp_path / "corpus", n=3)
    table = d.table
    for o in (1, 2, 3):
        want = R.ngram_counts(list(docs[0]) + [-1] + list(docs[1]), o)
        assert table.ngram_counts(o) == want
    saved = list((tmp_path / "cache" / "speculative").glob("ngram-*.npz"))
    assert len(saved) == 1
    CN._TABLES.clear()
    loaded = CorpusNgramDrafter(corpus=tmp_path / "corpus", n=3).table
    for o in (1, 2, 3):
        assert loaded.ngram_counts(o) == table.ngram_counts(o)
    ctx = np.asarray(tok.encode("def add(a, b):\n    return"), np.int64)
    assert tok.decode(d.propose(ctx, 3).tokens.tolist()) in (" a + b", " a - b")
    # a corrupt cache file is recounted, not trusted
    saved[0].write_bytes(b"not an npz")
    CN._TABLES.clear()
    assert CorpusNgramDrafter(corpus=tmp_path / "corpus", n=3).table.ngram_counts(3) == table.ngram_counts(3)
    # a custom tokenizer is used as given (and never cached on disk)

    class Bytes:
        def encode(self, text):
            return list(text.encode())

    t2 = CorpusNgramDrafter(corpus=tmp_path / "corpus" / "b.txt", n=2, tokenizer=Bytes()).table
    assert t2.ngram_counts(1) == R.ngram_counts(list(text_b.encode()), 1)


def test_corpus_ngram_on_a_shipped_corpus_drafts_plausible_code():
    d = make_drafter("corpus_ngram", corpus="code", n=3).warm()
    tok = CN._default_tokenizer()
    assert d.table.n_tokens > 50_000
    ctx = np.asarray(tok.encode("import sys\n\n\ndef main():\n    for i in"), np.int64)
    tree = d.propose(ctx, 4)
    assert tree.size == 4 and (tree.draft_prob > 0).all()
    toks, probs = d.expand(ctx, [np.zeros(0, np.int64)], 8)[0]
    assert toks.shape[0] == 8 and (np.diff(probs) <= 0).all()
    assert " range" in [tok.decode([int(t)]) for t in toks]


def test_kernels_warm_up():
    from workbench.speculative.drafters.kernels import warm_up

    warm_up()  # compiles or loads every kernel; must not raise
