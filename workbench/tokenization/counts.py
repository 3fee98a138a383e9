"""What every tokenizer metric is computed from: one encoding of a text (ids and byte spans), its words, and the
additive `TextCounts` (sums and a histogram of ids) that `metrics.metrics_from_counts` turns into metrics.

Counts of two texts processed apart add up to those of both, so a corpus is measured in pieces, on one machine or on
Dask workers (`corpus_files.corpus_counts`). Definitions of the metrics: `workbench.tokenization.metrics`.

>>> from workbench.tokenization import train_bpe
>>> tok = train_bpe("the cat sat on the mat", vocab_size=256)
>>> c = text_counts(tok, b"the cat") + text_counts(tok, b" sat")
>>> c.n_tokens, c.n_words
(11, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import regex

from workbench.errors import ConfigurationError, TokenizerError
from workbench.tokenization import encoder as K
from workbench.tokenization.tokenizer import Tokenizer, _utf8

#: Scripts written without spaces between words: each of their characters counts as one word.
UNSPACED_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
#: What a word is (see the module docstring): one character of an unspaced script with its marks, or a run of
#: non-space characters (outside those scripts) that holds at least one letter, mark or digit.
WORD_PATTERN = rf"[{UNSPACED_SCRIPTS}]\p{{M}}*|[^\s{UNSPACED_SCRIPTS}]*[^\W_{UNSPACED_SCRIPTS}][^\s{UNSPACED_SCRIPTS}]*"
_WORD_RE = regex.compile(WORD_PATTERN)


# -- words --------------------------------------------------------------------------------------------------------
def word_spans(text: str, *, word_pattern: str | None = None) -> np.ndarray:
    """int64[n_words, 2]: ``(start, end)`` character offsets of the words of ``text`` (:data:`WORD_PATTERN`).

    >>> word_spans("Hi, you!").tolist()
    [[0, 3], [4, 8]]
    >>> len(word_spans("人人生而自由"))           # Han: one word per character
    6
    """
    pattern = _WORD_RE if word_pattern is None else regex.compile(word_pattern)
    spans = [m.span() for m in pattern.finditer(text) if m.end() > m.start()]
    return np.array(spans, dtype=np.int64).reshape(-1, 2)


def count_words(text: str, *, word_pattern: str | None = None) -> int:
    """Number of words of ``text`` (see :func:`word_spans`).

    >>> count_words("The cat — it sat.")
    4
    """
    return len(word_spans(text, word_pattern=word_pattern))


# -- one (tokenizer, text) ----------------------------------------------------------------------------------------
def encode_spans(tokenizer: Tokenizer, text: str | bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode once: ``(ids int64[N], starts int64[N], ends int64[N])``, byte offsets into ``text``'s UTF-8 (or into
    ``text`` itself when it is bytes).

    Bytes without a token of their own (:attr:`Tokenizer.missing_bytes`) are dropped by the encoder, so a token's
    end may then differ from the next token's start.

    >>> from workbench.tokenization import train_bpe
    >>> ids, starts, ends = encode_spans(train_bpe("ab ab", vocab_size=256), "ab")
    >>> starts.tolist(), ends.tolist()
    ([0, 1], [1, 2])
    """
    data = text if isinstance(text, bytes) else _utf8(text)
    arr = np.frombuffer(data, dtype=np.uint8)
    ids = np.asarray(tokenizer._encode_array(arr), dtype=np.int64)
    if tokenizer.missing_bytes and any(b in data for b in tokenizer.missing_bytes):
        # bytes without a token were skipped: find each token's real start
        starts = np.asarray(tokenizer._starts_skipping_missing(data, ids), dtype=np.int64)[:-1]
    else:
        starts = K.token_starts(ids, tokenizer._tok_len, 0)[:-1]
    ends = starts + tokenizer._tok_len[ids]
    return ids, starts, ends


def _check_tokenizer(name: str, tokenizer) -> Tokenizer:
    if not isinstance(tokenizer, Tokenizer):
        raise ConfigurationError(f"Tokenizer {name!r} is a {type(tokenizer).__name__}, not a workbench Tokenizer; "
                                 "load one with load_tokenizer(...) or train one with train_bpe(...).")
    if tokenizer.n_vocab < 2:
        raise TokenizerError(f"Tokenizer {name!r} has {tokenizer.n_vocab} ids; metrics need at least 2.")
    return tokenizer


@dataclass(eq=False)
class TextCounts:
    """The additive counts every metric is computed from (definitions in the module docstring): the counts of two
    texts processed apart add up to those of both (`+`), so a corpus can be measured in pieces, on one machine or on
    Dask workers (`workbench.tokenization.corpus.corpus_metrics`). ``id_counts``: int64[n_vocab], occurrences of
    each id. ``n_word_tokens`` / ``n_continuing``: word tokens, and those that start inside a word."""

    n_vocab: int
    n_bytes: int = 0
    n_chars: int = 0
    n_words: int = 0
    n_tokens: int = 0
    char_split_tokens: int = 0
    split_chars: int = 0
    n_word_tokens: int = 0
    n_continuing: int = 0
    id_counts: np.ndarray | None = None
    skipped_bytes: int = 0       # bytes left out because they are not UTF-8 (corpus_counts(invalid="skip"))
    skipped: tuple = ()          # the files they came from

    def __post_init__(self) -> None:
        if self.id_counts is None:
            self.id_counts = np.zeros(self.n_vocab, dtype=np.int64)

    def __add__(self, other: TextCounts) -> TextCounts:
        if not isinstance(other, TextCounts) or other.n_vocab != self.n_vocab:
            raise ConfigurationError("Only the counts of one tokenizer (same vocabulary size) add up.")
        fields = ("n_bytes", "n_chars", "n_words", "n_tokens", "char_split_tokens", "split_chars", "n_word_tokens",
                  "n_continuing")
        return TextCounts(self.n_vocab, *(getattr(self, f) + getattr(other, f) for f in fields),
                          id_counts=self.id_counts + other.id_counts, skipped_bytes=self.skipped_bytes + other.skipped_bytes,
                          skipped=tuple(dict.fromkeys(self.skipped + other.skipped)))


def text_counts(tokenizer: Tokenizer, data: bytes, *, word_pattern: str | None = None,
                text: str | None = None) -> TextCounts:
    """The counts of ``tokenizer`` on the UTF-8 text ``data`` (one encoding). ``text``: ``data`` as a str when the
    caller has it (else decoded here; UnicodeDecodeError for bytes that are not UTF-8)."""
    if text is None:
        text = data.decode("utf-8")
    arr = np.frombuffer(data, dtype=np.uint8)
    counts = TextCounts(tokenizer.n_vocab)
    if not len(data):
        return counts
    ids, starts, ends = encode_spans(tokenizer, data)
    n_bytes = len(data)
    # a byte that is not a UTF-8 continuation byte starts a character
    is_start = (arr & 0xC0) != 0x80
    char_start_bytes = np.flatnonzero(is_start)
    inside = np.append(~is_start, False)                   # byte offset -> falls inside a character
    cut_start, cut_end = inside[starts], inside[ends]
    boundaries = np.unique(np.concatenate([starts[cut_start], ends[cut_end]]))
    char_of_byte = np.cumsum(is_start) - 1

    # words: character spans -> byte spans
    spans = word_spans(text, word_pattern=word_pattern)
    n_words = len(spans)
    byte_of_char = np.append(char_start_bytes, n_bytes)
    w_start, w_end = byte_of_char[spans[:, 0]], byte_of_char[spans[:, 1]]
    n_word_tokens = n_continuing = 0
    if n_words and len(ids):
        # word tokens overlap a word: the first word ending after the token's start begins before its end
        j = np.searchsorted(w_end, starts, side="right")
        has = j < n_words
        jj = np.minimum(j, n_words - 1)
        word_token = has & (w_start[jj] < ends)
        n_word_tokens = int(np.count_nonzero(word_token))
        n_continuing = int(np.count_nonzero(word_token & (w_start[jj] < starts)))
    return TextCounts(
        tokenizer.n_vocab, n_bytes=n_bytes, n_chars=len(char_start_bytes), n_words=n_words, n_tokens=len(ids),
        char_split_tokens=int(np.count_nonzero(cut_start | cut_end)),
        split_chars=int(len(np.unique(char_of_byte[boundaries]))) if len(boundaries) else 0,
        n_word_tokens=n_word_tokens, n_continuing=n_continuing,
        id_counts=np.bincount(ids, minlength=tokenizer.n_vocab).astype(np.int64))
