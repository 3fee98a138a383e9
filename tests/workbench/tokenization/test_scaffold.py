"""Scaffold-BPE (scaffold.py): scaffold tokens really are built often and emitted rarely, encoding never emits them
and stays lossless, and training matches a slow pure-Python Scaffold-BPE trainer."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.workbench.tokenization.conftest import TORTURE
from workbench.errors import ConfigurationError, TokenizerError, TrainingError
from workbench.tokenization import split_bytes, train_bpe
from workbench.tokenization.bytelevel import BYTE_ORDER, BYTE_RANK
from workbench.tokenization.scaffold import (
    ScaffoldTokenizer,
    demolish_kernel,
    find_scaffold_tokens,
    merge_parents,
    scaffold_encode,
    token_usage,
    train_scaffold_bpe,
)


# -- pure-Python references ----------------------------------------------------------------------------------------
def reference_demolish(tok, ids: list[int], scaffold: set[int]) -> list[int]:
    """Replace each scaffold token by the two tokens of the merge that made it, recursively."""
    parents = {}
    for a, b, c in tok.merge_list.tolist():
        parents.setdefault(c, (a, b))

    def expand(t):
        return expand(parents[t][0]) + expand(parents[t][1]) if t in scaffold else [t]

    return [x for t in ids for x in expand(t)]


def reference_scaffold_train(text: str, target: int) -> tuple[list[tuple[bytes, bytes]], set[bytes]]:
    """Scaffold-BPE the slow, obvious way: recount pairs and token frequencies after every merge.

    A priority queue holds the pairs (by count) and the scaffold tokens (by their own frequency). Popping a pair
    merges it (ties: HF's order, the smaller ids), then each of its two tokens (not a single byte) whose frequency is
    below the new head pair's count becomes scaffold; popping a scaffold token puts it back in the vocabulary. Stop at
    ``target`` non-scaffold tokens."""
    data = text.encode("utf-8")
    bounds = split_bytes(data, "gpt2").tolist()
    tokens = [bytes([b]) for b in BYTE_ORDER]
    index = {t: i for i, t in enumerate(tokens)}
    words = Counter(tuple(int(BYTE_RANK[b]) for b in data[s:e]) for s, e in zip(bounds, bounds[1:]))
    scaffold: set[int] = set()
    merges = []

    def frequencies():
        freq, pairs = Counter(), Counter()
        for word, count in words.items():
            for t in word:
                freq[t] += count
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        return freq, pairs

    freq, pairs = frequencies()
    while len(tokens) - len(scaffold) < target:
        head = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1])) if pairs else None
        if scaffold:
            s = max(scaffold, key=lambda t: (freq[t], -t))
            if head is None or freq[s] >= head[1]:
                scaffold.discard(s)
                continue
        if head is None:
            break
        (a, b), _ = head
        new = index.setdefault(tokens[a] + tokens[b], len(tokens))
        if new == len(tokens):
            tokens.append(tokens[a] + tokens[b])
        merges.append((tokens[a], tokens[b]))
        merged = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == (a, b):
                    out.append(new)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
        freq, pairs = frequencies()
        head_count = max(pairs.values()) if pairs else 0
        for x in (a, b):
            if len(tokens[x]) >= 2 and freq[x] < head_count:
                scaffold.add(x)
    return merges, {tokens[t] for t in scaffold}


# -- fixtures ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(prose):
    return train_bpe(prose, 8000)


@pytest.fixture(scope="module")
def report(trained, prose):
    return find_scaffold_tokens(trained, prose)


@pytest.fixture(scope="module")
def scaffold_trained(prose):
    return train_scaffold_bpe(prose, 8000)


# -- counting --------------------------------------------------------------------------------------------------------
def test_formed_counts_are_the_merge_time_counts(trained, prose):
    usage = token_usage(trained, prose)
    a, b, made = trained.merge_list.T
    formed = usage.formed[made]
    distinct = a != b  # pairs of one token repeated ("--") overlap: the trainer counts "---" as two pairs
    assert np.array_equal(formed[distinct], trained.merge_counts[distinct])
    assert (formed[~distinct] <= trained.merge_counts[~distinct]).all()
    assert (usage.formed >= usage.final).all() and usage.n_tokens == len(trained.encode(prose))
    assert usage.formed[:256].sum() == len(prose.encode())  # every byte is built once, as itself


# -- the defining property -------------------------------------------------------------------------------------------
def test_scaffold_tokens_are_built_often_but_rarely_emitted(trained, report):
    assert len(report) > 100
    assert (report.formed >= 10).all() and (report.final < 0.1 * report.formed).all()
    tokens = set(report.tokens)
    # intermediates of frequent words: built thousands of times, kept a few percent of the time
    assert {b"ing", b"he", b" t", b"nd", b"ould"} <= tokens
    assert b"Eliz" in tokens and b" Elizabeth" not in tokens
    row = report.rows(None)[report.tokens.index(b"ing")]
    assert row["formed"] > 3000 and row["final"] < 0.05 * row["formed"] and row["merge_count"] == row["formed"]
    # each was consumed: it is a parent of a longer merged token
    parents = set(trained.merge_list[:, :2].ravel().tolist())
    assert set(report.ids.tolist()) <= parents
    # ... and the rest of the vocabulary is emitted far more often, relative to how often it is built
    usage = report.usage
    others = np.setdiff1d(np.flatnonzero(usage.formed >= 10), report.ids)
    others = others[trained._tok_len[others] >= 2]
    assert np.median(report.survival) < 0.05 < np.median(usage.final[others] / usage.formed[others])


def test_paper_criterion_is_below_the_last_merge_count(trained, prose):
    paper = find_scaffold_tokens(trained, prose, criterion="paper")
    assert paper.threshold == trained.merge_counts[-1]
    final = np.bincount(trained.encode(prose), minlength=trained.n_vocab)
    merged = np.unique(trained.merge_list[:, 2])
    expected = merged[final[merged] < paper.threshold]
    assert np.array_equal(np.sort(paper.ids), expected)
    assert {b"Eliz", b"abeth", b"arcy", b"ennet", b"ingley", b"ickham"} <= set(paper.tokens)
    explicit = find_scaffold_tokens(trained, prose, criterion="paper", threshold=50)
    assert len(explicit) > len(paper) and (explicit.final < 50).all()


def test_loaded_tokenizer_without_merge_counts(gpt2, prose):
    report = find_scaffold_tokens(gpt2, prose[:200_000])
    assert len(report) > 100 and (report.merge_counts == -1).all()
    assert (report.final < 0.1 * report.formed).all()
    with pytest.raises(ConfigurationError, match="threshold"):
        find_scaffold_tokens(gpt2, prose[:1000], criterion="paper")


# -- encoding without scaffold tokens --------------------------------------------------------------------------------
def test_scaffold_encoding_never_emits_scaffold_and_round_trips(trained, report, prose, parallel_docs):
    sc = ScaffoldTokenizer(trained, report.ids, report=report)
    assert sc.n_usable == trained.n_vocab - len(report)
    for text in [prose, *TORTURE, *parallel_docs[:6]]:
        ids = sc.encode(text)
        assert not sc.is_scaffold[ids].any()
        assert sc.decode(ids) == text
        plain = trained.encode(text)
        assert ids == reference_demolish(trained, plain, set(report.ids.tolist()))
        assert len(ids) >= len(plain)
    assert scaffold_encode(trained, "Elizabeth Bennet", report.ids) == sc.encode("Elizabeth Bennet")
    assert (sc.compact_ids[sc.usable_ids] == np.arange(sc.n_usable)).all() and (sc.compact_ids[report.ids] == -1).all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60) | st.lists(st.sampled_from(["Eliz", "abeth", "ing", " the", "nd", " ", "x"])).map("".join))
def test_scaffold_encoding_round_trips_any_text(trained, report, gpt2, text):
    for tok, ids in ((trained, report.ids), (gpt2, np.array([258, 256, 259, 280]))):  # gpt2: 'he', ' t', 'in', 'ou'
        out = scaffold_encode(tok, text, ids)
        assert tok.decode(out) == text and not np.isin(out, ids).any()


def test_demolition_is_recursive(trained):
    left, right = merge_parents(trained)
    eliz = trained.token_to_id(b"Elizabeth")
    chain = [eliz]
    while left[chain[-1]] >= 0 and trained._tok_len[left[chain[-1]]] >= 2:
        chain.append(left[chain[-1]])  # Elizabeth <- Eliz... <- ... every left ancestor
    scaffold = np.zeros(trained.n_vocab, np.bool_)
    scaffold[chain] = True
    out = demolish_kernel(np.array([eliz], np.int64), scaffold, left, right, trained._tok_len)
    assert not scaffold[out].any() and trained.decode(out.tolist()) == "Elizabeth" and len(out) > 2


def test_bad_scaffold_sets(trained, prose):
    with pytest.raises(TokenizerError, match="cannot be a scaffold"):
        ScaffoldTokenizer(trained, [trained.token_to_id(b"e")])
    with pytest.raises(TokenizerError, match="outside"):
        ScaffoldTokenizer(trained, [10**6])
    with pytest.raises(ConfigurationError, match="ratio, paper"):
        find_scaffold_tokens(trained, prose[:100], criterion="freq")
    with pytest.raises(ConfigurationError):
        find_scaffold_tokens(trained, prose[:100], ratio=2.0)
    with pytest.raises(ConfigurationError):
        find_scaffold_tokens(trained, prose[:100], threshold=5)


# -- training --------------------------------------------------------------------------------------------------------
def test_trained_variant_has_vocab_size_usable_tokens(scaffold_trained, prose):
    sc = scaffold_trained
    assert sc.n_usable == 8000 and sc.training.stopped_because == "vocab_size reached"
    assert sc.n_vocab == 8000 + len(sc.scaffold_ids) and sc.training.merges == sc.n_vocab - 256
    ids = sc.encode(prose)
    assert sc.decode(ids) == prose and not sc.is_scaffold[ids].any()
    # scaffold tokens: what BPE builds but (nearly) never emits on the training corpus
    usage = token_usage(sc.tokenizer, prose)
    assert (usage.final[sc.scaffold_ids] < sc.training.threshold).all()
    assert {b"Eliz", b"abeth"} <= {sc.id_to_token(int(i)) for i in sc.scaffold_ids}
    # the merges are plain BPE's, run further
    longer = train_bpe(prose, sc.n_vocab)
    assert np.array_equal(longer.merge_triples, sc.tokenizer.merge_triples)


@pytest.mark.parametrize("chars, target", [(3000, 400), (20_000, 700)])
def test_training_matches_the_reference_trainer(prose, chars, target):
    merges, scaffold = reference_scaffold_train(prose[:chars], target)
    sc = train_scaffold_bpe(prose[:chars], target, lookahead=4)  # small lookahead: several plain BPE runs
    assert sc.tokenizer.merges == merges
    assert {sc.id_to_token(int(i)) for i in sc.scaffold_ids} == scaffold and len(scaffold) > 5
    assert sc.n_usable == target and sc.training.bpe_runs > 1


def test_training_small_corpora_and_special_tokens():
    text = "low lower lowest newer newest widest " * 5
    merges, scaffold = reference_scaffold_train(text, 280)
    sc = train_scaffold_bpe(text, 280)  # runs out of pairs first
    assert sc.tokenizer.merges == merges and not scaffold and not len(sc.scaffold_ids)
    assert sc.n_usable < 280 and "no pairs left" in sc.training.stopped_because
    sc = train_scaffold_bpe(text, 270, special_tokens=["<|end|>"])
    assert sc.n_usable == 270 and sc.tokenizer.special_tokens == {"<|end|>": sc.n_vocab - 1}
    with pytest.raises(TrainingError):
        train_scaffold_bpe(text, 100)
