"""GPT-2's byte-level alphabet: every byte as one printable Unicode character.

Byte-level BPE files (GPT-2's ``encoder.json``/``vocab.bpe``, Hugging Face ``tokenizer.json``) spell tokens in this
alphabet: printable bytes stand for themselves, the others are shifted to U+0100 and above (space -> ``Ġ``).

>>> bytes_to_text(b"hi there")
'hiĠthere'
>>> text_to_bytes("hiĠthere")
b'hi there'
>>> BYTE_ORDER[:3], BYTE_ORDER[-1]        # GPT-2's (and HF's trainer's) order of the 256 byte tokens
([33, 34, 35], 173)
"""

from __future__ import annotations

import numpy as np

from workbench.errors import ConfigurationError


def _bytes_to_unicode() -> dict[int, str]:
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


BYTE_TO_CHAR: dict[int, str] = _bytes_to_unicode()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_CHAR.items()}
#: The 256 bytes sorted by their byte-level character: GPT-2's ids 0..255 and HF BpeTrainer's alphabet order.
BYTE_ORDER: list[int] = sorted(range(256), key=lambda b: ord(BYTE_TO_CHAR[b]))
#: ``BYTE_RANK[b]`` = position of byte ``b`` in :data:`BYTE_ORDER`.
BYTE_RANK: np.ndarray = np.argsort(np.array(BYTE_ORDER)).astype(np.int64)


def bytes_to_text(data: bytes) -> str:
    """Spell raw bytes in the byte-level alphabet."""
    return "".join(BYTE_TO_CHAR[b] for b in data)


def text_to_bytes(text: str) -> bytes:
    """Inverse of :func:`bytes_to_text`; a character outside the alphabet is a clear error."""
    try:
        return bytes(CHAR_TO_BYTE[c] for c in text)
    except KeyError as exc:
        raise ConfigurationError(
            f"Token {text!r} is not spelled in the byte-level alphabet (character {exc.args[0]!r}); "
            "only byte-level BPE vocabularies are supported."
        ) from None
