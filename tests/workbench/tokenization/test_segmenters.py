"""Encoders over one vocabulary (segmenters.py): each Numba kernel against a small pure-Python reference, on
hypothesis texts and real corpora, plus the invariants every method shares."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.workbench.tokenization.conftest import TORTURE
from workbench.errors import ConfigurationError, TokenizerError
from workbench.tokenization import Tokenizer, split_bytes, train_bpe
from workbench.tokenization.segmenters import (
    METHODS,
    compare_encoders,
    encode_bytes_with,
    encode_with,
    kept_merges,
    shuffled_tokenizer,
    token_ranks,
)


# -- pure-Python references ----------------------------------------------------------------------------------------
def ref_vocab(tok: Tokenizer) -> dict[bytes, int]:
    """Ordinary token bytes -> id (the first id of a repeated spelling)."""
    out: dict[bytes, int] = {}
    for i, t in sorted(tok.vocab.items()):
        if i not in tok.special_tokens.values():
            out.setdefault(t, i)
    return out


def ref_pieces(tok: Tokenizer, data: bytes) -> list[bytes]:
    """The tokenizer's pieces, with bytes that have no token removed (as its encoder drops them)."""
    bounds = split_bytes(data, tok.pretokenizer).tolist()
    missing = set(tok.missing_bytes)
    return [bytes(b for b in data[s:e] if b not in missing) for s, e in zip(bounds, bounds[1:])]


def ref_greedy(piece: bytes, vocab: dict[bytes, int]) -> list[int]:
    """Longest prefix that is a token, left to right."""
    out, i = [], 0
    while i < len(piece):
        length = next(n for n in range(len(piece) - i, 0, -1) if piece[i:i + n] in vocab)
        out.append(vocab[piece[i:i + length]])
        i += length
    return out


def ref_optimal(piece: bytes, vocab: dict[bytes, int]) -> list[int]:
    """Fewest tokens; among those, the longest first token, then the longest second, ..."""
    n = len(piece)
    best: list[tuple[int, ...] | None] = [None] * (n + 1)  # best[i]: token lengths of the best split of piece[i:]
    best[n] = ()
    for i in range(n - 1, -1, -1):
        options = [(length,) + best[i + length] for length in range(1, n - i + 1) if piece[i:i + length] in vocab]
        best[i] = min(options, key=lambda lens: (len(lens), [-x for x in lens]))
    out, i = [], 0
    for length in best[0]:
        out.append(vocab[piece[i:i + length]])
        i += length
    return out


def ref_lbpe(piece: bytes, vocab: dict[bytes, int], rank: np.ndarray) -> list[int]:
    """LBPE: the longest token occurring in the piece (ties: lowest rank, then leftmost), cut around it, recurse."""
    for length in range(len(piece), 1, -1):
        found = [(rank[vocab[piece[i:i + length]]], i) for i in range(len(piece) - length + 1)
                 if piece[i:i + length] in vocab]
        if found:
            _, i = min(found)
            return (ref_lbpe(piece[:i], vocab, rank) + [vocab[piece[i:i + length]]]
                    + ref_lbpe(piece[i + length:], vocab, rank))
    return [vocab[bytes([b])] for b in piece]


_TABLES: dict[int, tuple] = {}


def reference(tok: Tokenizer, text: str, method: str) -> list[int]:
    if id(tok) not in _TABLES:
        _TABLES[id(tok)] = (tok, ref_vocab(tok), token_ranks(tok))  # keeps tok alive, so the id stays its own
    _, vocab, rank = _TABLES[id(tok)]
    out: list[int] = []
    for piece in ref_pieces(tok, text.encode("utf-8")):
        if method == "greedy":
            out += ref_greedy(piece, vocab)
        elif method == "optimal":
            out += ref_optimal(piece, vocab)
        else:
            out += ref_lbpe(piece, vocab, rank)
    return out


# -- fixtures ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(prose):
    return train_bpe(prose, 8000)


@pytest.fixture(scope="module")
def small(prose):
    return train_bpe(prose[:100_000], 600)


@pytest.fixture(scope="module")
def holey(small):
    """A tokenizer with bytes 0x00-0x08 and 'q' missing (no token of their own), like SmolLM2's 21 missing bytes."""
    gone = {small.token_to_id(bytes([b])) for b in [*range(9), ord("q")]}
    triples = [m for m in small.merge_triples.tolist() if not gone & set(m)]
    tokens = [None if i in gone else small.id_to_token(i) for i in range(small.n_vocab)]
    return Tokenizer(tokens, triples, name="holey")


def toy(merges: list[tuple[bytes, bytes]]) -> Tokenizer:
    """Bytes 0-255 as ids 0-255, then one token per merge, in order."""
    tokens = [bytes([b]) for b in range(256)]
    index = {t: i for i, t in enumerate(tokens)}
    triples = []
    for a, b in merges:
        index.setdefault(a + b, len(tokens))
        if index[a + b] == len(tokens):
            tokens.append(a + b)
        triples.append((index[a], index[b], index[a + b]))
    return Tokenizer(tokens, triples, name="toy")


TEXTS = st.one_of(
    st.lists(st.sampled_from(list("etaoinshrdlucmfw  ,.'\nTHEé中文😀") + ["the", " and", "ing", "tion"]),
             max_size=80).map("".join),
    st.lists(st.sampled_from(["the", " and", "ing", " of", "ed", " Elizabeth", "ly", "er", " ", "  ", "\n"]),
             max_size=30).map("".join),
    st.text(max_size=40),
)
KERNELS = ("lbpe", "greedy", "optimal")


# -- worked examples -----------------------------------------------------------------------------------------------
def test_methods_differ_on_a_toy_vocabulary():
    # merges in order: ab, bc, de, bcde. BPE makes "ab" first, which blocks "bcde".
    tok = toy([(b"a", b"b"), (b"b", b"c"), (b"d", b"e"), (b"bc", b"de")])
    spell = {m: [tok.id_to_token(i) for i in encode_with(tok, "abcde", m)] for m in ("bpe", "greedy", "lbpe", "optimal")}
    assert spell["bpe"] == [b"ab", b"c", b"de"]
    assert spell["greedy"] == [b"ab", b"c", b"de"]        # longest prefix "ab", then "c", then "de"
    assert spell["lbpe"] == [b"a", b"bcde"]               # longest token anywhere first
    assert spell["optimal"] == [b"a", b"bcde"]


def test_lbpe_ties_go_to_the_lower_rank_then_leftmost():
    first_ab = toy([(b"a", b"b"), (b"b", b"c")])
    first_bc = toy([(b"b", b"c"), (b"a", b"b")])
    assert [first_ab.id_to_token(i) for i in encode_with(first_ab, "abc", "lbpe")] == [b"ab", b"c"]
    assert [first_bc.id_to_token(i) for i in encode_with(first_bc, "abc", "lbpe")] == [b"a", b"bc"]
    tok = toy([(b"x", b"y")])
    assert [tok.id_to_token(i) for i in encode_with(tok, "xyx", "lbpe")] == [b"xy", b"x"]


def test_optimal_ties_prefer_the_longest_first_token():
    tok = toy([(b"b", b"c"), (b"a", b"b")])              # "abc": [ab, c] and [a, bc] both take two tokens
    assert [tok.id_to_token(i) for i in encode_with(tok, "abc", "optimal")] == [b"ab", b"c"]


# -- kernels against references ------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(TEXTS)
def test_kernels_match_references_on_generated_text(gpt2, small, text):
    for tok in (gpt2, small):
        for method in KERNELS:
            assert encode_with(tok, text, method) == reference(tok, text, method), (tok.name, method, text)


def test_kernels_match_references_on_real_corpora(gpt2, trained, prose, parallel_docs):
    texts = [prose[:30_000], *TORTURE, *(doc[:4000] for doc in parallel_docs[::4])]
    for tok in (gpt2, trained):
        for text in texts:
            for method in KERNELS:
                assert encode_with(tok, text, method) == reference(tok, text, method), (tok.name, method, text[:40])


def test_kernels_drop_missing_bytes_like_the_tokenizer(holey):
    text = "quick \x00\x01quiet\x08 queue q. plain text"
    kept = "".join(c for c in text if c not in "\x00\x01\x08q")
    assert holey.missing_bytes == bytes([*range(9), ord("q")])
    assert holey.decode(holey.encode(text)) == kept
    for method in METHODS:
        ids = encode_with(holey, text, method, keep=0.5)
        assert holey.decode(ids) == kept, method
    for method in KERNELS:
        assert encode_with(holey, text, method) == reference(holey, text, method)


# -- invariants of every method ------------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(TEXTS)
def test_every_method_round_trips_and_optimal_is_fewest(gpt2, small, text):
    for tok in (gpt2, small):
        counts = {}
        for method in METHODS:
            ids = encode_with(tok, text, method, seed=3, keep=0.3)
            assert tok.decode(ids) == text, (tok.name, method)
            counts[method] = len(ids)
        assert counts["optimal"] == min(counts.values()), (tok.name, counts)


def test_optimal_is_fewest_on_real_corpora(gpt2, trained, prose, code_docs, parallel_docs):
    texts = {"prose": prose[:100_000], "code": code_docs[0], **{f"doc{i}": d for i, d in enumerate(parallel_docs[::3])}}
    for tok in (gpt2, trained):
        for row_text in texts.values():
            counts = {m: len(encode_with(tok, row_text, m, seed=1, keep=0.5)) for m in METHODS}
            assert counts["optimal"] == min(counts.values()), (tok.name, counts)


def test_bytes_variant_round_trips_invalid_utf8(gpt2, trained):
    data = b"caf\xc3 \xff\xfe ok \xe2\x82 done" + bytes(range(256))
    for tok in (gpt2, trained):
        for method in METHODS:
            assert tok.decode_bytes(encode_bytes_with(tok, data, method, keep=0.5)) == data, method


def test_special_tokens_are_never_produced(gpt2):
    text = "a <|endoftext|> b<|endoftext|>"
    for method in METHODS:
        ids = encode_with(gpt2, text, method)
        assert 50256 not in ids and gpt2.decode(ids) == text, method


def test_empty_text(gpt2):
    assert all(encode_with(gpt2, "", m) == [] for m in METHODS)


# -- shuffled and truncated merge lists ----------------------------------------------------------------------------
def test_shuffled_differs_from_bpe_and_compresses_worse(trained, prose):
    text = prose[:100_000]
    bpe = encode_with(trained, text, "bpe")
    shuffled = encode_with(trained, text, "shuffled", seed=0)
    assert shuffled != bpe
    assert len(text) / len(shuffled) < 0.8 * len(text) / len(bpe)   # bytes per token clearly worse (ASCII prose)
    assert encode_with(trained, text, "shuffled", seed=1) != shuffled
    assert shuffled_tokenizer(trained, 0) is shuffled_tokenizer(trained, 0)  # cached per (tokenizer, seed)
    perm = shuffled_tokenizer(trained, 0)
    assert perm.semantics == "merges" and sorted(map(tuple, perm.merge_triples.tolist())) == sorted(
        map(tuple, trained.merge_list.tolist()))


def test_truncated(gpt2, trained, prose):
    text = prose[:20_000]
    for tok in (gpt2, trained):
        assert encode_with(tok, text, "truncated", keep=1.0) == encode_with(tok, text, "bpe")
        assert encode_with(tok, text, "truncated", keep=len(tok.merge_list) + 5) == tok.encode(text)
        assert len(encode_with(tok, text, "truncated", keep=0.0)) == len(text.encode())  # single bytes
        k = kept_merges(tok, 0.25)
        assert k == round(0.25 * len(tok.merge_list))
        assert encode_with(tok, text, "truncated", keep=0.25) == tok.encode(text, max_merges=k)
        assert encode_with(tok, text, "truncated", keep=100) == tok.encode(text, max_merges=100)


# -- errors and the comparison table -------------------------------------------------------------------------------
def test_bad_arguments(gpt2):
    with pytest.raises(ConfigurationError) as err:
        encode_with(gpt2, "x", "bpe-dropout")
    assert all(m in str(err.value) for m in METHODS)
    with pytest.raises(ConfigurationError):
        encode_with(gpt2, "x", "truncated", keep=1.5)
    with pytest.raises(ConfigurationError):
        encode_with(gpt2, "x", "truncated", keep=-1)
    with pytest.raises(ConfigurationError):
        encode_with(gpt2, "x", "shuffled", seed=-2)
    with pytest.raises(TokenizerError):
        encode_with(gpt2, b"x", "greedy")
    with pytest.raises(TokenizerError):
        encode_with("gpt2", "x", "greedy")
    with pytest.raises(ConfigurationError):
        compare_encoders(gpt2, ["x"])


def test_compare_encoders(gpt2, prose, parallel_docs):
    texts = {"prose": prose[:20_000], "other": parallel_docs[0][:3000]}
    rows = compare_encoders(gpt2, texts)
    assert [(r.text, r.method) for r in rows] == [(t, m) for t in texts for m in METHODS]
    for name in texts:
        mine = {r.method: r for r in rows if r.text == name}
        assert mine["bpe"].vs_bpe == 1.0
        assert mine["optimal"].n_tokens == min(r.n_tokens for r in mine.values())
        assert mine["truncated"].setting == "keep=0.5" and mine["shuffled"].setting == "seed=0"
        for r in mine.values():
            assert r.n_bytes == len(texts[name].encode()) and r.bytes_per_token == pytest.approx(r.n_bytes / r.n_tokens)
    assert len(compare_encoders(gpt2, texts, ("greedy",))) == 2


def test_piece_cache_refills_without_changing_results(gpt2, prose):
    from workbench.tokenization.encoder import new_piece_cache
    from workbench.tokenization.segmenters import vocab_index, warm_up

    warm_up()
    text = prose[:20_000]
    index = vocab_index(gpt2)
    for method in KERNELS:
        index.caches[method] = new_piece_cache(16, 64)  # tiny: full after a few pieces, then starts afresh
        first = encode_with(gpt2, text, method)
        assert first == encode_with(gpt2, text, method) == reference(gpt2, text, method)
        del index.caches[method]
