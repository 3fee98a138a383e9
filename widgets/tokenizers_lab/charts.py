"""Metric views: bytes/token against vocabulary size, parity bars per language, mixture estimate against truth.

Each view takes core results (:class:`~workbench.tokenization.compare.CompressionCurve`, metric-table rows, mixture
proportions) and renders them with Bokeh; setting the parameter again updates the data sources in place.
"""

from __future__ import annotations

import param
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Span
from bokeh.plotting import figure

from widgets.base import WorkbenchView

COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d")


class CompressionCurveView(WorkbenchView):
    """Bytes per token of held-out text against vocabulary size, one line per trainer."""

    curve = param.Parameter(doc="a CompressionCurve")

    def __init__(self, **params):
        super().__init__(**params)
        self.source = ColumnDataSource(dict(xs=[], ys=[], trainer=[], colour=[]))
        self.points = ColumnDataSource(dict(x=[], y=[], trainer=[], colour=[]))
        plot = figure(height=320, sizing_mode="stretch_width", toolbar_location=None, tools="",
                      title="Compression: bytes per token on held-out text", x_axis_type="log")
        plot.multi_line("xs", "ys", source=self.source, color="colour", line_width=2, legend_field="trainer")
        dots = plot.scatter("x", "y", source=self.points, color="colour", size=7)
        plot.add_tools(HoverTool(renderers=[dots], tooltips=[("trainer", "@trainer"), ("vocab", "@x"),
                                                              ("bytes/token", "@y{0.000}")]))
        plot.xaxis.axis_label = "vocabulary size"
        plot.yaxis.axis_label = "bytes / token"
        plot.legend.location = "top_left"
        self._plot = plot
        self._update()

    @param.depends("curve", watch=True)
    def _update(self) -> None:
        if self.curve is None:
            return
        names = list(self.curve.bytes_per_token)
        colours = [COLOURS[i % len(COLOURS)] for i in range(len(names))]
        self.source.data = dict(xs=[self.curve.vocab_sizes] * len(names),
                                ys=[self.curve.bytes_per_token[n] for n in names], trainer=names, colour=colours)
        xs, ys, ts, cs = [], [], [], []
        for name, colour in zip(names, colours):
            for v, b in zip(self.curve.vocab_sizes, self.curve.bytes_per_token[name]):
                xs.append(v), ys.append(b), ts.append(name), cs.append(colour)
        self.points.data = dict(x=xs, y=ys, trainer=ts, colour=cs)

    def __panel__(self):
        return self._plot


class ParityBars(WorkbenchView):
    """One bar per (language, tokenizer): a metric such as the token premium relative to a reference language.

    ``rows``: dicts with ``category_key`` (language), ``group_key`` (tokenizer) and ``value_key`` (the metric).
    """

    rows = param.List(default=[])
    value_key = param.String(default="premium")
    group_key = param.String(default="tokenizer")
    category_key = param.String(default="language")
    title = param.String(default="Token premium relative to English (1.0 = parity)")
    reference_line = param.Number(default=1.0, allow_None=True)

    def __init__(self, **params):
        super().__init__(**params)
        self.source = ColumnDataSource(dict(x=[], value=[], colour=[], group=[]))
        self._plot = figure(height=340, sizing_mode="stretch_width", toolbar_location=None, tools="",
                            x_range=FactorRange(), title=self.title)
        self._plot.vbar(x="x", top="value", width=0.85, source=self.source, color="colour", legend_field="group")
        self._plot.add_tools(HoverTool(tooltips=[("", "@x"), (self.value_key, "@value{0.00}")]))
        self._plot.xaxis.major_label_orientation = 1.0
        self._plot.xaxis.group_label_orientation = 0.9
        if self.reference_line is not None:
            self._plot.add_layout(Span(location=self.reference_line, dimension="width", line_dash="dashed",
                                       line_color="#666"))
        self._update()

    @param.depends("rows", "value_key", "title", watch=True)
    def _update(self) -> None:
        groups = list(dict.fromkeys(r[self.group_key] for r in self.rows))
        colour = {g: COLOURS[i % len(COLOURS)] for i, g in enumerate(groups)}
        categories = list(dict.fromkeys(r[self.category_key] for r in self.rows))
        by_key = {(r[self.category_key], r[self.group_key]): r[self.value_key] for r in self.rows}
        xs = [(c, g) for c in categories for g in groups if (c, g) in by_key]
        self._plot.x_range.factors = xs
        self._plot.title.text = self.title
        self.source.data = dict(x=xs, value=[by_key[x] for x in xs], colour=[colour[g] for _, g in xs],
                                group=[g for _, g in xs])

    def __panel__(self):
        return self._plot


class MixtureView(WorkbenchView):
    """Inferred training-mixture proportions, next to the true ones when known."""

    estimate = param.Dict(default={})
    truth = param.Dict(default=None, allow_None=True)

    def __init__(self, **params):
        super().__init__(**params)
        self.source = ColumnDataSource(dict(x=[], share=[], colour=[], kind=[]))
        self._plot = figure(height=300, sizing_mode="stretch_width", toolbar_location=None, tools="",
                            x_range=FactorRange(), y_range=(0, 1), title="Training mixture: inferred vs true")
        self._plot.vbar(x="x", top="share", width=0.85, source=self.source, color="colour", legend_field="kind")
        self._plot.add_tools(HoverTool(tooltips=[("", "@x"), ("share", "@share{0.0%}")]))
        self._update()

    @param.depends("estimate", "truth", watch=True)
    def _update(self) -> None:
        xs, shares, colours, kinds = [], [], [], []
        for cat, value in self.estimate.items():
            pairs = [("inferred", value, COLOURS[0])]
            if self.truth is not None and cat in self.truth:
                pairs.append(("true", self.truth[cat], COLOURS[1]))
            for kind, share, colour in pairs:
                xs.append((cat, kind)), shares.append(float(share)), colours.append(colour), kinds.append(kind)
        self._plot.x_range.factors = xs
        self.source.data = dict(x=xs, share=shares, colour=colours, kind=kinds)

    def __panel__(self):
        return self._plot
