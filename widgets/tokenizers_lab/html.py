"""HTML rendering of segmentations (shared by the boundary, diff and replay views).

Panel renders every pane in its own shadow root, so each fragment carries the style sheet it needs."""

from __future__ import annotations

import bisect
import html

from workbench.tokenization.explore import Segmentation, Span, token_label

PALETTE = ("#cfe2ff", "#d1f2d9", "#ffe3c4", "#f3d1f4", "#fff3b0", "#d7ecf5")
STYLE = """
<style>
.wb-seg { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; line-height: 1.9;
          white-space: pre-wrap; word-break: break-all; }
.wb-tok { border-radius: 3px; padding: 1px 0; margin-right: 1px; }
.wb-tok.wb-diff { outline: 2px solid #d62728; }
.wb-stats { font-size: 13px; color: #444; margin: 4px 0; }
</style>
"""


def _shown(text: str, show_whitespace: bool) -> str:
    if show_whitespace:
        text = text.replace(" ", "·").replace("\t", "→").replace("\n", "↵\n")
    return html.escape(text)


def span_title(span: Span) -> str:
    parts = []
    for tid, token, rank in zip(span.ids, span.token_bytes, span.ranks):
        merge = f"merge #{rank}" if rank >= 0 else "byte"
        parts.append(f"id {tid}, {token_label(token)}, {token!r}, {merge}")
    return "\n".join(parts)


def segmentation_html(seg: Segmentation, *, show_whitespace: bool = False, marked: set[int] | None = None,
                      css_class: str = "wb-seg") -> str:
    """Coloured spans with a hover title per span (ids, bytes, merge ranks). ``marked``: byte offsets of boundaries
    to highlight; a span is outlined when one of them falls inside it or at its end."""
    cuts = sorted(marked or ())
    out = [STYLE, f'<div class="{css_class}">']
    for i, span in enumerate(seg.spans):
        colour = PALETTE[i % len(PALETTE)]
        start, end = span.byte_span
        hit = bool(cuts) and bisect.bisect_right(cuts, end) > bisect.bisect_right(cuts, start)
        cls = "wb-tok wb-diff" if hit else "wb-tok"
        out.append(f'<span class="{cls}" style="background:{colour}" data-ids="{" ".join(map(str, span.ids))}" '
                   f'title="{html.escape(span_title(span))}">{_shown(span.text, show_whitespace)}</span>')
    out.append("</div>")
    return "".join(out)


def stats_html(seg: Segmentation, css_class: str = "wb-stats") -> str:
    return (f'{STYLE}<div class="{css_class}"><b class="wb-count">{seg.n_tokens}</b> tokens · {seg.n_bytes} bytes · '
            f"{seg.bytes_per_token:.2f} bytes/token · {html.escape(seg.tokenizer_name)}</div>")
