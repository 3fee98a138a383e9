"""``MergeReplay``: a slider over merge steps that re-segments the text live, with the training timeline."""

from __future__ import annotations

import html

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, Span
from bokeh.plotting import figure

from widgets.base import WorkbenchView
from widgets.tokenizers_lab.html import segmentation_html, stats_html
from workbench.tokenization.explore import replay_step, token_label


class MergeReplay(WorkbenchView):
    """``step`` = how many merges are applied; ``current`` holds the rendered
    :class:`~workbench.tokenization.explore.ReplayStep`; ``timeline`` the (step, count) data."""

    tokenizer = param.Parameter()
    text = param.String(default="")
    step = param.Integer(default=0, bounds=(0, None))
    show_whitespace = param.Boolean(default=False)

    def __init__(self, **params):
        super().__init__(**params)
        self.current = None
        self.timeline = ColumnDataSource(dict(step=[], count=[]))
        plot = figure(height=220, sizing_mode="stretch_width", toolbar_location=None, tools="",
                      title="Training timeline: pair count when merged", y_axis_type="log")
        plot.line("step", "count", source=self.timeline, color="#4c78a8")
        plot.xaxis.axis_label = "merge step"
        plot.yaxis.axis_label = "count"
        self._marker = Span(location=0, dimension="height", line_color="#d62728", line_width=2)
        plot.add_layout(self._marker)
        self._plot = plot
        self._slider = pn.widgets.IntSlider(label="merges applied", start=0, end=1, value=self.step,
                                            sizing_mode="stretch_width")
        self._slider.param.watch(lambda e: setattr(self, "step", e.new), "value_throttled")
        self._slider.param.watch(lambda e: setattr(self, "step", e.new), "value")
        self._merge = pn.pane.HTML("", sizing_mode="stretch_width")
        self._stats = pn.pane.HTML("", sizing_mode="stretch_width")
        self._body = pn.pane.HTML("", sizing_mode="stretch_width")
        self._layout = pn.Column(self._slider, self._merge, self._stats,
                                 self._body, self._plot, sizing_mode="stretch_width")
        self._new_tokenizer()

    @param.depends("tokenizer", watch=True)
    def _new_tokenizer(self) -> None:
        if self.tokenizer is None:
            return
        n = len(self.tokenizer.merge_list)
        self._slider.end = max(n, 1)
        counts = self.tokenizer.merge_counts
        if counts is not None and len(counts):
            self.timeline.data = dict(step=list(np.arange(1, len(counts) + 1)), count=list(counts))
            self._plot.title.text = "Training timeline: pair count when merged"
        else:
            self.timeline.data = dict(step=[], count=[])
            self._plot.title.text = "No training counts recorded for this tokenizer (loaded, not trained here)"
        if self.step > n or self.step == 0:
            self.step = n
        else:
            self._render()

    @param.depends("step", "text", "show_whitespace", watch=True)
    def _render(self) -> None:
        if self.tokenizer is None:
            return
        step = min(self.step, len(self.tokenizer.merge_list))
        if self._slider.value != step:
            self._slider.value = step
        cur = self.current = replay_step(self.tokenizer, self.text, step)
        self._marker.location = step
        if cur.merge is None:
            self._merge.object = '<div class="wb-stats">no merges applied: every byte is its own token</div>'
        else:
            a, b = (token_label(t) for t in cur.merge)
            count = f", seen {cur.merge_count:,} times when merged" if cur.merge_count is not None else ""
            self._merge.object = (f'<div class="wb-stats wb-merge">merge #{step - 1}: <b>{html.escape(a)}</b> + '
                                  f"<b>{html.escape(b)}</b> → <b>{html.escape(a + b)}</b>{count}</div>")
        self._stats.object = stats_html(cur.segmentation)
        self._body.object = segmentation_html(cur.segmentation, show_whitespace=self.show_whitespace)

    def __panel__(self):
        return self._layout
