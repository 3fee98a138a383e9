"""SuperBPE: stage 1 is plain BPE, superwords appear only in stage 2, and fewer tokens than BPE at equal vocabulary."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.workbench.tokenization.conftest import TORTURE
from workbench.errors import ConfigurationError, TrainingError
from workbench.tokenization import load_tokenizer, train_bpe
from workbench.tokenization import trainer as trainer_module
from workbench.tokenization.pretokenize import split_bytes
from workbench.tokenization.superbpe import is_superword, train_superbpe

TRAIN_BYTES = 500_000
VOCAB = 8000
TRANSITION = 6800  # 85% of the vocabulary


@pytest.fixture(scope="module")
def held_out(prose):
    data = prose.encode()
    cut = TRAIN_BYTES
    while data[cut] & 0xC0 == 0x80:
        cut -= 1
    return data[:cut].decode(), data[cut:].decode()


@pytest.fixture(scope="module")
def bpe(held_out):
    return train_bpe(held_out[0], VOCAB)


@pytest.fixture(scope="module")
def superbpe(held_out):
    return train_superbpe(held_out[0], VOCAB, transition_vocab_size=TRANSITION)


def test_stage_one_is_plain_bpe(superbpe, bpe):
    n = TRANSITION - 256
    assert superbpe.merges[:n] == bpe.merges[:n]
    assert superbpe.merges[n:] != bpe.merges[n:]
    assert superbpe.training_stats.extra["stage1_merges"] == n


def test_superwords_only_in_stage_two(superbpe):
    tokens = [superbpe.id_to_token(i) for i in range(len(superbpe))]
    assert not any(is_superword(t) for t in tokens[:TRANSITION])
    superwords = [t for t in tokens[TRANSITION:] if is_superword(t)]
    assert len(superwords) > 500
    assert b" of the" in superwords and b", and" in superwords


def test_fewer_tokens_than_bpe_at_equal_vocabulary(superbpe, bpe, held_out):
    text = held_out[1]
    assert len(superbpe) == len(bpe) == VOCAB
    ours, theirs = len(superbpe.encode(text)), len(bpe.encode(text))
    assert 1 - ours / theirs > 0.12, (ours, theirs)  # measured: 17.3% fewer tokens (4.86 against 4.02 bytes/token)


def test_the_tokenizer_encodes_by_itself(superbpe, held_out):
    text = held_out[1][:30000]
    assert superbpe.pretokenizer == "superword" and superbpe.semantics == "merges"
    assert superbpe.decode(superbpe.encode(text)) == text
    # tokens stay inside the stage-2 pieces: sentences of one line
    enc = superbpe.encode_with_offsets(text)
    bounds = split_bytes(text.encode(), "superword")
    piece = np.searchsorted(bounds, [s for s, _ in enc.byte_spans], side="right")
    assert all(np.searchsorted(bounds, e, side="left") == p for (_, e), p in zip(enc.byte_spans, piece.tolist()))


def test_stage_two_never_crosses_lines_or_sentence_ends(superbpe):
    crosses = re.compile(rb"""[.!?]["')\]]*[ \n]|\n[^\s]|[^\s]\n""")
    for i in range(len(superbpe)):
        token = superbpe.id_to_token(i)
        assert not crosses.search(token), token


def test_replaying_the_merges_shows_the_curriculum(superbpe, held_out):
    text = held_out[1][:20000]
    subwords = [superbpe.id_to_token(i) for i in superbpe.encode(text, max_merges=TRANSITION - 256)]
    assert not any(is_superword(t) for t in subwords)
    assert len(superbpe.encode(text)) < len(subwords)


def test_same_as_two_calls_to_train_bpe(prose):
    text = prose[:80000]
    stage1 = train_bpe(text, 900)
    by_hand = train_bpe(text, 1100, initial=stage1, pretokenizer="superword")
    assert train_superbpe(text, 1100, transition_vocab_size=900).merges == by_hand.merges


def test_transition_at_the_vocabulary_size_is_plain_bpe(prose):
    text = prose[:40000]
    tok = train_superbpe(text, 700, transition_vocab_size=700)
    assert tok.merges == train_bpe(text, 700).merges


def test_paper_setting_lifts_everything(prose):
    """``stage2_pretokenizer="none"``, as the authors' trainer: superwords may cross punctuation and line breaks."""
    paragraphs = prose[:60000].split("\n\n")
    tok = train_superbpe(paragraphs, 1200, transition_vocab_size=1000, stage2_pretokenizer="none")
    stage2 = [tok.id_to_token(i) for i in range(1000, 1200)]
    assert b" the\n" in stage2 and b". The" in stage2  # across a line break, across a sentence end
    assert tok.decode(tok.encode(prose[60000:62000])) == prose[60000:62000]


# -- files, export, progress ------------------------------------------------------------------------------------------
def test_files_stream_like_in_memory_text(tmp_path, monkeypatch, prose):
    text = prose[:60000]
    (tmp_path / "corpus.txt").write_text(text)
    monkeypatch.setattr(trainer_module, "CHUNK_BYTES", 1000)  # many chunk boundaries, in both stages
    from_file = train_superbpe(tmp_path / "corpus.txt", 1000, transition_vocab_size=800)
    in_memory = train_superbpe(text, 1000, transition_vocab_size=800)
    assert from_file.merges == in_memory.merges


def test_one_shot_iterators_are_read_once(prose):
    docs = prose[:40000].split("\n\n")
    from_iterator = train_superbpe(iter(docs), 700, transition_vocab_size=600)
    assert from_iterator.merges == train_superbpe(docs, 700, transition_vocab_size=600).merges


def test_saved_tokenizer_json_loads_and_matches_hugging_face(tmp_path, superbpe, held_out):
    text = held_out[1][:20000]
    superbpe.save(tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.pretokenizer == "superword"
    assert again.encode(text) == superbpe.encode(text)
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert hf.encode(text).ids == superbpe.encode(text)


def test_progress_counts_both_stages_against_the_total(prose):
    seen = []
    train_superbpe(prose[:30000], 800, transition_vocab_size=600, progress=seen.append)
    merges = [p for p in seen if p.stage == "merge"]
    assert {p.total for p in merges} == {800 - 256}
    assert merges[-1].done == 800 - 256
    assert any(p.done == 600 - 256 for p in merges)  # the hand-over
    assert any(p.stage == "count" for p in seen)


# -- round trips ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(prose):
    return train_superbpe(prose[:60000], 1200, transition_vocab_size=1000)


def test_round_trip_torture(small):
    for text in TORTURE:
        assert small.decode(small.encode(text)) == text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.one_of(st.sampled_from([" the", " of", ", and", ". ", "\n", "!\" ", "Mr. ", "  "]),
                               st.text(st.characters(codec="utf-8"), max_size=3)), max_size=20).map("".join))
def test_hypothesis_round_trip(small, text):
    assert small.decode(small.encode(text)) == text


# -- errors ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(vocab_size=1000, transition_vocab_size=1200), TrainingError, "between 256"),
    (dict(vocab_size=1000, transition_vocab_size=100), TrainingError, "between 256"),
    (dict(vocab_size=1000, transition_vocab_size=800.0), TrainingError, "must be an integer"),
    (dict(vocab_size="big", transition_vocab_size=800), TrainingError, "must be an integer"),
    (dict(vocab_size=1000, transition_vocab_size=800, stage2_pretokenizer="spaces"), ConfigurationError, "spaces"),
    (dict(vocab_size=1000, transition_vocab_size=800, pretokenizer="gpt5"), ConfigurationError, "gpt5"),
])
def test_bad_input_is_a_clear_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        train_superbpe("some text to train on", **kwargs)


def test_bad_corpus_is_a_clear_error():
    with pytest.raises(TrainingError, match="empty"):
        train_superbpe([], 300, transition_vocab_size=280)
    with pytest.raises(TrainingError, match="iterable"):
        train_superbpe(3.14, 300, transition_vocab_size=280)
