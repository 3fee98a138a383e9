"""Panel's stylesheets from this installation, not from cdn.holoviz.org, for views shown in a notebook.

With ``pn.extension(inline=True)`` Panel inlines BokehJS, its own JavaScript and the stylesheets of a view's *first*
render, but not the stylesheets of a later update: when a pane's object changes over the notebook comm (the
Overview's table after a keystroke, a lab's HTML after a slider move), Panel 1.9 re-sends ``loading.css``,
``markdown.css`` and the theme's ``default.css``/``native.css`` as ``ImportedStyleSheet`` links to
``https://cdn.holoviz.org/...`` (and, because the first render had swapped those very models for inline copies,
BokehJS also logs "reference ... isn't known"). Offline, the view loses its styling after its first update.

:func:`install` closes that gap where Panel builds a model's properties (``Reactive._get_properties``) and where it
sends an update (``Reactive._update_model``): when ``pn.config.inline`` is on and the document is a notebook's (no
server session), each ``ImportedStyleSheet`` whose file ships in Panel's ``dist`` folder becomes an
``InlineStyleSheet`` with that file's text, one per document and URL, so an update re-sends the same models and
BokehJS sees no change. Served apps (``panel serve``, ``workbench serve``) are untouched: they load these files from
their own server. Upstream: holoviz/panel#8707 fixed the ``?v=`` query for layouts; pane updates still take the
path patched here (Panel 1.9.4).
"""

from __future__ import annotations

import weakref
from typing import Any

from bokeh.document import Document
from bokeh.models import ImportedStyleSheet, InlineStyleSheet
from panel.config import config
from panel.io.resources import CDN_DIST, DIST_DIR
from panel.io.state import state
from panel.reactive import Reactive

# document -> {stylesheet URL -> the InlineStyleSheet that stands for it in that document}
_INLINED: weakref.WeakKeyDictionary[Document, dict[str, InlineStyleSheet]] = weakref.WeakKeyDictionary()
_CSS_TEXT: dict[str, str | None] = {}


def _local_css(url: str) -> str | None:
    """The text of a ``cdn.holoviz.org/panel/<version>/dist/...`` stylesheet from this installation, else None."""
    if url not in _CSS_TEXT:
        text = None
        if url.startswith(CDN_DIST):
            path = DIST_DIR / url[len(CDN_DIST):].split("?")[0]
            if path.is_file():
                text = path.read_text(encoding="utf-8")
        _CSS_TEXT[url] = text
    return _CSS_TEXT[url]


def _notebook_inline(doc: Document | None) -> bool:
    return bool(config.inline) and not state._is_pyodide and (doc is None or doc.session_context is None)


def inline_stylesheets(stylesheets: list[Any], doc: Document | None) -> list[Any]:
    """``stylesheets`` with every Panel ``dist`` stylesheet link replaced by its inline text (same object per
    document and URL, so re-sending it is no change)."""
    cache = _INLINED.setdefault(doc, {}) if doc is not None else {}
    out = []
    for sheet in stylesheets:
        if isinstance(sheet, ImportedStyleSheet):
            url = str(sheet.url)
            css = _local_css(url)
            if css is not None:
                if url not in cache:
                    cache[url] = InlineStyleSheet(css=css)
                sheet = cache[url]
        out.append(sheet)
    return out


_original_get_properties = Reactive._get_properties
_original_update_model = Reactive._update_model


def _get_properties(self, doc):
    properties = _original_get_properties(self, doc)
    if "stylesheets" in properties and _notebook_inline(doc):
        properties["stylesheets"] = inline_stylesheets(properties["stylesheets"], doc)
    return properties


def _update_model(self, events, msg, root, model, doc, comm):
    if "stylesheets" in msg and _notebook_inline(doc):
        msg["stylesheets"] = inline_stylesheets(msg["stylesheets"], doc)
    _original_update_model(self, events, msg, root, model, doc, comm)


def install() -> None:
    """Route Panel's model properties and updates through :func:`inline_stylesheets` (idempotent)."""
    Reactive._get_properties = _get_properties
    Reactive._update_model = _update_model
