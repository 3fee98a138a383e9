"""``TokenDiff``: one text under two tokenizers, aligned, with the boundaries they disagree on outlined and counted."""

from __future__ import annotations

import html

import panel as pn
import param

from widgets.base import WorkbenchView
from widgets.tokenizers_lab.html import segmentation_html, stats_html
from workbench.tokenization.explore import boundary_diff


class TokenDiff(WorkbenchView):
    """``diff`` holds the :class:`~workbench.tokenization.explore.BoundaryDiff` being shown."""

    tokenizer_a = param.Parameter()
    tokenizer_b = param.Parameter()
    text = param.String(default="")
    show_whitespace = param.Boolean(default=False)

    def __init__(self, **params):
        super().__init__(**params)
        self.diff = None
        self._summary = pn.pane.HTML("", sizing_mode="stretch_width")
        self._a = pn.pane.HTML("", sizing_mode="stretch_width")
        self._b = pn.pane.HTML("", sizing_mode="stretch_width")
        self._layout = pn.Column(self._summary, self._a, self._b,
                                 sizing_mode="stretch_width")
        self._render()

    @param.depends("tokenizer_a", "tokenizer_b", "text", "show_whitespace", watch=True)
    def _render(self) -> None:
        if self.tokenizer_a is None or self.tokenizer_b is None:
            self._summary.object = "<p>choose two tokenizers</p>"
            return
        d = self.diff = boundary_diff(self.tokenizer_a, self.tokenizer_b, self.text)
        self._summary.object = (
            f'<div class="wb-stats"><b class="wb-disagreements">{d.n_disagreements}</b> boundaries disagree '
            f"({len(d.only_a)} only in {html.escape(d.a.tokenizer_name)}, {len(d.only_b)} only in "
            f"{html.escape(d.b.tokenizer_name)}); {d.shared} shared; agreement {d.agreement:.1%}</div>")
        disagree = set(d.only_a) | set(d.only_b)
        self._a.object = stats_html(d.a) + segmentation_html(d.a, show_whitespace=self.show_whitespace,
                                                             marked=disagree)
        self._b.object = stats_html(d.b) + segmentation_html(d.b, show_whitespace=self.show_whitespace,
                                                             marked=disagree)

    def __panel__(self):
        return self._layout
