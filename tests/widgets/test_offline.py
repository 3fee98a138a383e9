"""Views shown in a notebook with ``pn.extension(inline=True)`` keep every Panel stylesheet inline after updates too
(widgets/offline.py), so a machine without internet access never asks cdn.holoviz.org for CSS."""

import panel as pn
from bokeh.document import Document
from bokeh.models import ImportedStyleSheet, InlineStyleSheet
from panel.io.resources import CDN_DIST
from pyviz_comms import Comm

import widgets  # noqa: F401  (installs the patch)


def _notebook_view(view):
    """Render ``view`` the way a notebook output does: a document without a server session and a comm."""
    doc = Document()
    return view._render_model(doc, Comm()), doc


def _cdn_sheets(model) -> list[str]:
    return [ref.url for ref in model.references() if isinstance(ref, ImportedStyleSheet) and ref.url.startswith(CDN_DIST)]


def _inline_sheet_ids(model) -> set[str]:
    return {ref.id for ref in model.references() if isinstance(ref, InlineStyleSheet)}


def test_updated_panes_keep_their_stylesheets_inline():
    html, md = pn.pane.HTML("<b>first</b>"), pn.pane.Markdown("first")
    with pn.config.set(inline=True):
        model, _ = _notebook_view(pn.Column(html, md))
        assert not _cdn_sheets(model)
        first = _inline_sheet_ids(model)
        html.object, md.object = "<b>second</b>", "second"  # what a widget does on every control change
        assert not _cdn_sheets(model)
        html.object, md.object = "<b>third</b>", "third"
        assert not _cdn_sheets(model)
        # the same inline models every time: an update re-sends no CSS
        assert _inline_sheet_ids(model) == first


def test_without_inline_resources_nothing_changes():
    html = pn.pane.HTML("<b>first</b>")
    with pn.config.set(inline=False):
        model, _ = _notebook_view(pn.Column(html))
        html.object = "<b>second</b>"
        assert _cdn_sheets(model)  # Panel's own behaviour: links to its CDN
