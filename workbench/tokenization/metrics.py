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
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from workbench.errors import ConfigurationError
from workbench.tokenization.counts import (  # noqa: F401 - re-exported: where the metrics' definitions are
    UNSPACED_SCRIPTS,
    WORD_PATTERN,
    TextCounts,
    _check_tokenizer,
    count_words,
    encode_spans,
    text_counts,
    word_spans,
)
from workbench.tokenization.tokenizer import Tokenizer, _utf8

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
    return _distribution(np.bincount(ids))


def _distribution(counts: np.ndarray) -> np.ndarray:
    """The probabilities of the ids seen, from a histogram of ids (``counts[v]`` = occurrences of id ``v``)."""
    counts = counts[counts > 0]
    return counts / counts.sum()


def _shannon(p: np.ndarray) -> float:
    return float(max(-(p * np.log2(p)).sum(), 0.0)) + 0.0  # + 0.0: no -0.0


def _renyi(p: np.ndarray, alpha: float) -> float:
    if alpha == 1.0:
        return _shannon(p)
    if math.isinf(alpha):
        return float(-np.log2(p.max())) + 0.0
    if alpha == 0.0:
        return float(np.log2(len(p)))
    return float(max(np.log2(np.sum(p ** alpha)) / (1.0 - alpha), 0.0)) + 0.0


def unigram_entropy(ids) -> float:
    """Shannon entropy in bits of the distribution of ``ids`` (each id's count / number of ids).

    >>> unigram_entropy([1, 2, 3, 4])
    2.0
    >>> unigram_entropy([7, 7, 7])
    0.0
    """
    return _shannon(_probabilities(ids))


def renyi_entropy(ids, alpha: float = 2.5) -> float:
    """Rényi entropy of order ``alpha`` in bits: ``log2(sum p^alpha) / (1 - alpha)``; ``alpha=1`` is Shannon's
    entropy, ``alpha=0`` log2 of the number of distinct ids, ``alpha=inf`` ``-log2 max p``.

    >>> renyi_entropy([1, 2, 3, 4], alpha=2.5)     # uniform: every order gives log2(4)
    2.0
    """
    alpha = _check_alpha(alpha)
    return _renyi(_probabilities(ids), alpha)


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
    skipped_bytes: int = 0   # corpus files only: bytes left out because they are not UTF-8 (invalid="skip")

    def as_dict(self) -> dict:
        return asdict(self)


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


def metrics_from_counts(counts: TextCounts, *, alpha: float = 2.5, tokenizer_name: str = "tokenizer",
                        text_name: str = "text") -> TextMetrics:
    """Every metric from the counts (of one text, or added up over the pieces of a corpus).

    >>> from workbench.tokenization import train_bpe
    >>> tok = train_bpe("the cat sat on the mat", vocab_size=256)
    >>> c = text_counts(tok, b"the cat") + text_counts(tok, b" sat")
    >>> metrics_from_counts(c).n_tokens == text_metrics(tok, "the cat sat").n_tokens
    True
    """
    alpha = _check_alpha(alpha)
    n_tokens, n_words = counts.n_tokens, counts.n_words
    if n_tokens == 0:
        raise ConfigurationError(f"Tokenizer {tokenizer_name!r} encodes text {text_name!r} to no tokens (it is empty, "
                                 "or every byte of it has no token in this vocabulary); its metrics are undefined.")
    p = _distribution(counts.id_counts)
    n_distinct = int(np.count_nonzero(counts.id_counts))
    renyi = _renyi(p, alpha)
    return TextMetrics(
        tokenizer=tokenizer_name, text=text_name, n_bytes=counts.n_bytes, n_chars=counts.n_chars, n_words=n_words,
        n_tokens=n_tokens, bytes_per_token=counts.n_bytes / n_tokens, chars_per_token=counts.n_chars / n_tokens,
        fertility=n_tokens / n_words if n_words else float("nan"),
        entropy=_shannon(p), renyi_entropy=renyi, renyi_efficiency=renyi / math.log2(int(counts.n_vocab)),
        n_distinct=n_distinct, vocab_utilisation=n_distinct / counts.n_vocab,
        char_split_tokens=counts.char_split_tokens, char_split_rate=counts.char_split_tokens / n_tokens,
        split_chars=counts.split_chars,
        continuation_rate=counts.n_continuing / counts.n_word_tokens if counts.n_word_tokens else float("nan"),
        alpha=alpha, skipped_bytes=counts.skipped_bytes,
    )


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
    try:
        data, same = text.encode("utf-8"), text
    except UnicodeEncodeError:  # surrogates, replaced in the bytes: the counts decode those instead of ``text``
        data, same = _utf8(text), None
    counts = text_counts(tokenizer, data, word_pattern=word_pattern, text=same)
    return metrics_from_counts(counts, alpha=alpha, tokenizer_name=name, text_name=text_name)


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
    skipped_bytes: np.ndarray | None = None  # int64[n_tokenizers, n_texts]: corpus bytes left out (not UTF-8)

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


def corpus_metrics(tokenizer: Tokenizer, paths, *, client=None, alpha: float = 2.5, word_pattern: str | None = None,
                   range_bytes: int | None = None, progress=None, tokenizer_name: str | None = None,
                   text_name: str = "corpus", invalid: str = "error") -> TextMetrics:
    """Every metric of ``tokenizer`` over the files of ``paths`` (files or folders; a corpus too large to hold in
    memory), measured in units of a few MB here, or on the workers of a Dask ``client``
    (`workbench.distributed.connect`); see `corpus_files.corpus_counts`. Each file is measured on its own: for one
    file the values equal `text_metrics` on its text. ``progress``: a `Progress` per unit. UTF-8 text only:
    ``invalid="error"`` names a file that is not, ``"skip"`` leaves its text out and reports it in ``skipped_bytes``.

    >>> from pathlib import Path
    >>> m = corpus_metrics(load_tokenizer("gpt2"), [Path("crawl/")], client=connect(workers=8))   # doctest: +SKIP
    """
    from workbench.tokenization.corpus_files import corpus_counts

    alpha = _check_alpha(alpha)
    name = tokenizer_name or getattr(tokenizer, "name", "tokenizer")
    counts = corpus_counts(_check_tokenizer(name, tokenizer), paths, client=client, word_pattern=word_pattern,
                           range_bytes=range_bytes, progress=progress, invalid=invalid)
    return metrics_from_counts(counts, alpha=alpha, tokenizer_name=name, text_name=text_name)


def is_files(value) -> bool:
    """Whether a `metric_table` text is corpus files (a ``Path``, or a non-empty list of ``Path``) rather than text."""
    if isinstance(value, os.PathLike):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, os.PathLike) for v in value)


def metric_table(tokenizers: Mapping[str, Tokenizer], texts: Mapping[str, str | Sequence[str]], *,
                 reference: str | None = "en", alpha: float = 2.5, word_pattern: str | None = None,
                 client=None, progress=None, invalid: str = "error") -> MetricTable:
    """Every metric for every tokenizer x text, plus the token premium of each text relative to ``reference``.

    ``tokenizers``: name -> :class:`Tokenizer`. ``texts``: name (e.g. a language code) -> text, or -> list of passages
    (as :func:`workbench.data.parallel_texts` gives; joined with blank lines), or -> corpus files (a ``pathlib.Path``
    or a list of them, files or folders: measured in pieces by `corpus_metrics`, on the workers of ``client`` when
    one is given; a ``str`` is always text). The premium assumes the texts are parallel; with lists of passages their
    numbers must agree. ``reference=None`` skips the premium. ``progress`` (a `Progress` per unit) and
    ``invalid`` (text that is not UTF-8: ``"error"`` or ``"skip"``, see `corpus_metrics`) for files; the bytes left
    out are in the table's ``skipped_bytes``.

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
    if not isinstance(texts, Mapping) or not texts:
        raise ConfigurationError("texts must be a non-empty dict of name (e.g. a language code) -> text or files.")
    files = {k: [v] if isinstance(v, os.PathLike) else list(v) for k, v in texts.items() if is_files(v)}
    order = tuple(texts)
    plain = {k: v for k, v in texts.items() if k not in files}
    if reference is not None and reference not in texts:
        raise ConfigurationError(f"Unknown reference {reference!r}: texts has {sorted(texts)}. Pass one of these, "
                                 "or reference=None for no premium.")
    texts = {**(_check_texts(plain, reference if reference in plain else None) if plain else {}), **files}
    alpha = _check_alpha(alpha)
    tok_names, text_names = tuple(tokenizers), order
    values = np.full((len(tok_names), len(text_names), len(METRICS)), np.nan)
    skipped = np.zeros((len(tok_names), len(text_names)), dtype=np.int64)
    premium_at = METRICS.index("premium")
    n_tokens_at = METRICS.index("n_tokens")
    for i, tname in enumerate(tok_names):
        tok = _check_tokenizer(tname, tokenizers[tname])
        for j, xname in enumerate(text_names):
            if xname in files:
                m = corpus_metrics(tok, files[xname], client=client, alpha=alpha, word_pattern=word_pattern,
                                   progress=progress, tokenizer_name=tname, text_name=xname, invalid=invalid)
                skipped[i, j] = m.skipped_bytes
            else:
                m = text_metrics(tok, texts[xname], alpha=alpha, word_pattern=word_pattern, tokenizer_name=tname,
                                 text_name=xname)
            row = m.as_dict()
            values[i, j] = [row[m] for m in METRICS]
        if reference is not None:
            ref = values[i, text_names.index(reference), n_tokens_at]
            values[i, :, premium_at] = values[i, :, n_tokens_at] / ref
    return MetricTable(values, tok_names, text_names, METRICS, reference, alpha, skipped)
