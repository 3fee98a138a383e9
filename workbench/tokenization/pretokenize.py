r"""Pre-tokenizers for byte-level BPE: split raw bytes into the pieces BPE runs inside.

Each pre-tokenizer is a regex matched left to right (``regex.findall``); the pieces tile the input, so splitting is
lossless. Seven are implemented (:data:`PATTERNS` holds the regexes):

=============  ===============================================================================================
``gpt2``       GPT-2 / Hugging Face ``ByteLevel(use_regex=True)``
``gpt4``       tiktoken ``cl100k_base`` (the ``pat_str`` of the installed tiktoken, possessive quantifiers too)
``smollm2``    SmolLM2: ``Digits(individual_digits=True)`` then ``ByteLevel``: every digit (``\p{N}``) is its own
               piece, each stretch between them is split with the ``gpt2`` regex
``whitespace`` split only at white space, a single leading space stays on the word (GPT-2 style)
``superword``  SuperBPE's second stage: like ``whitespace``, but a single space between two words no longer splits,
               so a piece is a run of words up to a sentence end (``.``/``!``/``?`` and closing quotes or
               brackets, before white space), a line break or any other white space (tab, two spaces ...)
``tekken``     Mistral's tekken (``mistral_common``'s ``tekken_*.json`` ``config.pattern``): cased words
               (``\p{Lu}``... then ``\p{Ll}``...), every digit alone, punctuation runs with trailing newlines or
               ``/``. **Slow path**: split with the ``regex`` module, no Numba scanner (see :func:`split_bytes`)
``none``       the whole input is one piece
=============  ===============================================================================================

Byte-level semantics: the input is raw bytes and may be invalid UTF-8. It is decoded with
``errors="surrogateescape"`` (each invalid byte becomes one lone surrogate, which is neither a letter, a number nor
white space), split with the regex, and each piece is encoded back; :func:`split_bytes` returns the piece
boundaries of exactly that. ``\p{L}``, ``\p{N}`` and ``\s`` mean what they mean to the anchors (tiktoken and
Hugging Face tokenizers, Unicode 16.0), see :mod:`workbench.tokenization.unicode_classes`.

The fast path is a Numba scanner per pattern (:mod:`workbench.tokenization.pretokenize_kernels`) that decodes UTF-8
on the fly and looks each code point's class up in a table; :func:`reference_split` is the slow ``regex``-module
definition it is tested against.

>>> split_text("I'LL pay 12345  now!\n", "gpt2")
['I', "'", 'LL', ' pay', ' 12345', ' ', ' now', '!', '\n']
>>> split_text("I'LL pay 12345  now!\n", "gpt4")
['I', "'LL", ' pay', ' ', '123', '45', ' ', ' now', '!\n']
>>> split_text("pay 12345", "smollm2")
['pay', ' ', '1', '2', '3', '4', '5']
>>> split_text('"Yes, Mr. Darcy." He left.\n', "superword")
['"Yes, Mr.', ' Darcy."', ' He left.', '\n']
>>> split_bytes(b"hi \xff there", "gpt2").tolist()
[0, 2, 4, 10]
"""

from __future__ import annotations

import functools
import re

import numpy as np
import regex

from workbench.errors import ConfigurationError
from workbench.tokenization.pretokenize_kernels import (
    SCANNER_CODES,
    scan_cl100k,
    scan_documents,
    scan_gpt2,
    scan_superword,
    scan_whitespace,
)
from workbench.tokenization.unicode_classes import class_table, regex_class

PRETOKENIZERS: tuple[str, ...] = ("gpt2", "gpt4", "smollm2", "whitespace", "superword", "tekken", "none")

#: The regex that defines each pre-tokenizer (``regex`` module syntax; ``"none"`` has none). Matched with
#: ``regex.findall`` these give :func:`split_text`'s pieces, up to the Unicode version of ``\p{L}``/``\p{N}`` (see
#: :func:`reference_split`). cl100k's ``(?i:...)`` is Unicode case folding: ``'ſ`` (U+017F) is a contraction too.
PATTERNS: dict[str, str | None] = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    # tiktoken_ext/openai_public.py, cl100k_base()["pat_str"] (tiktoken 0.14)
    "gpt4": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    # One regex equal to "isolate every \p{N}, then split each stretch between them with gpt2's regex".
    "smollm2": r"""\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+""",
    "whitespace": r""" ?\S+|\s+(?!\S)|\s+""",
    # Words joined by single spaces, up to a sentence end: [.!?]+ and closing quotes/brackets, before white space.
    "superword": r"""(?:[^\s.!?]|[.!?]+(?!["')\]’”»]*\s)| (?=\S))+(?:[.!?]+["')\]’”»]*)?"""
                 r"""|[.!?]+["')\]’”»]*|\s+(?!\S)|\s+""",
    # mistral_common/data/tekken_240911.json (and tekken_240718.json), config["pattern"] (mistral_common 1.13)
    "tekken": r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
              r"""|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
              r"""|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    "none": None,
}

#: The same regexes spelled for Oniguruma (Hugging Face ``Split(Regex(...))`` in a ``tokenizer.json``). Oniguruma's
#: Ruby syntax reads ``{1,3}+`` as "``{1,3}`` repeated" rather than possessive, which would turn cl100k's
#: ``\p{N}{1,3}+`` into whole digit runs; the plain ``{1,3}`` means the same thing here (nothing follows it).
ONIGURUMA_PATTERNS: dict[str, str | None] = {
    **PATTERNS,
    "gpt4": PATTERNS["gpt4"].replace(r"\p{N}{1,3}+", r"\p{N}{1,3}"),
}

_SURROGATE = re.compile("[\ud800-\udfff]")


def check_pretokenizer(name) -> str:
    """The canonical name of pre-tokenizer ``name`` (case-insensitive); ConfigurationError if there is none.

    >>> check_pretokenizer("GPT4")
    'gpt4'
    """
    if isinstance(name, str) and name.strip().lower() in PRETOKENIZERS:
        return name.strip().lower()
    raise ConfigurationError(f"unknown pre-tokenizer {name!r}; choose one of: {', '.join(PRETOKENIZERS)}.")


# -- the slow definition --------------------------------------------------------------------------------------------
def _pin_classes(pattern: str, numbers: str = "N") -> str:
    r"""``pattern`` with ``\p{L}``, ``\p{N}``, ``\s``, ``\S`` replaced by the pinned (anchor) classes, spelled out.

    ``numbers="D"`` reads ``\p{N}`` as what HF's ``Digits`` isolates (for smollm2's pattern).
    """
    space = regex_class("s")
    members = {r"\p{L}": regex_class("L"), r"\p{N}": regex_class(numbers), r"\s": space}
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            token = pattern[i:pattern.index("}", i) + 1] if pattern[i + 1] in "pP" else pattern[i:i + 2]
            if token in members:
                out.append(members[token] if in_class else f"[{members[token]}]")
            elif token == r"\S" and not in_class:
                out.append(f"[^{space}]")
            elif token[1] in "pPSdDwW":
                raise ConfigurationError(f"cannot pin class {token!r} in pattern {pattern!r}")
            else:
                out.append(token)
            i += len(token)
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out)


#: Pre-tokenizers without a Numba scanner: :func:`split_bytes` runs their regex (the slow path).
REGEX_ONLY: frozenset[str] = frozenset({"tekken"})


@functools.cache
def _reference_regex(name: str):
    if name in REGEX_ONLY:  # \p{Lu}, \p{M} ... are not pinned: the regex module's own Unicode tables
        return regex.compile(PATTERNS[name])
    return regex.compile(_pin_classes(PATTERNS[name], "D" if name == "smollm2" else "N"))


def reference_split(text: str, pretokenizer: str) -> list[str]:
    r"""The definition: ``regex.findall`` of the pre-tokenizer's pattern, classes pinned to the anchors' Unicode.

    Slow (pure ``regex``); used by the tests and the docs (and by :func:`split_bytes` for ``tekken``, whose classes
    ``\p{Lu}``, ``\p{Ll}``, ``\p{M}`` ... are the ``regex`` module's, not pinned). ``smollm2`` is computed literally as Hugging Face does it:
    every digit (``\p{N}`` as Rust's ``char::is_numeric`` sees it, class ``"D"``) isolated, then the ``gpt2`` regex
    on each stretch in between.

    >>> reference_split("x1 2", "smollm2")
    ['x', '1', ' ', '2']
    """
    name = check_pretokenizer(pretokenizer)
    if not isinstance(text, str):
        raise ConfigurationError(f"reference_split takes a str, not {type(text).__name__}.")
    if name == "none":
        return [text] if text else []
    if name == "smollm2":
        gpt2 = _reference_regex("gpt2")
        pieces: list[str] = []
        digits = f"[{regex_class('D')}]"
        for part in regex.split(f"({digits})", text):
            if len(part) == 1 and regex.fullmatch(digits, part):
                pieces.append(part)
            elif part:
                pieces.extend(gpt2.findall(part))
        return pieces
    return _reference_regex(name).findall(text)


# -- public API -----------------------------------------------------------------------------------------------------
def _as_bytes_array(data) -> np.ndarray:
    """A read-only, contiguous uint8 view of ``data`` (one array type, so Numba compiles each scanner once)."""
    if isinstance(data, (bytes, bytearray)):
        arr = np.frombuffer(data, dtype=np.uint8)
    elif isinstance(data, memoryview):
        try:
            arr = np.frombuffer(data, dtype=np.uint8)
        except (ValueError, BufferError):
            arr = np.frombuffer(data.tobytes(), dtype=np.uint8)
    elif isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise ConfigurationError(
                f"split_bytes takes a 1-D uint8 array, not {data.ndim}-D {data.dtype}; "
                "encode text with text.encode('utf-8') or use split_text().")
        arr = np.ascontiguousarray(data)
    elif isinstance(data, str):
        raise ConfigurationError("split_bytes takes bytes; for a str use split_text(text, ...) "
                                 "or pass text.encode('utf-8').")
    else:
        raise ConfigurationError(f"split_bytes takes bytes, bytearray, memoryview or a uint8 array, "
                                 f"not {type(data).__name__}.")
    if arr.flags.writeable:
        arr = arr.view()
        arr.flags.writeable = False
    return arr


def split_bytes(data: bytes | bytearray | memoryview | np.ndarray, pretokenizer: str) -> np.ndarray:
    """Piece boundaries of ``data`` under ``pretokenizer``: int64 ``bounds`` of length ``n_pieces + 1``.

    ``bounds[0] == 0``, ``bounds[-1] == len(data)``, strictly increasing; piece ``i`` is
    ``data[bounds[i]:bounds[i + 1]]`` (offsets in bytes). Empty input gives ``array([0])``. Linear time; invalid
    UTF-8 is allowed. Call :func:`warm_up` at start-up to keep Numba's first-call compilation out of the way.

    >>> split_bytes(b"we're 42", "gpt2").tolist()     # "we", "'re", " 42"
    [0, 2, 5, 8]
    """
    name = check_pretokenizer(pretokenizer)
    arr = _as_bytes_array(data)
    n = arr.shape[0]
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    if name == "none":
        return np.array([0, n], dtype=np.int64)
    if name in REGEX_ONLY:
        return _split_bytes_regex(arr, name)
    table = class_table()
    # The scanners fill a fixed buffer and stop when it is full; a match depends only on the text from its start,
    # so scanning resumes at the last boundary. (Growing the buffer inside the kernel costs a third of the speed.)
    out = np.empty(n // 4 + 16, dtype=np.int64)
    out[0] = 0
    k, pos = 1, 0
    while True:
        if name == "gpt2" or name == "smollm2":
            k, pos = scan_gpt2(arr, table, name == "smollm2", pos, out, k)
        elif name == "gpt4":
            k, pos = scan_cl100k(arr, table, pos, out, k)
        elif name == "superword":
            k, pos = scan_superword(arr, table, pos, out, k)
        else:
            k, pos = scan_whitespace(arr, table, pos, out, k)
        if pos >= n:
            return out[:k].copy()
        bigger = np.empty(2 * out.shape[0], dtype=np.int64)
        bigger[:k] = out[:k]
        out = bigger


def split_documents(data, doc_ends, pretokenizer: str) -> np.ndarray:
    """Piece boundaries of several documents laid end to end in ``data``, each split on its own (no piece crosses a
    document end): the concatenation of what :func:`split_bytes` gives for each document, offsets shifted.

    ``doc_ends`` int64 [D]: the end offset of every document (cumulative, non-decreasing, the last ``len(data)``).
    One Numba call scans every document, which is how many small in-memory documents are counted as fast as one
    large one.

    >>> split_documents(b"ab cdef", np.array([3, 7]), "gpt2").tolist()    # "ab", " " | "cdef" (not " cdef")
    [0, 2, 3, 7]
    """
    name = check_pretokenizer(pretokenizer)
    arr = _as_bytes_array(data)
    ends = np.ascontiguousarray(doc_ends, dtype=np.int64)
    if ends.ndim != 1 or (ends.size == 0 and arr.shape[0] > 0) or (
            ends.size and (ends[-1] != arr.shape[0] or ends[0] < 0 or (np.diff(ends) < 0).any())):
        raise ConfigurationError("doc_ends must be the non-decreasing end offsets of the documents, the last equal to "
                                 "len(data).")
    if arr.shape[0] == 0:
        return np.zeros(1, dtype=np.int64)
    if name == "none" or name in REGEX_ONLY:
        parts, start = [np.zeros(1, np.int64)], 0
        for end in ends.tolist():
            if end > start:
                parts.append(split_bytes(arr[start:end], name)[1:] + start)
            start = end
        return np.concatenate(parts)
    table = class_table()
    out = np.empty(arr.shape[0] // 4 + 16, dtype=np.int64)
    out[0] = 0
    k, d = 1, 0
    while True:
        k, d = scan_documents(arr, ends, table, SCANNER_CODES[name], out, k, d)
        if d >= ends.shape[0]:
            return out[:k].copy()
        need = int(ends[d] - (0 if d == 0 else ends[d - 1]))
        bigger = np.empty(max(2 * out.shape[0], k + need + 16), dtype=np.int64)
        bigger[:k] = out[:k]
        out = bigger


def _split_bytes_regex(arr: np.ndarray, name: str) -> np.ndarray:
    """The slow path of :func:`split_bytes`: :func:`reference_split` on ``arr`` decoded with ``surrogateescape``,
    character offsets turned back into byte offsets (a few MB/s, against the scanners' hundreds)."""
    text = arr.tobytes().decode("utf-8", "surrogateescape")
    pieces = _reference_regex(name).findall(text)
    char_bounds = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)), out=char_bounds[1:])
    if len(text) == arr.shape[0]:  # ASCII: characters are bytes
        return char_bounds
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    # UTF-8 length of each character; an escaped byte (U+DC80..U+DCFF) stands for one byte
    width = 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000) - 2 * ((cps >= 0xDC80) & (cps <= 0xDCFF))
    byte_of_char = np.zeros(cps.shape[0] + 1, dtype=np.int64)
    np.cumsum(width, out=byte_of_char[1:])
    return byte_of_char[char_bounds]


def split_text(text: str, pretokenizer: str) -> list[str]:
    """``text`` split into pieces (str) by ``pretokenizer``; equals :func:`reference_split`, only faster.

    Lone surrogates in ``text`` are allowed (each is one "other" character, as in the regex).

    >>> split_text("Hello  world", "whitespace")
    ['Hello', ' ', ' world']
    """
    name = check_pretokenizer(pretokenizer)
    if not isinstance(text, str):
        raise ConfigurationError(f"split_text takes a str, not {type(text).__name__}; for bytes use split_bytes().")
    if text.isascii():
        bounds = split_bytes(text.encode("ascii"), name).tolist()
        return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: U+FFFF is "other" too and one character, so bounds carry over
        data = _SURROGATE.sub("\uffff", text).encode("utf-8")
    bounds = split_bytes(data, name)
    arr = np.frombuffer(data, dtype=np.uint8)
    chars_before = np.zeros(arr.shape[0] + 1, dtype=np.int64)
    np.cumsum((arr & 0xC0) != 0x80, out=chars_before[1:])
    cuts = chars_before[bounds].tolist()
    return [text[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


def warm_up() -> None:
    """Compile (or load from Numba's cache) every scanner, so the first real call is fast."""
    for name in PRETOKENIZERS:
        split_bytes(b"warm up: I'm 42 \xff\n", name)
