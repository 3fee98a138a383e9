"""Token boundaries as text: whole-character groups of tokens, and ANSI-coloured terminal output.

Byte-level tokens can split a multi-byte character (an emoji is often 2-4 tokens); shown one by one each would render
as U+FFFD. :func:`token_groups` joins such runs of tokens into the smallest groups that decode cleanly.

>>> from workbench.tokenization import load_tokenizer
>>> tok = load_tokenizer("gpt2")                                       # doctest: +SKIP
>>> [(g.ids, g.text) for g in token_groups(tok, "hi 👍")]               # doctest: +SKIP
[([5303], 'hi'), ([12520, 239, 235], ' 👍')]
"""

from __future__ import annotations

from dataclasses import dataclass

ANSI_BACKGROUNDS = (44, 42, 45, 46, 43, 41)  # blue, green, magenta, cyan, yellow, red
ANSI_RESET = "\x1b[0m"


@dataclass(frozen=True)
class TokenGroup:
    """One or more consecutive tokens whose bytes decode to whole characters: ``ids``, their ``text``, and the
    byte span ``(start, end)`` in the UTF-8 input."""

    ids: list[int]
    text: str
    byte_span: tuple[int, int]


def token_groups(tok, text: str, *, max_merges: int | None = None) -> list[TokenGroup]:
    """Tokens of ``text`` grouped so that every group decodes to whole characters."""
    enc = tok.encode_with_offsets(text, max_merges=max_merges)
    data = text.encode("utf-8", "surrogatepass")
    groups: list[TokenGroup] = []
    pending: list[int] = []
    start = 0
    for tid, (s, e) in zip(enc.ids, enc.byte_spans):
        if not pending:
            start = s
        pending.append(tid)
        chunk = data[start:e]
        try:
            decoded = chunk.decode("utf-8")
        except UnicodeDecodeError:
            continue
        groups.append(TokenGroup(pending, decoded, (start, e)))
        pending = []
    if pending:
        groups.append(TokenGroup(pending, data[start:].decode("utf-8", "replace"), (start, len(data))))
    return groups


def visible_whitespace(text: str) -> str:
    """Spaces, tabs and newlines made visible (newlines are kept so lines still break)."""
    return text.replace(" ", "·").replace("\t", "→").replace("\n", "↵\n")


def ansi_boundaries(tok, text: str, *, show_whitespace: bool = False) -> str:
    """``text`` with alternating background colours per token group, for a terminal."""
    out = []
    for i, group in enumerate(token_groups(tok, text)):
        shown = visible_whitespace(group.text) if show_whitespace else group.text
        colour = ANSI_BACKGROUNDS[i % len(ANSI_BACKGROUNDS)]
        # colour each line separately so a newline does not drag the background across the terminal
        out.append("\n".join(f"\x1b[30;{colour}m{line}{ANSI_RESET}" if line else "" for line in shown.split("\n")))
    return "".join(out)
