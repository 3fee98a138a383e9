import json

import numpy as np
import pytest

from tests.workbench.tokenization.reference import reference_train
from workbench.errors import CorpusNotFoundError, TrainingError, WorkbenchError
from workbench.tokenization import train_bpe
from workbench.tokenization import trainer as trainer_module
from workbench.tokenization.bytelevel import text_to_bytes
from workbench.tokenization.pretokenize import split_bytes


def pieces_of(docs, pretokenizer="gpt2"):
    out = []
    for doc in docs:
        data = doc.encode()
        bounds = split_bytes(data, pretokenizer)
        out += [data[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]
    return out


def hf_merges(docs, vocab_size, special_tokens=()):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, special_tokens=list(special_tokens))
    tok.train_from_iterator(docs, trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    pairs = (m.split(" ") if isinstance(m, str) else m for m in merges)
    return [(text_to_bytes(a), text_to_bytes(b)) for a, b in pairs]


def test_matches_the_readable_reference(prose, parallel_docs):
    docs = [prose[:15000], parallel_docs[0][:3000], parallel_docs[5][:3000]]
    assert train_bpe(docs, 420).merges == reference_train(pieces_of(docs), 420)


@pytest.mark.parametrize("corpus, vocab_size", [("prose", 2000), ("code", 4000), ("parallel", 3000), ("mixed", 8000)])
def test_merges_identical_to_hf_tokenizers(corpus, vocab_size, prose, code_docs, parallel_docs):
    docs = {"prose": prose.split("\n\n"), "code": code_docs, "parallel": parallel_docs,
            "mixed": code_docs + parallel_docs + prose.split("\n\n")}[corpus]
    ours = train_bpe(docs, vocab_size)
    theirs = hf_merges(docs, vocab_size)
    assert len(ours.merges) == len(theirs) == vocab_size - 256
    assert ours.merges == theirs


def test_special_tokens_count_in_the_vocabulary_and_come_last(prose):
    docs = prose[:50000].split("\n\n")
    tok = train_bpe(docs, 600, special_tokens=["<|endoftext|>", "<pad>"])
    assert len(tok) == 600
    assert tok.special_tokens == {"<|endoftext|>": 598, "<pad>": 599}
    assert tok.merges == hf_merges(docs, 600, special_tokens=["<|endoftext|>", "<pad>"])
    assert tok.encode("a<pad>b", allowed_special="all")[1] == 599


def test_merge_records_parents_and_counts(prose):
    tok = train_bpe(prose[:100000], 1000)
    counts = tok.merge_counts
    assert len(counts) == len(tok.merges) == 744
    assert np.all(np.diff(counts) <= 0), "the best count can only fall as merges proceed"
    left, right, new = tok.merge_triples.T
    assert np.all(new == np.arange(256, 1000))
    assert np.all((left < new) & (right < new))  # parents exist before their child
    # the first merge's count is the true count of that pair in the pre-tokenized corpus
    a, b = tok.merges[0]
    true = sum(piece.count(a + b) for piece in pieces_of([prose[:100000]])) if a != b else None
    if true is not None:
        assert counts[0] == true


def test_min_frequency_stops_early(prose):
    tok = train_bpe(prose[:20000], 5000, min_frequency=10)
    assert tok.merge_counts[-1] >= 10
    assert len(tok) < 5000
    assert "min_frequency" in tok.training_stats.stopped_because


def test_streamed_files_train_like_in_memory_text(tmp_path, monkeypatch, prose, code_docs):
    text = prose[:60000] + "\n" + code_docs[0]
    (tmp_path / "corpus.txt").write_text(text)
    monkeypatch.setattr(trainer_module, "CHUNK_BYTES", 1000)  # force many chunk boundaries
    from_file = train_bpe(tmp_path / "corpus.txt", 900)
    in_memory = train_bpe(text, 900)
    assert from_file.merges == in_memory.merges
    assert from_file.training_stats.corpus_bytes == len(text.encode())


def test_many_short_documents_train_in_batches_with_hf_merges(monkeypatch, prose, parallel_docs):
    """In-memory documents are split in batches (one scan each, no piece across a document end): the merges equal
    HF's on 20,000 short documents (empty ones included), whatever the batch size."""
    lines = [line for doc in [prose, *parallel_docs] for line in doc.splitlines()]
    docs = (lines * (20000 // len(lines) + 1))[:20000]
    whole = train_bpe(docs, 1500)
    assert whole.training_stats.documents == 20000
    assert whole.merges == hf_merges(docs, 1500)
    monkeypatch.setattr(trainer_module, "CHUNK_BYTES", 4096)  # hundreds of batches
    assert train_bpe(docs, 1500).merges == whole.merges
    for name in ("smollm2", "superword", "tekken"):  # the other scanners, and the regex fallback
        assert train_bpe(docs[:3000], 400, pretokenizer=name).merges == reference_train(
            pieces_of(docs[:3000], name), 400)


def test_invalid_utf8_trains_and_round_trips():
    data = b"caf\xc3\xa9 \xff\xfe broken \xc3 bytes \xe2\x82 " * 50
    tok = train_bpe([data], 300)
    assert tok.decode_bytes(tok.encode_bytes(data)) == data


def test_progress_callback_and_bar(prose, capsys):
    seen = []
    train_bpe(prose[:50000], 2000, progress=seen.append, show_progress=True)
    stages = {p.stage for p in seen}
    assert stages == {"count", "merge"}
    merges = [p for p in seen if p.stage == "merge"]
    assert merges[-1].done == 1744 and merges[-1].total == 1744
    assert "merging" in capsys.readouterr().err


def test_pretokenizers_change_what_merges(prose):
    gpt2 = train_bpe(prose[:40000], 700, pretokenizer="gpt2")
    whitespace = train_bpe(prose[:40000], 700, pretokenizer="whitespace")
    assert gpt2.merges != whitespace.merges
    for tok in (gpt2, whitespace):
        assert tok.decode(tok.encode(prose[:5000])) == prose[:5000]


@pytest.mark.parametrize("kwargs, match", [
    (dict(corpus=[], vocab_size=300), "empty"),
    (dict(corpus=["", b""], vocab_size=300), "empty"),
    (dict(corpus="text", vocab_size=100), "smaller than the alphabet"),
    (dict(corpus="text", vocab_size=257, special_tokens=["<a>", "<b>"]), "special tokens"),
    (dict(corpus="text", vocab_size="big"), "must be an integer"),
    (dict(corpus="text", vocab_size=300, pretokenizer="gpt5"), "gpt5"),
    (dict(corpus=[3.14], vocab_size=300), "str, bytes or paths"),
])
def test_bad_input_is_a_clear_error(kwargs, match):
    with pytest.raises(WorkbenchError, match=match):
        train_bpe(**kwargs)


def test_missing_corpus_path(tmp_path):
    with pytest.raises(CorpusNotFoundError):
        train_bpe(tmp_path / "nope.txt", 300)


def test_vocab_larger_than_the_corpus_allows_stops_cleanly():
    tok = train_bpe("abcabc", 10000)
    assert tok.decode(tok.encode("abcabc")) == "abcabc"
    assert tok.training_stats.stopped_because.startswith("no pairs left")
    with pytest.raises(TrainingError):
        train_bpe("abc", -5)


def test_continuing_from_a_tokenizer_equals_training_straight_through(prose):
    text = prose[:120000]
    straight = train_bpe(text, 1500)
    first = train_bpe(text, 900)
    continued = train_bpe(text, 1500, initial=first)
    assert continued.merges == straight.merges
    assert np.array_equal(continued.merge_counts, straight.merge_counts)


def test_continuing_with_another_pretokenizer_keeps_the_first_merges(prose):
    first = train_bpe(prose[:60000], 700)
    second = train_bpe(prose[:60000], 900, initial=first, pretokenizer="none")
    assert second.merges[:444] == first.merges
    assert any(b" " in (a + b).strip() for a, b in second.merges[444:])  # tokens now span words


def test_initial_must_come_from_the_trainer(prose):
    from workbench.tokenization import load_tokenizer

    with pytest.raises(TrainingError, match="trained by train_bpe"):
        train_bpe(prose[:1000], 60000, initial=load_tokenizer("gpt2"))
    small = train_bpe(prose[:20000], 600)
    with pytest.raises(TrainingError, match="already has"):
        train_bpe(prose[:1000], 500, initial=small)


def test_truncated_merge_lists_replay_training(prose):
    tok = train_bpe(prose[:80000], 800)
    text = prose[100000:102000]
    lengths = [len(tok.encode(text, max_merges=k)) for k in (0, 50, 200, 544)]
    assert lengths[0] == len(text.encode())
    assert lengths == sorted(lengths, reverse=True)
    assert tok.encode(text, max_merges=544) == tok.encode(text)


def test_streamed_files_with_superword_cut_only_at_line_ends(tmp_path, monkeypatch, prose):
    # "superword" pieces run across single spaces, so streamed files must not be cut at a space
    text = prose[:40000]
    (tmp_path / "corpus.txt").write_text(text)
    monkeypatch.setattr(trainer_module, "CHUNK_BYTES", 700)
    from_file = train_bpe(tmp_path / "corpus.txt", 700, pretokenizer="superword")
    assert from_file.merges == train_bpe(text, 700, pretokenizer="superword").merges
