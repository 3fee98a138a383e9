"""``TokenBoundaries``: text with coloured token spans, hover details, a whitespace toggle and the token count.

>>> from workbench.tokenization import load_tokenizer
>>> view = TokenBoundaries(tokenizer=load_tokenizer("gpt2"), text="Hello world")   # doctest: +SKIP
>>> view.segmentation.n_tokens                                                       # doctest: +SKIP
2
"""

from __future__ import annotations

import panel as pn
import param

from widgets.base import WorkbenchView
from widgets.tokenizers_lab.html import segmentation_html, stats_html
from workbench.tokenization.explore import segment


class TokenBoundaries(WorkbenchView):
    """Token boundaries of ``text`` under ``tokenizer``. ``segmentation`` holds what is rendered."""

    tokenizer = param.Parameter(doc="a workbench Tokenizer")
    text = param.String(default="")
    show_whitespace = param.Boolean(default=False, doc="show spaces, tabs and newlines")

    def __init__(self, **params):
        super().__init__(**params)
        self.segmentation = None
        self._stats = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 5))
        self._body = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 5))
        self._toggle = pn.widgets.Checkbox.from_param(self.param.show_whitespace, label="show whitespace")
        self._layout = pn.Column(pn.Row(self._toggle, self._stats),
                                 self._body, sizing_mode="stretch_width")
        self._render()

    @param.depends("tokenizer", "text", "show_whitespace", watch=True)
    def _render(self) -> None:
        if self.tokenizer is None:
            self._stats.object = '<div class="wb-stats">no tokenizer</div>'
            self._body.object = ""
            return
        self.segmentation = segment(self.tokenizer, self.text)
        self._stats.object = stats_html(self.segmentation)
        self._body.object = segmentation_html(self.segmentation, show_whitespace=self.show_whitespace)

    def __panel__(self):
        return self._layout
