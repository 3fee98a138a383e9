"""One rule for what a corpus argument means, in every API that takes one (`workbench.data.corpus_items`): a
mistyped path is a CorpusNotFoundError, never trained on as if it were the text."""

from __future__ import annotations

import pytest

from workbench.data import Text, corpus_items
from workbench.errors import CorpusNotFoundError, TrainingError
from workbench.tokenization import load_tokenizer, train_bpe
from workbench.tokenization.boundless import train_boundless
from workbench.tokenization.metrics import corpus_metrics
from workbench.tokenization.scaffold import train_scaffold_bpe
from workbench.tokenization.superbpe import train_superbpe

MISTYPED = "corpus/my_corpus.txt"


@pytest.mark.parametrize("train", [
    lambda c: train_bpe(c, 300),
    lambda c: train_boundless(c, 300),
    lambda c: train_scaffold_bpe(c, 300),
    lambda c: train_superbpe(c, 320, transition_vocab_size=300),
], ids=["bpe", "boundless", "scaffold", "superbpe"])
def test_a_mistyped_path_is_an_error_in_every_trainer(train):
    with pytest.raises(CorpusNotFoundError, match="looks like a path.*Text"):
        train(MISTYPED)
    with pytest.raises(CorpusNotFoundError):
        train(["some real text", MISTYPED])


def test_the_metrics_over_files_say_the_same():
    with pytest.raises(CorpusNotFoundError):
        corpus_metrics(load_tokenizer("gpt2"), MISTYPED)


def test_text_paths_and_explicit_text(tmp_path):
    real = tmp_path / "notes.txt"
    real.write_text("the cat sat on the mat " * 50)
    # an existing path given as str is read as the file, and the same as a Path
    assert train_bpe(str(real), 280).merges == train_bpe(real, 280).merges
    # text with spaces, or without anything path-like, is text
    assert [kind for kind, _ in corpus_items(["the cat sat", "aaaa", b"raw"])] == ["bytes"] * 3
    # Text(...) is always text, even when it looks like a path
    (kind, data), = corpus_items(Text(MISTYPED))
    assert kind == "bytes" and data == MISTYPED.encode()
    assert train_bpe(Text(MISTYPED), 258).n_vocab == 258


def test_other_items_and_empty_corpora_are_errors():
    with pytest.raises(TrainingError, match="must be str, bytes or paths"):
        train_bpe([1, 2], 300)
    with pytest.raises(TrainingError, match="empty"):
        train_bpe([], 300)
