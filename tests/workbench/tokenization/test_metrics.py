import math
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.workbench.tokenization.conftest import TORTURE
from workbench.data import parallel_texts
from workbench.errors import ConfigurationError, TokenizerError, WorkbenchError
from workbench.tokenization import load_tokenizer, train_bpe
from workbench.tokenization.metrics import (
    METRICS,
    MetricTable,
    count_words,
    metric_table,
    renyi_efficiency,
    renyi_entropy,
    text_metrics,
    token_premium,
    unigram_entropy,
    word_spans,
)


@cache
def gpt2():
    return load_tokenizer("gpt2")


@cache
def smollm2():
    return load_tokenizer("smollm2")


@cache
def bytes_only():
    return train_bpe("anything", vocab_size=256)  # no merges: one token per byte


@cache
def toy():
    return train_bpe(["the cat sat on the mat, the end."] * 20 + ["héllo wörld ça va"] * 5, vocab_size=300)


def reference_metrics(tok, text: str, alpha: float = 2.5) -> dict:
    """The slow obvious way, from encode_with_offsets and Python loops over bytes and characters."""
    data = text.encode("utf-8")
    enc = tok.encode_with_offsets(text)
    ids, spans = enc.ids, enc.byte_spans
    starts_char = {len(text[:i].encode("utf-8")) for i in range(len(text) + 1)}  # byte offsets of char boundaries
    inside = lambda b: b not in starts_char  # noqa: E731
    split_tokens = sum(1 for s, e in spans if inside(s) or inside(e))
    cut_chars = set()
    for s, e in spans:
        for b in (s, e):
            if inside(b):
                cut_chars.add(len(data[:b].decode("utf-8", "ignore")))
    counts = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    p = [c / len(ids) for c in counts.values()]
    shannon = -sum(q * math.log2(q) for q in p)
    renyi = math.log2(sum(q ** alpha for q in p)) / (1 - alpha)
    # words as byte spans; a word token overlaps a word, a continuation starts strictly inside one
    words = [(len(text[:s].encode()), len(text[:e].encode())) for s, e in word_spans(text).tolist()]
    word_tokens = [(s, e) for s, e in spans if any(ws < e and s < we for ws, we in words)]
    cont = [(s, e) for s, e in word_tokens if any(ws < s < we for ws, we in words)]
    return {
        "n_bytes": len(data), "n_chars": len(text), "n_words": len(words), "n_tokens": len(ids),
        "bytes_per_token": len(data) / len(ids), "chars_per_token": len(text) / len(ids),
        "entropy": shannon, "renyi_entropy": renyi, "renyi_efficiency": renyi / math.log2(tok.n_vocab),
        "n_distinct": len(counts), "vocab_utilisation": len(counts) / tok.n_vocab,
        "char_split_tokens": split_tokens, "split_chars": len(cut_chars),
        "continuation_rate": len(cont) / len(word_tokens) if word_tokens else float("nan"),
    }


# -- hand-computed values -----------------------------------------------------------------------------------------
def test_bytes_only_vocabulary_is_one_byte_per_token():
    m = text_metrics(bytes_only(), "héllo wörld")
    assert m.n_bytes == 13 and m.n_chars == 11 and m.n_tokens == 13
    assert m.bytes_per_token == 1.0
    assert m.chars_per_token == pytest.approx(11 / 13)
    # é and ö are two bytes each: two tokens per character, each holding half of it
    assert m.char_split_tokens == 4 and m.split_chars == 2
    assert m.char_split_rate == pytest.approx(4 / 13)
    assert m.n_words == 2 and m.fertility == 6.5
    # word tokens: all but the space (12); continuations: all but the first byte of each word (10)
    assert m.continuation_rate == pytest.approx(10 / 12)


def test_text_with_surrogates_is_measured_on_its_utf8():
    # a surrogate pair (as a JSON decoder may leave it) is one emoji in the UTF-8 bytes; a lone one is U+FFFD
    pair = text_metrics(bytes_only(), "a \ud83d\ude00 b c")
    assert (pair.n_bytes, pair.n_chars, pair.n_words) == (10, 7, 3)
    lone = text_metrics(bytes_only(), "a \ud800 b")
    assert (lone.n_bytes, lone.n_chars, lone.n_words) == (7, 5, 2)  # U+FFFD is not a word


def test_entropy_and_renyi_by_hand():
    m = text_metrics(bytes_only(), "aab", alpha=2.0)
    h = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert m.entropy == pytest.approx(h)
    assert m.renyi_entropy == pytest.approx(-math.log2((2 / 3) ** 2 + (1 / 3) ** 2))
    assert m.renyi_efficiency == pytest.approx(m.renyi_entropy / 8)   # log2(256) = 8
    assert m.n_distinct == 2 and m.vocab_utilisation == 2 / 256
    assert unigram_entropy([5, 5, 5, 5]) == 0.0
    assert renyi_entropy([1, 2, 3, 4], alpha=0.5) == pytest.approx(2.0)
    assert renyi_entropy([1, 1, 2], alpha=1.0) == pytest.approx(unigram_entropy([1, 1, 2]))
    assert renyi_entropy([1, 1, 2], alpha=math.inf) == pytest.approx(-math.log2(2 / 3))
    assert renyi_entropy([1, 1, 2], alpha=0) == pytest.approx(1.0)
    assert renyi_efficiency([0, 1, 2, 3], vocab_size=4) == pytest.approx(1.0)


def test_whole_word_tokens_have_fertility_one_and_no_continuations():
    tok = train_bpe(["the cat " * 50], vocab_size=265)
    assert tok.encode(" cat") == [tok.encode(" cat")[0]] and len(tok.encode("the")) == 1
    m = text_metrics(tok, "the cat the cat")
    assert m.n_words == 4 and m.n_tokens == 4
    assert m.fertility == 1.0 and m.continuation_rate == 0.0


def test_words_per_script():
    assert count_words("Hello, world! don't — 12.5 well-known") == 5
    assert count_words("人人生而自由") == 6                     # Han: a word per character
    assert count_words("すべての人間は") == 7                   # Kana and Han
    assert count_words("นี่คือ") == 3                           # Thai: letters, each with its marks
    assert count_words("नमस्ते दुनिया") == 2                     # Devanagari: marks stay in the word
    assert count_words("... — !!") == 0
    assert count_words("ab cd", word_pattern=r"\S") == 4


@pytest.mark.parametrize("tok", [bytes_only, toy, gpt2, smollm2], ids=lambda f: f.__name__)
def test_matches_the_readable_reference(tok):
    texts = TORTURE + ["x\x04y\x06z \x13\x14 done", "abc"] + ["\n\n".join(parallel_texts()[k][:3]) for k in ("hi", "ja")]
    for text in texts:
        ours = text_metrics(tok(), text).as_dict()
        ref = reference_metrics(tok(), text)
        for key, value in ref.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(ours[key]), (text, key)
            else:
                assert ours[key] == pytest.approx(value, abs=1e-12), (text, key)


# -- properties ---------------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=80),
       alpha=st.floats(0.0, 10.0), which=st.sampled_from([toy, gpt2]))
def test_invariants(text, alpha, which):
    tok = which()
    m = text_metrics(tok, text, alpha=alpha)
    assert m.n_bytes == len(text.encode("utf-8"))
    assert m.bytes_per_token * m.n_tokens == pytest.approx(m.n_bytes)
    assert 0.0 <= m.entropy <= math.log2(m.n_distinct) + 1e-9
    assert 0.0 <= m.renyi_efficiency <= 1.0
    if alpha >= 1:
        assert m.renyi_entropy <= m.entropy + 1e-9                # Rényi entropy falls with the order
    assert 0.0 <= m.char_split_rate <= 1.0 and m.split_chars <= m.n_chars
    assert math.isnan(m.continuation_rate) or 0.0 <= m.continuation_rate <= 1.0
    assert 0.0 < m.vocab_utilisation <= 1.0


def test_efficiency_is_positive_on_real_text():
    for lang, passages in parallel_texts().items():
        m = text_metrics(gpt2(), passages)
        assert 0.0 < m.renyi_efficiency < 1.0, lang


# -- the table and the token premium ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table() -> MetricTable:
    texts = {k: v for k, v in parallel_texts().items() if k in ("en", "de", "fr", "es", "zh", "hi", "th")}
    return metric_table({"gpt2": gpt2(), "smollm2": smollm2()}, texts)


def test_table_shape_and_accessors(table):
    assert table.values.shape == (2, 7, len(METRICS))
    assert len(table.rows) == 14 and set(table.rows[0]) == {"tokenizer", "text", *METRICS}
    frame = table.to_pandas()
    assert list(frame.columns[:2]) == ["tokenizer", "text"] and len(frame) == 14
    pivot = table.pivot("bytes_per_token")
    assert pivot.shape == (2, 7) and list(pivot.index) == ["gpt2", "smollm2"]
    assert table.pivot("n_tokens").dtypes.iloc[0] == np.int64
    cell = table.get("gpt2", "de")
    assert isinstance(cell["n_tokens"], int)
    assert cell["bytes_per_token"] == pytest.approx(cell["n_bytes"] / cell["n_tokens"])
    with pytest.raises(ConfigurationError, match="Unknown metric"):
        table.pivot("nope")
    with pytest.raises(ConfigurationError, match="Unknown tokenizer"):
        table.get("bert", "en")


def test_premium_of_the_reference_is_one(table):
    premium = table.pivot("premium")
    assert (premium["en"] == 1.0).all()
    n = table.pivot("n_tokens")
    assert premium.loc["gpt2", "zh"] == pytest.approx(n.loc["gpt2", "zh"] / n.loc["gpt2", "en"])
    assert token_premium(gpt2(), parallel_texts(), reference="de")["de"] == 1.0


def test_scripts_far_from_english_pay_a_higher_premium_under_gpt2(table):
    premium = table.pivot("premium").loc["gpt2"]
    near = max(premium["de"], premium["fr"], premium["es"])
    for lang in ("zh", "hi", "th"):
        assert premium[lang] > near, lang
    assert premium["hi"] > 2 * near and premium["th"] > 2 * near
    # and English compresses best, in bytes per token too
    assert table.pivot("bytes_per_token").loc["gpt2"].idxmax() == "en"


def test_no_reference_means_no_premium():
    t = metric_table({"toy": toy()}, {"a": "the cat", "b": "the mat"}, reference=None)
    assert np.isnan(t.pivot("premium").to_numpy()).all()


# -- bad input ----------------------------------------------------------------------------------------------------
def test_bad_input_raises_project_errors():
    with pytest.raises(ConfigurationError, match="empty"):
        text_metrics(toy(), "")
    with pytest.raises(ConfigurationError, match="Unknown reference 'en'"):
        metric_table({"toy": toy()}, {"de": "hallo"})
    with pytest.raises(ConfigurationError, match="empty"):
        metric_table({"toy": toy()}, {"en": "hi", "de": ""})
    with pytest.raises(ConfigurationError, match="non-empty"):
        metric_table({}, {"en": "hi"})
    with pytest.raises(ConfigurationError, match="non-empty"):
        metric_table({"toy": toy()}, {})
    with pytest.raises(ConfigurationError, match="not a workbench Tokenizer"):
        metric_table({"toy": "gpt2"}, {"en": "hi"})
    with pytest.raises(ConfigurationError, match="parallel"):
        metric_table({"toy": toy()}, {"en": ["a", "b"], "de": ["a"]})
    with pytest.raises(ConfigurationError, match="alpha"):
        text_metrics(toy(), "hi", alpha=-1)
    with pytest.raises(ConfigurationError, match="str"):
        text_metrics(toy(), b"bytes")
    with pytest.raises(ConfigurationError, match="no tokens"):  # SmolLM2 has no token for byte 0x04
        text_metrics(smollm2(), "\x04\x04")
    with pytest.raises(ConfigurationError):
        unigram_entropy([])
    with pytest.raises(ConfigurationError):
        renyi_efficiency([1, 2], vocab_size=1)
    for exc in (ConfigurationError, TokenizerError):
        assert issubclass(exc, WorkbenchError) and issubclass(exc, ValueError)
