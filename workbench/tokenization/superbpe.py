r"""SuperBPE (Liu et al., 2025, *SuperBPE: Space Travel for Language Models*): BPE with a pre-tokenization curriculum.

Stage 1 is ordinary pre-tokenized BPE up to ``transition_vocab_size`` tokens: it learns subwords. Stage 2 continues
the same merge list (``train_bpe(..., initial=stage1)``) with whitespace pre-tokenization lifted, so later merges
may bridge spaces and learn *superwords* such as ``" of the"`` or ``" by the way"``. The result is one
:class:`~workbench.tokenization.tokenizer.Tokenizer` (merge semantics: stage-1 merges, then stage-2 merges, in
order) whose pre-tokenizer is the stage-2 one, so it encodes new text by itself.

What stage 2 still splits on. The authors' trainer (``PythonNut/superbpe``) lifts *everything* in stage 2 except
digit grouping (numbers split into groups of three), so superwords may run across punctuation and line breaks
(their issue #9 reports tokens such as ``" applications.\n"``); a document becomes a single word, which is also why
their second stage needs far more memory (their issue #6) and why ``pretokenizer="none"`` is slow here. This module
defaults to the ``"superword"`` pre-tokenizer instead (:mod:`workbench.tokenization.pretokenize`): a single space
between two words no longer splits, but a piece still ends

* right after a sentence end: a run of ``. ! ?`` (with closing quotes/brackets) followed by white space, and
* at line breaks and any other white space (tabs, runs of spaces), split exactly as the ``whitespace`` pre-tokenizer.

So superwords stay inside one sentence of one line, no token duplicates a word with a trailing newline, words are
bounded (fast training, streaming files works) and the vocabulary is exported as a plain ``Split`` regex in
``tokenizer.json`` that Hugging Face tokenizers reproduces id for id. The price, measured on Pride and Prejudice
(train on 500 KB, evaluate on the remaining 185 KB, 8k vocabulary, transition at 6800): 17.3% fewer tokens than
BPE with ``"superword"`` (0.2 s to train), 22% with the authors' rule (``stage2_pretokenizer="none"``, paragraphs
as documents) and 25% with the whole book as one document (9 s). The gap is mostly ``"Mr. Darcy"``-style
abbreviations and the book's hard-wrapped lines. Digits are not regrouped: stage 1's pre-tokenizer decides how
numbers split.

>>> text = "by the way, i am a fan of the way. " * 20
>>> tok = train_superbpe(text, 300, transition_vocab_size=280)
>>> tok.decode(tok.encode("a fan of the way")) == "a fan of the way"
True
>>> any(is_superword(tok.id_to_token(i)) for i in range(280, 300))
True
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable

import numpy as np

from workbench.errors import TrainingError
from workbench.tokenization.pretokenize import check_pretokenizer
from workbench.tokenization.tokenizer import Tokenizer
from workbench.tokenization.trainer import TrainingProgress, train_bpe

__all__ = ["is_superword", "train_superbpe"]

_BRIDGE = re.compile(rb"\S \S")


def is_superword(token: bytes) -> bool:
    """True when ``token`` bridges a space: a U+0020 with a non-space byte on each side.

    >>> is_superword(b" of the"), is_superword(b" the"), is_superword(b"  ")
    (True, False, False)
    """
    return _BRIDGE.search(token) is not None


def train_superbpe(
    corpus,
    vocab_size: int,
    *,
    transition_vocab_size: int,
    pretokenizer: str = "gpt2",
    stage2_pretokenizer: str = "superword",
    progress: Callable[[TrainingProgress], None] | None = None,
    show_progress: bool = False,
    name: str = "superbpe",
) -> Tokenizer:
    """Train a SuperBPE tokenizer of ``vocab_size`` tokens (256 bytes included, as :func:`train_bpe` counts them).

    ``corpus``: what :func:`~workbench.tokenization.trainer.train_bpe` takes (str, bytes, paths, or an iterable of
    them; a one-shot iterator is read into memory first since it is trained on twice). ``transition_vocab_size``
    (the paper's *t*): the vocabulary size at which stage 1 (``pretokenizer``, subwords) hands over to stage 2
    (``stage2_pretokenizer``, superwords); ``256 <= t <= vocab_size``. ``t = vocab_size`` is plain BPE's merge list.
    ``progress`` receives :class:`TrainingProgress` for both stages, merges counted against ``vocab_size - 256``.

    The first ``t - 256`` merges are exactly ``train_bpe(corpus, vocab_size)``'s first merges. Statistics of both
    stages are in ``tok.training_stats`` (``extra`` holds the stage-1 figures).

    >>> from workbench.data import load_corpus
    >>> tok = train_superbpe(load_corpus("prose_en").read_text()[:50000], 1000, transition_vocab_size=800)
    >>> tok.pretokenizer, len(tok)
    ('superword', 1000)
    >>> [tok.id_to_token(i) for i in range(800, 1000) if is_superword(tok.id_to_token(i))][:4]
    [b', and', b'; and', b' to be', b', "']
    """
    pretokenizer = check_pretokenizer(pretokenizer)
    stage2_pretokenizer = check_pretokenizer(stage2_pretokenizer)
    for label, value in (("vocab_size", vocab_size), ("transition_vocab_size", transition_vocab_size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TrainingError(f"{label} must be an integer, got {value!r}.")
    if not 256 <= transition_vocab_size <= vocab_size:
        raise TrainingError(f"transition_vocab_size={transition_vocab_size} must lie between 256 (the byte alphabet) "
                            f"and vocab_size={vocab_size}; the paper uses 80-90% of vocab_size.")
    corpus = _reusable(corpus)
    total = vocab_size - 256

    def stage_progress(p: TrainingProgress) -> None:  # stage 1's merges count against the final total
        progress(dataclasses.replace(p, total=total) if p.stage == "merge" else p)

    start = time.perf_counter()
    stage1 = train_bpe(corpus, transition_vocab_size, pretokenizer=pretokenizer, name=f"{name}-stage1",
                       progress=None if progress is None else stage_progress, show_progress=show_progress)
    seconds1 = time.perf_counter() - start
    start = time.perf_counter()
    stage2_corpus = corpus  # train_bpe cuts streamed files where the stage-2 pre-tokenizer allows
    tok = train_bpe(stage2_corpus, vocab_size, pretokenizer=stage2_pretokenizer, initial=stage1, name=name,
                    progress=progress, show_progress=show_progress)
    stats = tok.training_stats
    stats.extra.update(
        transition_vocab_size=int(transition_vocab_size), stage1_merges=len(stage1.merge_triples),
        stage1_pretokenizer=pretokenizer, stage2_pretokenizer=stage2_pretokenizer,
        stage1_seconds=seconds1, stage2_seconds=time.perf_counter() - start,
        stage1_unique_words=stage1.training_stats.unique_words, stage1_stopped_because=stage1.training_stats.stopped_because,
    )
    return tok


# -- corpus plumbing ----------------------------------------------------------------------------------------------
def _reusable(corpus):
    """``corpus`` in a form that can be read twice (one-shot iterators are read into a list)."""
    if isinstance(corpus, (str, bytes, bytearray, memoryview, os.PathLike, list, tuple)):
        return corpus
    try:
        return list(corpus)
    except TypeError:
        raise TrainingError(f"The corpus must be str, bytes, a path or an iterable of these; "
                            f"got {type(corpus).__name__}.") from None
