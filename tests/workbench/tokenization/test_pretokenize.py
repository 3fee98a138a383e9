"""The Numba pre-tokenizers against their regex definition and against the anchors (HF tokenizers, tiktoken)."""

from __future__ import annotations

import inspect
from functools import cache

import numpy as np
import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.data import SAMPLES_DIR
from workbench.errors import ConfigurationError
from workbench.tokenization.pretokenize import (
    ONIGURUMA_PATTERNS,
    PATTERNS,
    PRETOKENIZERS,
    check_pretokenizer,
    reference_split,
    split_bytes,
    split_documents,
    split_text,
)
from workbench.tokenization.unicode_classes import (
    CLASS_MASK,
    CRLF,
    DIGIT,
    LETTER,
    NUMBER,
    OTHER,
    SPACE,
    UNICODE_VERSION,
    class_ranges,
    class_table,
    ranges_from_tiktoken,
    ranges_from_tokenizers_digits,
)

REGEX_NAMES = ("gpt2", "gpt4", "smollm2", "whitespace", "superword")
CORPORA = [SAMPLES_DIR / "prose_en.txt", *sorted((SAMPLES_DIR / "code").iterdir()),
           *sorted((SAMPLES_DIR / "parallel").glob("*.txt"))]

TORTURE: list[str] = [
    "", "a", " ", "  ", "'", "''", "'''s", "I'LL", "we'Re", "don't", "DON'T", "you're", "YOU'VE", "'s", "'S", "'ll've",
    "o'clock", "rock'n'roll", "' s", "x's's", "I'm 'd 'D 'M 'T 't", "'ſ x'ſ ſ'", "'ll'LL'lL'Ll", "'re'rE'Re'RE",
    "1", "12", "123", "1234", "12345", "123456", "1234567", " 1234567", "a1234567b", "x 12 345 6789", "1.5e10",
    "\u0661\u0662\u0663\u0664", "\u00bd\u00be", "\u216b\u2160", "x\u00b2\u00b3", "\u0967\u0968\u0969\u096a", "\u2460\u2461",
    "  hello", "hello  ", "hello   ", "   ", "\r\n\r\n  x", "a\n  ", "a  \n  b", "\t\tx", "x\t y", "x \t", "x\t",
    "\u00a0x", "a\u00a0\u00a0b", "a \u00a0b", "\u3000\u6f22\u5b57", "x\u2028y", "x\u2029 y", "\u0085x", " \u0085 x",
    "a\x1c\x1d\x1e\x1fb", " \x1cx", "\x1f 1", "x\u180ey", "\u200bx \u200b", "\ufeffBOM", "\u2003\u2003em",
    "a\r\n", "\r\r\n\n", ".\n\nx", "!!\r\n\r\nx", "x\n", "\n", " \n ", "  \n\n  a", "\r", " \r x", "a\n\n", "?\n \n",
    ";\r\n \r\n", " !!\n\n", "\n\n\n", "x\n \n \n", "\t\n\tx", " - x", " --\n", "(\u0444)", "\"quoted\"",
    "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family",
    "\U0001f3f3\ufe0f\u200d\U0001f308", " \U0001f600\U0001f600 x", "x\U0001f600y",
    "e\u0301", "e\u0301\u0301", "a\u0301b", " \u0301x", "Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd \u05e2\u05d5\u05dc\u05dd", "abc \u05e9\u05dc\u05d5\u05dd 123",
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a", "caf\u00e9 na\u00efve \u00c5ngstr\u00f6m",
    "def f(x):\n    return x**2  # 'sq'\n", "if (a && b) {\n\treturn;\n}", "x = [1, 22, 333, 4444]\n\n\n",
    "\U00010940\U00010941 \U000323b0",  # Unicode 17.0 letters: not letters to the anchors (Unicode 16.0)
    "x\U00011de0\U00011de1 \U00016ff4y",  # Unicode 17.0 digits: HF's Digits isolates them, its regex does not know them
    "\U00010d4a\U00010d4b \U0002ebf0",  # Unicode 16.0 / 15.1 letters: letters to everybody
]

BAD_BYTES: list[bytes] = [
    b"\xff", b"\xc3", b"a\xc3", b"\xc3a", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",
    b"\xed\xa0\x80", b"\xed\xbf\xbf x", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"hi\xe2\x82", b"\xe2\x82 x",
    b"\xf0\x9f\x98", b"x \xf0\x9f\x98", b"'\xc5", b"'\xc5\xbf", b"'\xc5\xbfx", b" \xff\xfeabc", b"\x80\x80",
    b"abc\xff 123\xfe", b"\xff'll", b"'\xffs", b"\xff\nx", b" \xff\r\n", b"\xe2\x82\xac\xe2\x82", b"1\xff2\xff3",
    b"\xc2\xa0\xc2", b"\xe3\x80\x80\xe3\x80", b"\xff  x", b"a\xff\xff\xffb", b"\xf8\x88\x80\x80\x80",
]


def _pieces(data: bytes, bounds: np.ndarray) -> list[bytes]:
    return [data[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]


def _reference_bytes(data: bytes, name: str) -> list[bytes]:
    text = data.decode("utf-8", "surrogateescape")
    return [p.encode("utf-8", "surrogateescape") for p in reference_split(text, name)]


def _check_bytes(data: bytes, name: str) -> None:
    bounds = split_bytes(data, name)
    assert bounds.dtype == np.int64 and bounds[0] == 0 and bounds[-1] == len(data)
    assert np.all(np.diff(bounds) > 0)
    pieces = _pieces(data, bounds)
    assert b"".join(pieces) == data
    assert pieces == _reference_bytes(data, name), (name, data)


def _check_text(text: str, name: str) -> None:
    pieces = split_text(text, name)
    assert "".join(pieces) == text
    assert all(pieces)
    assert pieces == reference_split(text, name), (name, text)


# -- against the definition ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PRETOKENIZERS)
def test_torture_text(name):
    for text in TORTURE:
        _check_text(text, name)
        _check_bytes(text.encode("utf-8"), name)


@pytest.mark.parametrize("name", PRETOKENIZERS)
def test_torture_invalid_utf8(name):
    for data in BAD_BYTES:
        _check_bytes(data, name)
        for text in ("I'LL 12345  ok\n", "  x"):
            _check_bytes(data + text.encode() + data, name)


@pytest.mark.parametrize("name", PRETOKENIZERS)
def test_corpora_match_reference(name):
    for path in CORPORA:
        data = path.read_bytes()
        assert _pieces(data, split_bytes(data, name)) == _reference_bytes(data, name), path.name


def test_examples_by_hand():
    assert split_text("I'LL we'Re", "gpt2") == ["I", "'", "LL", " we", "'", "Re"]
    assert split_text("I'LL we'Re", "gpt4") == ["I", "'LL", " we", "'Re"]
    assert split_text("1234567", "gpt4") == ["123", "456", "7"]
    assert split_text("1234567", "gpt2") == ["1234567"]
    assert split_text("a 123", "smollm2") == ["a", " ", "1", "2", "3"]
    assert split_text("x   y", "gpt2") == ["x", "  ", " y"]
    assert split_text("x \ty", "gpt2") == ["x", " ", "\t", "y"]
    assert split_text("x\n  ", "gpt4") == ["x", "\n  "]  # \s++$ comes before \s*[\r\n] in tiktoken's pattern
    assert split_text("x  \n  y", "gpt4") == ["x", "  \n", " ", " y"]
    assert split_text("a.\n\nb", "gpt4") == ["a", ".\n\n", "b"]
    assert split_text("hi  there ", "whitespace") == ["hi", " ", " there", " "]
    assert split_text("any thing\n", "none") == ["any thing\n"]
    assert split_bytes(b"", "gpt2").tolist() == [0]
    assert split_bytes(b"", "none").tolist() == [0]
    assert split_bytes(b"abc", "none").tolist() == [0, 3]


def test_superword_examples_by_hand():
    """SuperBPE's stage 2: words joined by single spaces, up to a sentence end, a line break or other white space."""
    assert split_text("by the way, I am a fan of the Milky Way", "superword") == ["by the way, I am a fan of the Milky Way"]
    assert split_text('"Yes, Mr. Darcy." He left.\n', "superword") == ['"Yes, Mr.', ' Darcy."', " He left.", "\n"]
    assert split_text("Why?! No... (Really.) Fine", "superword") == ["Why?!", " No...", " (Really.)", " Fine"]
    assert split_text("3.14 is e.g. pi.", "superword") == ["3.14 is e.g.", " pi."]
    assert split_text("one\ntwo three\n\nfour", "superword") == ["one", "\n", "two three", "\n", "\n", "four"]
    assert split_text("x  y\tz \u00a0w", "superword") == ["x", " ", " y", "\t", "z", " ", "\u00a0", "w"]
    assert split_text("end. ", "superword") == ["end.", " "]
    assert split_text("Fin.\u201d Et \u00bb. Oui", "superword") == ["Fin.\u201d", " Et \u00bb.", " Oui"]
    assert split_text(". x", "superword") == [".", " x"]


@settings(max_examples=250, deadline=None)
@given(text=st.text(st.one_of(st.sampled_from(list(" .!?\"')]\u2019\u201d\u00bb\n\tMr")),
                            st.characters(codec="utf-8")), max_size=40))
def test_superword_pieces_are_runs_of_whitespace_pieces(text):
    """Every superword boundary is a ``whitespace`` boundary; inside a piece, white space is only single spaces
    between non-spaces, and no sentence end is followed by white space."""
    data = text.encode()
    ours = split_bytes(data, "superword").tolist()
    assert set(ours) <= set(split_bytes(data, "whitespace").tolist())
    sentence_end = regex.compile(r"""[.!?]["')\]\u2019\u201d\u00bb]*\s""")
    for piece in _pieces(data, np.array(ours)):
        piece = piece.decode()
        if piece.strip():
            inner = piece[1:] if piece.startswith(" ") else piece
            assert not regex.search(r"\s", inner.replace(" ", "")) and "  " not in inner, piece
            assert not inner.endswith(" ") and not sentence_end.search(piece), piece


# Characters that make the patterns branch, mixed into arbitrary Unicode so that they meet often.
TRICKY = list("'sStTlLvVeErRdDmM \t\r\n\x0b\x0c0123456789.,!-") + [
    "\u017f", "\u00a0", "\u3000", "\u0085", "\x1c", "\x1f", "\u2028", "\u200b", "\u180e", "\u00e9", "\u0301",
    "\u4e2d", "\u0663", "\u00bd", "\U0001f600", "\u200d", "\U00010940", "\U00011de5", "\U00016ff5",
]
tricky_text = st.text(st.one_of(st.sampled_from(TRICKY), st.characters(codec="utf-8")), max_size=40)
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
tricky_bytes = st.lists(
    st.one_of(tricky_text.map(lambda s: s.encode("utf-8")), st.binary(max_size=4),
              st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xc5", b"\xbf"])),
    max_size=6).map(b"".join)
FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(text=tricky_text, name=st.sampled_from(PRETOKENIZERS))
def test_hypothesis_text(text, name):
    _check_text(text, name)
    _check_bytes(text.encode("utf-8"), name)


@FAST
@given(text=st.text(), name=st.sampled_from(PRETOKENIZERS))
def test_hypothesis_any_unicode(text, name):
    _check_text(text, name)


@FAST
@given(text=any_text, name=st.sampled_from(PRETOKENIZERS))
def test_hypothesis_text_with_surrogates(text, name):
    _check_text(text, name)


@FAST
@given(data=st.binary(max_size=60), name=st.sampled_from(PRETOKENIZERS))
def test_hypothesis_binary(data, name):
    _check_bytes(data, name)


@FAST
@given(data=tricky_bytes, name=st.sampled_from(PRETOKENIZERS))
def test_hypothesis_mixed_bytes(data, name):
    _check_bytes(data, name)


@FAST
@given(docs=st.lists(st.one_of(tricky_bytes, tricky_text.map(lambda t: t.encode("utf-8"))), max_size=8),
       name=st.sampled_from(PRETOKENIZERS))
def test_split_documents_is_each_document_split_on_its_own(docs, name):
    data = b"".join(docs)
    ends = np.cumsum([len(d) for d in docs], dtype=np.int64)
    want, start = [0], 0
    for d in docs:
        want += (split_bytes(d, name)[1:] + start).tolist() if d else []
        start += len(d)
    assert split_documents(data, ends, name).tolist() == want


def test_split_documents_grows_its_buffer_and_rejects_bad_ends():
    docs = [b"a b c d e f g h " * 50, b"", b"x" * 3000, b"!a" * 2000]  # one piece a byte: past the first buffer
    data = b"".join(docs)
    ends = np.cumsum([len(d) for d in docs])
    got = split_documents(data, ends, "gpt2")
    assert len(got) - 1 == 401 + 1 + 4000 and got[-1] == len(data)
    for bad in ([5, 3, len(data)], [10], [len(data) + 1], []):
        with pytest.raises(ConfigurationError, match="doc_ends"):
            split_documents(data, np.array(bad), "gpt2")


@settings(max_examples=200, deadline=None)
@given(text=tricky_text)
def test_smollm2_pattern_is_the_two_stage_definition(text):
    from workbench.tokenization.pretokenize import _pin_classes

    pinned = regex.compile(_pin_classes(PATTERNS["smollm2"], "D"))
    assert pinned.findall(text) == reference_split(text, "smollm2")


@pytest.mark.parametrize("name", PRETOKENIZERS)
@pytest.mark.parametrize("char", ["a", " ", "1", "\n", "!", "\u4e2d", "\u3000"])
def test_one_megabyte_without_split_points(name, char):
    data = (char * (1_000_000 // len(char.encode()))).encode()
    n = len(data)
    expected = [0, n]  # one piece: nothing in the pattern splits a run of one character ...
    if char == "1" and name == "gpt4":
        expected = [*range(0, n, 3), n]  # ... except \p{N}{1,3}
    elif char == "1" and name in ("smollm2", "tekken"):
        expected = list(range(n + 1))  # ... and isolated digits
    assert split_bytes(data, name).tolist() == expected
    data = b" " * (n - 1) + b"x"
    expected = [0, n] if name == "none" else [0, n - 2, n]  # the word takes the last space
    assert split_bytes(data, name).tolist() == expected


def test_output_buffer_grows():
    data = b"1" * 10_000 + b"a b c d " * 5_000  # many more pieces than len(data) // 4
    for name in PRETOKENIZERS:
        assert _pieces(data, split_bytes(data, name)) == _reference_bytes(data, name)


# -- inputs and errors ----------------------------------------------------------------------------------------------
def test_input_kinds_agree():
    data = "I'LL pay \u20ac12345 \U0001f600\n".encode() + b"\xff"
    expected = split_bytes(data, "gpt4").tolist()
    wide = np.zeros(2 * len(data), np.uint8)
    wide[::2] = np.frombuffer(data, np.uint8)
    for kind in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8), np.frombuffer(data, np.uint8).copy(),
                 wide[::2], memoryview(wide)[::2], memoryview(bytes(data)).cast("c")):
        assert split_bytes(kind, "gpt4").tolist() == expected


@pytest.mark.parametrize("bad", ["text", 42, None, [104, 105], np.zeros(3, np.int64), np.zeros((2, 2), np.uint8), 1.5])
def test_split_bytes_rejects_non_bytes(bad):
    with pytest.raises(ConfigurationError) as info:
        split_bytes(bad, "gpt2")
    assert isinstance(info.value, ValueError)
    assert "split_bytes" in str(info.value)


@pytest.mark.parametrize("bad", [b"bytes", 42, None, ["a"]])
def test_split_text_rejects_non_str(bad):
    with pytest.raises(ConfigurationError, match="split_text takes a str"):
        split_text(bad, "gpt2")
    with pytest.raises(ConfigurationError, match="reference_split takes a str"):
        reference_split(bad, "gpt2")


@pytest.mark.parametrize("bad", ["gpt3", "", None, 2, "cl100k_base"])
def test_unknown_pretokenizer(bad):
    for call in (lambda: split_bytes(b"x", bad), lambda: split_text("x", bad), lambda: reference_split("x", bad),
                 lambda: check_pretokenizer(bad)):
        with pytest.raises(ConfigurationError) as info:
            call()
        assert all(name in str(info.value) for name in PRETOKENIZERS)


def test_check_pretokenizer_canonical():
    assert [check_pretokenizer(n) for n in PRETOKENIZERS] == list(PRETOKENIZERS)
    assert check_pretokenizer(" GPT2 ") == "gpt2"
    assert set(PATTERNS) == set(PRETOKENIZERS) and PATTERNS["none"] is None


# -- the Unicode classes -------------------------------------------------------------------------------------------
def test_class_table_basics():
    table = class_table()
    assert table.shape == (0x110000,) and table.dtype == np.uint8 and not table.flags.writeable
    assert table[ord("a")] == LETTER and table[ord("\u4e2d")] == LETTER and table[ord("\u0301")] == OTHER
    assert table[ord("7")] == table[ord("\u00bd")] == table[ord("\u2167")] == NUMBER | DIGIT
    assert table[0x11DE0] == OTHER | DIGIT  # a Unicode 17.0 digit: HF's Digits isolates it, the regexes do not know it
    assert table[ord("\n")] == SPACE | CRLF and table[ord("\r")] == SPACE | CRLF and table[ord("\t")] == SPACE
    # White_Space, not str.isspace(): the information separators U+001C..U+001F are "other"; so are U+180E, U+200B
    for cp in (0x1C, 0x1D, 0x1E, 0x1F, 0x180E, 0x200B, 0xFEFF, 0xDC80, 0xDCFF, 0xD800):
        assert table[cp] == OTHER
    for cp in (0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000):
        assert table[cp] == SPACE


def test_regex_module_white_space_is_the_table():
    everything = "".join(map(chr, range(0x110000)))
    found = [m.start() for m in regex.finditer(r"\s", everything)]
    assert found == np.flatnonzero(class_table() & CLASS_MASK == SPACE).tolist()
    assert "\x1c".isspace() and not regex.match(r"\s", "\x1c")  # why \s is not str.isspace()


def test_regex_module_classes_differ_only_on_newer_code_points():
    """The pinned classes are the regex module's minus code points the anchors' Unicode has not assigned yet."""
    everything = "".join(map(chr, range(0x110000)))
    table = class_table() & CLASS_MASK
    for prop, code in ((r"\p{L}", LETTER), (r"\p{N}", NUMBER)):
        ours = set(np.flatnonzero(table == code).tolist())
        theirs = {m.start() for m in regex.finditer(prop, everything)}
        if not ours <= theirs:  # an older regex module (Unicode < 16) lags the anchors instead
            pytest.skip("the installed regex module knows an older Unicode than the anchors")
        assert len(theirs - ours) < 20_000


def _full_range_text() -> str:
    return "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)


def _as_set(ranges) -> set[int]:
    return {c for lo, hi in ranges for c in range(lo, hi + 1)}


def test_classes_match_tiktoken_full_range():
    pytest.importorskip("tiktoken")
    for prop, name in ((r"\p{L}", "L"), (r"\p{N}", "N"), (r"\s", "s")):
        assert ranges_from_tiktoken(prop) == list(class_ranges(name)), f"{prop} (pinned to Unicode {UNICODE_VERSION})"


def test_classes_match_huggingface_full_range():
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Regex
    from tokenizers import pre_tokenizers as pt

    text = _full_range_text()
    for prop, name in ((r"\p{L}+", "L"), (r"\p{N}+", "N"), (r"\s+", "s")):  # Oniguruma
        # "removed" keeps what does not match; the offsets are character offsets into text
        kept = np.ones(len(text), bool)
        for _, (a, b) in pt.Split(Regex(prop), behavior="removed").pre_tokenize_str(text):
            kept[a:b] = False
        matched = {ord(text[i]) for i in np.flatnonzero(kept).tolist()}
        assert matched == _as_set(class_ranges(name)), (tokenizers.__version__, prop)
    # Digits (smollm2's first step) uses Rust's char::is_numeric, in a newer Unicode than Oniguruma's
    assert ranges_from_tokenizers_digits() == list(class_ranges("D"))
    assert _as_set(class_ranges("N")) < _as_set(class_ranges("D"))


# -- against the anchors --------------------------------------------------------------------------------------------
def _bytes_to_unicode() -> dict[str, int]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1), *range(ord("\u00ae"), 256)]
    mapping, shift = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shift)
            shift += 1
    return {c: b for b, c in mapping.items()}


@cache
def _hf_pretokenizer(name: str):
    pytest.importorskip("tokenizers")
    from tokenizers import Regex
    from tokenizers import pre_tokenizers as pt

    byte_level = pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if name == "gpt2":
        return byte_level
    if name == "smollm2":  # SmolLM2's tokenizer.json
        return pt.Sequence([pt.Digits(individual_digits=True), byte_level])
    return pt.Split(Regex(ONIGURUMA_PATTERNS[name]), behavior="isolated")


def hf_pieces(text: str, name: str) -> list[bytes]:
    pieces = [piece for piece, _ in _hf_pretokenizer(name).pre_tokenize_str(text)]
    if name in ("gpt2", "smollm2"):  # byte-level alphabet back to bytes
        to_byte = _bytes_to_unicode()
        return [bytes(to_byte[c] for c in piece) for piece in pieces]
    return [piece.encode() for piece in pieces]


def _ours(text: str, name: str) -> list[bytes]:
    data = text.encode()
    return _pieces(data, split_bytes(data, name))


@pytest.mark.parametrize("name", REGEX_NAMES)
def test_huggingface_torture(name):
    for text in TORTURE:
        assert _ours(text, name) == hf_pieces(text, name), text


@pytest.mark.parametrize("name", REGEX_NAMES)
def test_huggingface_corpora(name):
    for path in CORPORA:
        text = path.read_text(encoding="utf-8")
        assert _ours(text, name) == hf_pieces(text, name), path.name


@settings(max_examples=250, deadline=None)
@given(text=tricky_text, name=st.sampled_from(REGEX_NAMES))
def test_hypothesis_huggingface(text, name):
    assert _ours(text, name) == hf_pieces(text, name)


def test_huggingface_tekken():
    """tekken is the regex module's pattern, unpinned: it agrees with HF except on Unicode 17.0 letters/digits."""
    newer = {"\U00010940", "\U00011de0", "\U00016ff4", "\U000323b0"}
    texts = [t for t in TORTURE if not newer & set(t)] + [p.read_text(encoding="utf-8") for p in CORPORA]
    for text in texts:
        assert _ours(text, "tekken") == hf_pieces(text, "tekken"), text[:80]


def test_oniguruma_reads_possessive_interval_differently():
    """Why ONIGURUMA_PATTERNS exists: Ruby syntax reads ``{1,3}+`` as a repeated interval, not as possessive."""
    pytest.importorskip("tokenizers")
    from tokenizers import Regex
    from tokenizers import pre_tokenizers as pt

    digits = [p for p, _ in pt.Split(Regex(PATTERNS["gpt4"]), behavior="isolated").pre_tokenize_str("1234567")]
    assert digits == ["1234567"] != split_text("1234567", "gpt4")
    assert hf_pieces("1234567", "gpt4") == [b"123", b"456", b"7"]


def test_gpt4_pattern_is_tiktokens_cl100k():
    pytest.importorskip("tiktoken")
    from tiktoken_ext import openai_public

    assert f'r"""{PATTERNS["gpt4"]}"""' in inspect.getsource(openai_public.cl100k_base)


def _tiktoken_exact(text: str, pattern: str) -> list[bytes]:
    """tiktoken's own regex pieces of a short ``text``: every substring is in the vocabulary, so each piece is one token."""
    import tiktoken

    data = text.encode()
    ranks = {bytes([i]): i for i in range(256)}
    for sub in sorted({data[i:j] for i in range(len(data)) for j in range(i + 2, len(data) + 1)}):
        ranks[sub] = len(ranks)
    enc = tiktoken.Encoding("workbench-test", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    return [enc.decode_single_token_bytes(t) for t in enc.encode_ordinary(text)]


def _tiktoken_patterns() -> dict[str, str]:
    pytest.importorskip("tiktoken")
    from tiktoken_ext import openai_public

    # tiktoken's GPT-2 regex is written differently (possessive, \s++$) but means the same as HF's
    return {"gpt4": PATTERNS["gpt4"], "gpt2": openai_public.r50k_pat_str}


def test_tiktoken_torture():
    patterns = _tiktoken_patterns()
    for text in TORTURE:
        for name, pattern in patterns.items():
            assert _ours(text, name) == _tiktoken_exact(text, pattern), (name, text)


@settings(max_examples=150, deadline=None)
@given(text=st.text(st.one_of(st.sampled_from(TRICKY), st.characters(codec="utf-8")), max_size=16))
def test_hypothesis_tiktoken(text):
    for name, pattern in _tiktoken_patterns().items():
        assert _ours(text, name) == _tiktoken_exact(text, pattern), name


def _tiktoken_boundaries_check(text: str, pattern: str, pieces: list[bytes]) -> None:
    """For long texts: (a) with our pieces as the vocabulary tiktoken reproduces them, so its boundaries are a
    subset of ours; (b) with every pair of adjacent pieces in the vocabulary no token straddles one of our
    boundaries, so tiktoken did not merge two of our pieces."""
    import tiktoken

    def encode(vocab: set[bytes]) -> list[bytes]:
        ranks = {bytes([i]): i for i in range(256)}
        for token in sorted(vocab - set(ranks)):
            ranks[token] = len(ranks)
        enc = tiktoken.Encoding("workbench-test", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
        return [enc.decode_single_token_bytes(t) for t in enc.encode_ordinary(text)]

    assert encode(set(pieces)) == pieces
    ours = set(np.cumsum([len(p) for p in pieces]).tolist())
    tokens = encode({a + b for a, b in zip(pieces, pieces[1:])})
    ends = np.cumsum([len(t) for t in tokens]).tolist()
    assert ours <= set(ends)


@pytest.mark.parametrize("name", ["gpt2", "gpt4"])
def test_tiktoken_corpora(name):
    pattern = _tiktoken_patterns()[name]
    for path in CORPORA:
        text = path.read_text(encoding="utf-8")
        _tiktoken_boundaries_check(text, pattern, _ours(text, name))
