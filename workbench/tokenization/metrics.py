r"""Tokenizer metrics: compression, fertility, entropy and Rényi efficiency, vocabulary use, split characters,
word continuations, and the token premium across languages on parallel text.

Every metric of one (tokenizer, text) pair comes from a single encoding (token ids plus each token's byte offset),
so a whole table over many tokenizers and languages costs one encode per cell.

=====================  ===========================================================================================
metric                 definition (``N`` = tokens of the text, ids counted with their multiplicity)
=====================  ===========================================================================================
``n_bytes``            UTF-8 bytes of the text
``n_chars``            characters (Unicode code points) of the text
``n_words``            words, see :data:`WORD_PATTERN` below
``n_tokens``           ``N``
``bytes_per_token``    ``n_bytes / N`` (compression; a byte-level vocabulary without merges gives exactly 1)
``chars_per_token``    ``n_chars / N``
``fertility``          ``N / n_words``: tokens per word
``entropy``            Shannon entropy of the unigram distribution of ids in the encoding, in bits:
                       ``-sum_v p_v log2 p_v`` with ``p_v = count(v) / N``
``renyi_entropy``      ``H_a = log2(sum_v p_v^a) / (1 - a)`` bits, ``a = alpha`` (2.5 by default; ``a = 1`` is
                       Shannon's entropy, ``a = inf`` the min-entropy)
``renyi_efficiency``   ``H_a / log2 |V|`` with ``|V|`` = ``tokenizer.n_vocab`` (special tokens included): Zouhar et al.
                       (2023), "Tokenization and the noiseless channel"; in ``[0, 1]``, 0 when one id is all there is
``n_distinct``         distinct ids in the encoding
``vocab_utilisation``  ``n_distinct / n_vocab``
``char_split_tokens``  tokens with a boundary inside a multi-byte UTF-8 character: the token starts or ends in the
                       middle of a character (it holds a partial character)
``char_split_rate``    ``char_split_tokens / N``
``split_chars``        characters with at least one token boundary inside them
``continuation_rate``  share of the *word tokens* (tokens that overlap a word) that start inside a word, after its
                       first byte. ``" the"`` starts a word (it begins at the space before it), ``"ing"`` of
                       ``" walk"+"ing"`` continues one; tokens of white space or of a stand-alone symbol overlap
                       no word and are left out. A word-level vocabulary scores 0.
``premium``            token premium (Petrov et al. 2023, "Language model tokenizers introduce unfairness between
                       languages"): ``N(text) / N(reference text)`` under the same tokenizer, on parallel text
                       (the same passages translated); the reference scores 1. NaN without a reference.
=====================  ===========================================================================================

Words (for ``fertility`` and ``continuation_rate``) are the matches of :data:`WORD_PATTERN`:

* in scripts written with spaces: a maximal run of non-space characters holding at least one letter, mark or digit,
  so ``"don't"``, ``"well-known"`` and ``"world!"`` are one word each, and a lone ``"—"`` or ``"..."`` is none;
* in scripts written without spaces between words (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar), no word
  segmentation is attempted: **each character (with its combining marks) counts as one word**. For Chinese and
  Japanese a character is roughly a morpheme; for Thai it is a letter, so Thai fertility is tokens per character
  and is not comparable with that of spaced languages. Pass ``word_pattern=`` to count words another way.

>>> from workbench.tokenization import train_bpe
>>> tok = train_bpe("the cat sat on the mat", vocab_size=256)         # bytes only: one token per byte
>>> m = text_metrics(tok, "the cat")
>>> m.n_tokens, m.bytes_per_token, m.n_words, m.fertility, m.continuation_rate
(7, 1.0, 2, 3.5, 0.6666666666666666)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

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

#: Column order of :class:`MetricTable` (and fields of :class:`TextMetrics`).
METRICS: tuple[str, ...] = (
    "n_bytes", "n_chars", "n_words", "n_tokens", "bytes_per_token", "chars_per_token", "fertility", "entropy",
    "renyi_entropy", "renyi_efficiency", "n_distinct", "vocab_utilisation", "char_split_tokens", "char_split_rate",
    "split_chars", "continuation_rate", "premium",
)
_COUNTS = frozenset({"n_bytes", "n_chars", "n_words", "n_tokens", "n_distinct", "char_split_tokens", "split_chars"})


# -- distributions -----------------------------------------------------------------------------------------------
def _probabilities(ids) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size == 0:
        raise ConfigurationError("No token ids given: the distribution of an empty encoding is undefined.")
    if ids.min() < 0:
        raise ConfigurationError("Token ids must be non-negative.")
    counts = np.bincount(ids)
    counts = counts[counts > 0]
    return counts / counts.sum()


def unigram_entropy(ids) -> float:
    """Shannon entropy in bits of the distribution of ``ids`` (each id's count / number of ids).

    >>> unigram_entropy([1, 2, 3, 4])
    2.0
    >>> unigram_entropy([7, 7, 7])
    0.0
    """
    p = _probabilities(ids)
    return float(max(-(p * np.log2(p)).sum(), 0.0)) + 0.0  # + 0.0: no -0.0


def renyi_entropy(ids, alpha: float = 2.5) -> float:
    """Rényi entropy of order ``alpha`` in bits: ``log2(sum p^alpha) / (1 - alpha)``; ``alpha=1`` is Shannon's
    entropy, ``alpha=0`` log2 of the number of distinct ids, ``alpha=inf`` ``-log2 max p``.

    >>> renyi_entropy([1, 2, 3, 4], alpha=2.5)     # uniform: every order gives log2(4)
    2.0
    """
    alpha = _check_alpha(alpha)
    p = _probabilities(ids)
    if alpha == 1.0:
        return unigram_entropy(ids)
    if math.isinf(alpha):
        return float(-np.log2(p.max())) + 0.0
    if alpha == 0.0:
        return float(np.log2(len(p)))
    return float(max(np.log2(np.sum(p ** alpha)) / (1.0 - alpha), 0.0)) + 0.0


def renyi_efficiency(ids, vocab_size: int, alpha: float = 2.5) -> float:
    """Zouhar et al. (2023): ``H_alpha(ids) / log2(vocab_size)``, in ``[0, 1]``.

    >>> renyi_efficiency([0, 1, 2, 3], vocab_size=4)
    1.0
    """
    if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 2:
        raise ConfigurationError(f"vocab_size must be an integer >= 2, got {vocab_size!r}.")
    return renyi_entropy(ids, alpha) / math.log2(int(vocab_size))


def _check_alpha(alpha) -> float:
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ConfigurationError(f"alpha must be a number >= 0, got {alpha!r}.") from None
    if not alpha >= 0:  # also catches NaN
        raise ConfigurationError(f"alpha must be a number >= 0, got {alpha!r}.")
    return alpha


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
@dataclass(frozen=True)
class TextMetrics:
    """Every metric of one tokenizer on one text (definitions in the module docstring; counts are ints,
    ``entropy``/``renyi_entropy`` in bits). ``premium`` is NaN until a reference is given (:func:`metric_table`)."""

    tokenizer: str
    text: str
    n_bytes: int
    n_chars: int
    n_words: int
    n_tokens: int
    bytes_per_token: float
    chars_per_token: float
    fertility: float
    entropy: float
    renyi_entropy: float
    renyi_efficiency: float
    n_distinct: int
    vocab_utilisation: float
    char_split_tokens: int
    char_split_rate: float
    split_chars: int
    continuation_rate: float
    premium: float = float("nan")
    alpha: float = 2.5

    def as_dict(self) -> dict:
        return asdict(self)


def encode_spans(tokenizer: Tokenizer, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode once: ``(ids int64[N], starts int64[N], ends int64[N])``, byte offsets into ``text``'s UTF-8.

    Bytes without a token of their own (:attr:`Tokenizer.missing_bytes`) are dropped by the encoder, so a token's
    end may then differ from the next token's start.

    >>> from workbench.tokenization import train_bpe
    >>> ids, starts, ends = encode_spans(train_bpe("ab ab", vocab_size=256), "ab")
    >>> starts.tolist(), ends.tolist()
    ([0, 1], [1, 2])
    """
    data = _utf8(text)
    arr = np.frombuffer(data, dtype=np.uint8)
    ids = np.asarray(tokenizer._encode_array(arr), dtype=np.int64)
    if tokenizer.missing_bytes and any(b in data for b in tokenizer.missing_bytes):
        # bytes without a token were skipped: find each token's real start
        starts = np.asarray(tokenizer._starts_skipping_missing(data, ids), dtype=np.int64)[:-1]
    else:
        starts = K.token_starts(ids, tokenizer._tok_len, 0)[:-1]
    ends = starts + tokenizer._tok_len[ids]
    return ids, starts, ends


def _check_text(name: str, text) -> str:
    if isinstance(text, (list, tuple)):
        if not all(isinstance(t, str) for t in text):
            raise ConfigurationError(f"Text {name!r}: a list of passages must hold only str.")
        text = "\n\n".join(text)
    if not isinstance(text, str):
        raise ConfigurationError(f"Text {name!r} must be a str (or a list of str passages), got {type(text).__name__}.")
    if not text:
        raise ConfigurationError(f"Text {name!r} is empty: metrics of an empty text are undefined.")
    return text


def _check_tokenizer(name: str, tokenizer) -> Tokenizer:
    if not isinstance(tokenizer, Tokenizer):
        raise ConfigurationError(f"Tokenizer {name!r} is a {type(tokenizer).__name__}, not a workbench Tokenizer; "
                                 "load one with load_tokenizer(...) or train one with train_bpe(...).")
    if tokenizer.n_vocab < 2:
        raise TokenizerError(f"Tokenizer {name!r} has {tokenizer.n_vocab} ids; metrics need at least 2.")
    return tokenizer


def text_metrics(tokenizer: Tokenizer, text: str, *, alpha: float = 2.5, word_pattern: str | None = None,
                 tokenizer_name: str | None = None, text_name: str = "text") -> TextMetrics:
    """Every metric of ``tokenizer`` on ``text`` from one encoding (definitions in the module docstring).

    ``text``: a str, or a list of passages (joined with blank lines). ``alpha``: order of the Rényi entropy.
    Raises :class:`~workbench.errors.ConfigurationError` for an empty text or one the tokenizer encodes to nothing.

    >>> from workbench.tokenization import train_bpe
    >>> m = text_metrics(train_bpe("aaaa", vocab_size=256), "aaaa")
    >>> m.n_tokens, m.entropy, m.n_distinct
    (4, 0.0, 1)
    """
    name = tokenizer_name or getattr(tokenizer, "name", "tokenizer")
    tokenizer = _check_tokenizer(name, tokenizer)
    text = _check_text(text_name, text)
    alpha = _check_alpha(alpha)
    data = _utf8(text)
    arr = np.frombuffer(data, dtype=np.uint8)
    ids, starts, ends = encode_spans(tokenizer, text)
    n_tokens = len(ids)
    if n_tokens == 0:
        raise ConfigurationError(f"Tokenizer {name!r} encodes text {text_name!r} to no tokens (every byte of it has "
                                 "no token in this vocabulary); its metrics are undefined.")
    n_bytes = len(data)
    # a byte that is not a UTF-8 continuation byte starts a character
    is_start = (arr & 0xC0) != 0x80
    char_start_bytes = np.flatnonzero(is_start)
    n_chars = len(char_start_bytes)
    inside = np.append(~is_start, False)                   # byte offset -> falls inside a character
    cut_start, cut_end = inside[starts], inside[ends]
    char_split_tokens = int(np.count_nonzero(cut_start | cut_end))
    boundaries = np.unique(np.concatenate([starts[cut_start], ends[cut_end]]))
    char_of_byte = np.cumsum(is_start) - 1
    split_chars = int(len(np.unique(char_of_byte[boundaries]))) if len(boundaries) else 0

    # words: character spans -> byte spans
    spans = word_spans(text, word_pattern=word_pattern)
    n_words = len(spans)
    byte_of_char = np.append(char_start_bytes, n_bytes)
    w_start, w_end = byte_of_char[spans[:, 0]], byte_of_char[spans[:, 1]]
    if n_words:
        # word tokens overlap a word: the first word ending after the token's start begins before its end
        j = np.searchsorted(w_end, starts, side="right")
        has = j < n_words
        jj = np.minimum(j, n_words - 1)
        word_token = has & (w_start[jj] < ends)
        continues = word_token & (w_start[jj] < starts)
        n_word_tokens = int(np.count_nonzero(word_token))
        continuation_rate = np.count_nonzero(continues) / n_word_tokens if n_word_tokens else float("nan")
    else:
        continuation_rate = float("nan")

    counts = np.bincount(ids)
    n_distinct = int(np.count_nonzero(counts))
    return TextMetrics(
        tokenizer=name, text=text_name, n_bytes=n_bytes, n_chars=n_chars, n_words=n_words, n_tokens=n_tokens,
        bytes_per_token=n_bytes / n_tokens, chars_per_token=n_chars / n_tokens,
        fertility=n_tokens / n_words if n_words else float("nan"),
        entropy=unigram_entropy(ids), renyi_entropy=renyi_entropy(ids, alpha),
        renyi_efficiency=renyi_efficiency(ids, tokenizer.n_vocab, alpha), n_distinct=n_distinct,
        vocab_utilisation=n_distinct / tokenizer.n_vocab, char_split_tokens=char_split_tokens,
        char_split_rate=char_split_tokens / n_tokens, split_chars=split_chars,
        continuation_rate=float(continuation_rate), alpha=alpha,
    )


def token_premium(tokenizer: Tokenizer, texts: Mapping[str, str | Sequence[str]], *, reference: str = "en") -> dict[str, float]:
    """Petrov et al. (2023): tokens of each text / tokens of the reference text, under ``tokenizer``.

    ``texts`` must be parallel (the same passages in each language); the reference scores exactly 1.

    >>> from workbench.data import parallel_texts
    >>> from workbench.tokenization import load_tokenizer
    >>> token_premium(load_tokenizer("gpt2"), parallel_texts())["en"]      # doctest: +SKIP
    1.0
    """
    texts = _check_texts(texts, reference)
    tokenizer = _check_tokenizer(getattr(tokenizer, "name", "tokenizer"), tokenizer)
    n = {k: len(tokenizer._encode_array(np.frombuffer(_utf8(v), dtype=np.uint8))) for k, v in texts.items()}
    if n[reference] == 0:
        raise ConfigurationError(f"The reference text {reference!r} encodes to no tokens; no premium can be computed.")
    return {k: v / n[reference] for k, v in n.items()}


def _check_texts(texts, reference) -> dict[str, str]:
    if not isinstance(texts, Mapping) or not texts:
        raise ConfigurationError("texts must be a non-empty dict of name (e.g. a language code) -> text.")
    if reference is not None and reference not in texts:
        raise ConfigurationError(f"Unknown reference {reference!r}: texts has {sorted(texts)}. Pass one of these, "
                                 "or reference=None for no premium.")
    if reference is not None and isinstance(texts[reference], (list, tuple)):
        n_ref = len(texts[reference])
        for name, passages in texts.items():
            if isinstance(passages, (list, tuple)) and len(passages) != n_ref:
                raise ConfigurationError(
                    f"Text {name!r} has {len(passages)} passages but the reference {reference!r} has {n_ref}; the token "
                    "premium needs parallel text (the same passages in each language).")
    return {name: _check_text(name, text) for name, text in texts.items()}


# -- the table ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricTable:
    """Every metric for every tokenizer x text.

    ``values``: float64[n_tokenizers, n_texts, n_metrics], ``values[i, j, k]`` = metric ``metrics[k]`` of tokenizer
    ``tokenizers[i]`` on text ``texts[j]``. ``reference``: the text the premium is relative to (None: premium NaN).
    ``alpha``: the Rényi order used.

    >>> table = metric_table({"gpt2": load_tokenizer("gpt2")}, {"en": "Hello world", "de": "Hallo Welt"})  # doctest: +SKIP
    >>> table.pivot("premium")                                                                            # doctest: +SKIP
    text   en   de
    tokenizer
    gpt2  1.0  1.5
    """

    values: np.ndarray
    tokenizers: tuple[str, ...]
    texts: tuple[str, ...]
    metrics: tuple[str, ...] = METRICS
    reference: str | None = "en"
    alpha: float = 2.5

    @property
    def rows(self) -> list[dict]:
        """One dict per (tokenizer, text): ``{"tokenizer", "text", <metric>: value ...}`` (counts as int)."""
        out = []
        for i, tok in enumerate(self.tokenizers):
            for j, text in enumerate(self.texts):
                out.append({"tokenizer": tok, "text": text, **self._cell(i, j)})
        return out

    def _cell(self, i: int, j: int) -> dict:
        return {m: int(v) if m in _COUNTS else float(v) for m, v in zip(self.metrics, self.values[i, j].tolist())}

    def get(self, tokenizer: str, text: str) -> dict:
        """The metrics of one cell as a dict."""
        return self._cell(self._index(self.tokenizers, tokenizer, "tokenizer"), self._index(self.texts, text, "text"))

    def metric(self, name: str) -> np.ndarray:
        """float64[n_tokenizers, n_texts] of one metric."""
        return self.values[:, :, self._index(self.metrics, name, "metric")]

    def to_pandas(self):
        """Long table: one row per (tokenizer, text), one column per metric."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def pivot(self, metric: str):
        """DataFrame tokenizers x texts of one metric (e.g. ``"bytes_per_token"``, ``"premium"``)."""
        import pandas as pd

        frame = pd.DataFrame(self.metric(metric), index=pd.Index(self.tokenizers, name="tokenizer"),
                             columns=pd.Index(self.texts, name="text"))
        return frame.astype(int) if metric in _COUNTS else frame

    @staticmethod
    def _index(names, name, what) -> int:
        try:
            return list(names).index(name)
        except ValueError:
            raise ConfigurationError(f"Unknown {what} {name!r}; the table has {list(names)}.") from None

    def __repr__(self) -> str:
        return (f"MetricTable({len(self.tokenizers)} tokenizers x {len(self.texts)} texts, reference={self.reference!r}, "
                f"alpha={self.alpha})")


def metric_table(tokenizers: Mapping[str, Tokenizer], texts: Mapping[str, str | Sequence[str]], *,
                 reference: str | None = "en", alpha: float = 2.5, word_pattern: str | None = None) -> MetricTable:
    """Every metric for every tokenizer x text, plus the token premium of each text relative to ``reference``.

    ``tokenizers``: name -> :class:`Tokenizer`. ``texts``: name (e.g. a language code) -> text, or -> list of passages
    (as :func:`workbench.data.parallel_texts` gives; joined with blank lines). The premium assumes the texts are
    parallel; with lists of passages their numbers must agree. ``reference=None`` skips the premium.

    >>> from workbench.data import parallel_texts
    >>> from workbench.tokenization import load_tokenizer
    >>> langs = {k: v for k, v in parallel_texts().items() if k in ("en", "de", "zh")}
    >>> t = metric_table({"gpt2": load_tokenizer("gpt2")}, langs)                  # doctest: +SKIP
    >>> t.pivot("premium").round(2)                                                 # doctest: +SKIP
    text        de   en    zh
    tokenizer
    gpt2      1.52  1.0  3.17
    """
    if not isinstance(tokenizers, Mapping) or not tokenizers:
        raise ConfigurationError("tokenizers must be a non-empty dict of name -> Tokenizer.")
    texts = _check_texts(texts, reference)
    alpha = _check_alpha(alpha)
    tok_names, text_names = tuple(tokenizers), tuple(texts)
    values = np.full((len(tok_names), len(text_names), len(METRICS)), np.nan)
    premium_at = METRICS.index("premium")
    n_tokens_at = METRICS.index("n_tokens")
    for i, tname in enumerate(tok_names):
        tok = _check_tokenizer(tname, tokenizers[tname])
        for j, xname in enumerate(text_names):
            row = text_metrics(tok, texts[xname], alpha=alpha, word_pattern=word_pattern, tokenizer_name=tname,
                               text_name=xname).as_dict()
            values[i, j] = [row[m] for m in METRICS]
        if reference is not None:
            ref = values[i, text_names.index(reference), n_tokens_at]
            values[i, :, premium_at] = values[i, :, n_tokens_at] / ref
    return MetricTable(values, tok_names, text_names, METRICS, reference, alpha)
