"""``LayerFlow``: where the tokens of each expert at layer ``l`` go at layer ``l + 1``, as a matrix of token counts.

Each token counts once, by its first (best) serving expert at both layers (``none`` when no expert serves it, e.g.
every slot dropped); both layers are routed with the same router settings. The summary gives the mutual information
between the two experts (how much a token's expert at ``l`` says about its expert at ``l + 1``) relative to the
entropy of the ``l + 1`` expert, and the most common transitions.

>>> from workbench.routing import synthetic_trace
>>> view = LayerFlow(trace=synthetic_trace(n_layers=3, n_tokens=64), router="topk_softmax", layer=0)
>>> int(view.matrix.sum())                      # every token once
64
"""

from __future__ import annotations

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, LinearColorMapper
from bokeh.palettes import Blues256
from bokeh.plotting import figure

from widgets.moe_lab.routed_view import STYLE, RoutedView, layer_label
from workbench.errors import RoutingError
from workbench.routing.metrics import mutual_information, transition_matrix

TEXT_LABELS_UP_TO = 16  # experts; beyond that the counts are only in the hover


class LayerFlow(RoutedView):
    """Expert transitions from ``layer`` to ``layer + 1`` (from the second-last to the last layer when ``layer`` is
    the last) under the router settings.

    Outputs: ``layers`` (the two layer indices), ``routing`` / ``routing_next`` (their routings), ``matrix`` int64
    [E + 1, E + 1] (rows: expert at the first layer, columns: at the second, last row/column: none), ``source``
    (one row per cell: src/dst/count/share, share = fraction of the row)."""

    def _build(self) -> list:
        self.layers = (0, 0)
        self.routing_next = None
        self.matrix = np.zeros((0, 0), np.int64)
        self.source = ColumnDataSource(dict(src=[], dst=[], count=[], share=[], label=[]))
        self._mapper = LinearColorMapper(palette=list(reversed(Blues256)), low=0, high=1)
        plot = figure(height=420, width=480, tools="", toolbar_location=None, x_range=FactorRange(),
                      y_range=FactorRange(), title="Expert transitions")
        cells = plot.rect(x="dst", y="src", width=1, height=1, source=self.source,
                          fill_color={"field": "count", "transform": self._mapper}, line_color="#ffffff")
        self._labels = plot.text(x="dst", y="src", text="label", source=self.source, text_align="center",
                                 text_baseline="middle", text_font_size="10px", text_color="#222")
        self._hover = HoverTool(renderers=[cells], tooltips=[("from", "@src"), ("to", "@dst"), ("tokens", "@count"),
                                                             ("share of the 'from' expert", "@share{0.0%}")])
        plot.add_tools(self._hover)
        plot.grid.visible = False
        plot.axis.major_tick_line_color = None
        self._plot = plot
        return [pn.pane.Bokeh(plot)]

    def _render(self) -> None:
        tr = self.trace
        if tr.n_layers < 2:
            raise RoutingError(f"this trace has {tr.n_layers} MoE layer; the layer flow needs at least two")
        if not 0 <= self.layer < tr.n_layers:
            raise RoutingError(f"layer {self.layer} is out of range; this trace has {tr.n_layers} layers")
        la = min(self.layer, tr.n_layers - 2)
        lb = la + 1
        ra, rb = self.route_layer(la), self.route_layer(lb)
        self.layers, self.routing, self.routing_next = (la, lb), ra, rb
        e = ra.n_experts
        m = self.matrix = transition_matrix(ra.first_experts(), rb.first_experts(), e)
        names = [str(i) for i in range(e)] + ["none"]
        rows = m.sum(axis=1, keepdims=True)
        share = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0)
        src = np.repeat(names, e + 1)
        dst = np.tile(names, e + 1)
        counts = m.ravel()
        labels = [str(c) if c and e <= TEXT_LABELS_UP_TO else "" for c in counts]
        self.source.data = dict(src=src.tolist(), dst=dst.tolist(), count=counts,
                                share=share.ravel(), label=labels)
        self._mapper.high = max(int(counts.max()), 1)
        if list(self._plot.x_range.factors) != names:
            self._plot.x_range.factors = names
            self._plot.y_range.factors = list(reversed(names))
        self._plot.xaxis.axis_label = f"expert at {layer_label(tr, lb)}"
        self._plot.yaxis.axis_label = f"expert at {layer_label(tr, la)}"
        self._hover.tooltips = [(f"from (layer {la})", "@src"), (f"to (layer {lb})", "@dst"), ("tokens", "@count"),
                                ("share of the 'from' expert", "@share{0.0%}")]
        self._plot.title.text = f"Tokens by first expert: {layer_label(tr, la)} → {layer_label(tr, lb)} ({ra.router})"
        mi, h = mutual_information(m)
        order = np.argsort(-counts, kind="stable")[:3]
        top = ", ".join(f"{src[i]} → {dst[i]} ({counts[i]})" for i in order if counts[i])
        note = " (the last layer has no next one: showing the last two)" if self.layer != la else ""
        self._summary.object = (
            f'{STYLE}<div class="wb-stats wb-moe-flow-summary">{int(m.sum())} tokens from '
            f"{layer_label(tr, la)} to {layer_label(tr, lb)}{note} · mutual information "
            f'<b class="wb-moe-mi">{mi:.3f}</b> bits of {h:.3f} (the next expert\'s entropy) · most common: '
            f"{top}</div>")
