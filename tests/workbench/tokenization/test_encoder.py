import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.workbench.tokenization.conftest import TORTURE
from tests.workbench.tokenization.reference import reference_bpe
from workbench.errors import TokenizerError
from workbench.tokenization import train_bpe
from workbench.tokenization.pretokenize import PATTERNS


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    from workbench.tokenization.io import gpt2_files

    encoder_json, vocab_bpe = gpt2_files()
    ranks = data_gym_to_mergeable_bpe_ranks(str(vocab_bpe), str(encoder_json))
    return tiktoken.Encoding("gpt2", pat_str=PATTERNS["gpt2"], mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


@pytest.fixture(scope="module")
def hf_smollm2():
    """SmolLM2's tokenizer as Hugging Face tokenizers runs it: transformers' own GGUF conversion, with the published
    pre-tokenizer (digits one by one, then ByteLevel), which that conversion leaves out."""
    pytest.importorskip("tokenizers")
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    from workbench.models import default_gguf_path

    gguf = default_gguf_path()
    backend = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).backend_tokenizer
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    return backend


def corpus_texts(prose, code_docs, parallel_docs):
    return [prose[:200000], *code_docs, *parallel_docs]


def test_gpt2_ids_identical_to_tiktoken(gpt2, tiktoken_gpt2, prose, code_docs, parallel_docs):
    for text in TORTURE + corpus_texts(prose, code_docs, parallel_docs):
        assert gpt2.encode(text) == tiktoken_gpt2.encode_ordinary(text), text[:60]


def test_gpt2_invalid_bytes_identical_to_tiktoken(gpt2, tiktoken_gpt2):
    for data in (b"\xff\xfe", b"caf\xc3", b"\xe2\x82 x", b"ok \xc3\xa9 \x80\x80 ok", bytes(range(256))):
        assert gpt2.encode_bytes(data) == tiktoken_gpt2._encode_bytes(data)


def test_smollm2_ids_identical_to_hf_tokenizers(smollm2, hf_smollm2, prose, code_docs, parallel_docs):
    for text in TORTURE + corpus_texts(prose, code_docs, parallel_docs):
        assert smollm2.encode(text, allowed_special="all") == hf_smollm2.encode(text, add_special_tokens=False).ids, text[:60]


def test_smollm2_splits_digits_one_by_one(smollm2):
    ids = smollm2.encode("2024")
    assert len(ids) == 4 and smollm2.decode(ids) == "2024"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_round_trip_arbitrary_text(gpt2, smollm2, text):
    assert gpt2.decode(gpt2.encode(text)) == text
    if not set(text.encode("utf-8", "surrogatepass")) & set(smollm2.missing_bytes):
        assert smollm2.decode(smollm2.encode(text)) == text


def test_bytes_without_a_token_are_dropped_like_hf(smollm2, hf_smollm2):
    assert smollm2.missing_bytes == bytes([4, 6, 19, 20, 22, 29, 192, 193, *range(241, 243), *range(245, 256)])
    for text in ("a\x04b", ".\x06.", "x\x1d\x1dy", "\x13"):
        assert smollm2.encode(text) == hf_smollm2.encode(text, add_special_tokens=False).ids
    enc = smollm2.encode_with_offsets("ab\x04cd")
    assert smollm2.decode(enc.ids) == "abcd" and enc.byte_spans[-1][1] == 5


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_round_trip_arbitrary_bytes(gpt2, data):
    assert gpt2.decode_bytes(gpt2.encode_bytes(data)) == data


@pytest.fixture(scope="module")
def trained(prose):
    return train_bpe(prose[:200000], 2000)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdefghij ,.'\nthe", max_size=120))
def test_kernel_matches_reference_bpe(trained, text):
    priority = {(a, b): i for i, (a, b) in enumerate(trained.merges)}
    expected = []
    for piece in trained.pieces(text):
        expected += reference_bpe(piece.encode(), priority)
    assert [trained.id_to_token(i) for i in trained.encode(text)] == expected


def test_long_pieces_use_the_heap_path_and_agree_with_the_short_path(trained, gpt2, tiktoken_gpt2):
    for text in ("ab" * 5000, "the" * 3000, "x" * 100_001, "é" * 20000):
        assert gpt2.encode(text) == tiktoken_gpt2.encode_ordinary(text)
    priority = {(a, b): i for i, (a, b) in enumerate(trained.merges)}
    piece = ("thethe andand " * 10).replace(" ", "")
    assert [trained.id_to_token(i) for i in trained.encode(piece)] == reference_bpe(piece.encode(), priority)


def test_one_megabyte_without_split_points(gpt2):
    text = "a" * 1_000_000
    ids = gpt2.encode(text)
    assert gpt2.decode(ids) == text
    assert len(ids) < 300_000


def test_offsets(gpt2):
    text = "héllo wörld 👍🏽!"
    enc = gpt2.encode_with_offsets(text)
    assert enc.ids == gpt2.encode(text)
    data = text.encode()
    assert b"".join(data[s:e] for s, e in enc.byte_spans) == data
    assert enc.byte_spans[0][0] == 0 and enc.byte_spans[-1][1] == len(data)
    for (s, e), tid in zip(enc.byte_spans, enc.ids):
        assert data[s:e] == gpt2.id_to_token(tid)
    for s, e in enc.char_spans:
        assert 0 <= s < e <= len(text)
    # tokens that split the emoji all point at whole characters
    assert "👍" in "".join(text[s:e] for s, e in enc.char_spans)


def test_special_tokens(gpt2):
    text = "a<|endoftext|>b"
    assert 50256 not in gpt2.encode(text)
    assert gpt2.encode(text, allowed_special="all") == [64, 50256, 65]
    assert gpt2.encode(text, allowed_special={"<|endoftext|>"}) == [64, 50256, 65]
    with pytest.raises(TokenizerError, match="Unknown special"):
        gpt2.encode(text, allowed_special={"<|nope|>"})


def test_bad_ids_and_types(gpt2):
    with pytest.raises(TokenizerError, match="Token id 50257 at position 1"):
        gpt2.decode([1, 50257])
    with pytest.raises(TokenizerError, match="Token id -1"):
        gpt2.decode([-1])
    with pytest.raises(TokenizerError, match="integers"):
        gpt2.decode(["x"])
    with pytest.raises(TokenizerError, match="takes a str"):
        gpt2.encode(b"bytes")
    assert gpt2.decode([]) == "" and gpt2.encode("") == []


def test_vocab_and_merges_views(gpt2, smollm2):
    assert len(gpt2) == 50257 and gpt2.vocab[50256] == b"<|endoftext|>"
    assert gpt2.merges[0] == (b" ", b"t")
    assert len(smollm2.merges) == 48900 and smollm2.merges[0] == (b" ", b"t")
    assert smollm2.n_vocab == 49152
    assert np.all(gpt2.merge_triples[:, 2] >= 256)
