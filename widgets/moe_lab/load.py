"""``ExpertLoad``: slots each expert serves at one layer, with the capacity line, the dropped slots stacked on top
and the balance metrics; ``DropByPosition``: the drop rate against token position.

Balance metrics (`workbench.routing.metrics`): the Switch/GShard load-balancing loss at micro-batch (the trace's
sequences in ``micro_batches`` groups), sequence and global-batch scope, the ST-MoE router z-loss of the layer's
logits, the coefficient of variation, MaxVio and normalised entropy of the loads, the drop rate and the mean experts
per token.

>>> from workbench.routing import synthetic_trace
>>> view = ExpertLoad(trace=synthetic_trace(n_tokens=64), router="capacity_topk", capacity_factor=1.0)
>>> sum(view.source.data["load"]) == int(view.routing.kept.sum())
True
"""

from __future__ import annotations

import html

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, Range1d, Span
from bokeh.plotting import figure

from widgets.moe_lab.routed_view import STYLE, RoutedView, expert_colours, layer_label
from workbench.errors import WorkbenchError
from workbench.routing import Routing, balance_summary, drop_rate_by_position, router_z_loss
from workbench.routing.metrics import SCOPES

DROP_COLOUR = "#f4a6a6"
#: metric key -> (label, format); the keys are the ``metrics`` dict's and the table cells' classes
METRICS = {
    "lbl_micro": ("Switch loss, micro-batch", "{:.4f}"),
    "lbl_sequence": ("Switch loss, per sequence", "{:.4f}"),
    "lbl_global": ("Switch loss, global batch", "{:.4f}"),
    "z_loss": ("router z-loss", "{:.4f}"),
    "load_cv": ("load CV", "{:.4f}"),
    "max_violation": ("MaxVio", "{:.4f}"),
    "load_entropy": ("load entropy (normalised)", "{:.4f}"),
    "drop_rate": ("drop rate", "{:.2%}"),
    "mean_experts_per_token": ("experts per token", "{:.3f}"),
}


def load_figure(title: str, *, height: int = 260, y_range=None):
    """An expert-load bar chart: kept slots per expert (expert colours) with the dropped ones stacked on top, the
    capacity as a dashed red line and the mean load as a dotted grey one. Returns ``(figure, source, capacity
    span, mean span)``; fill the source with `load_data`."""
    source = ColumnDataSource(dict(expert=[], load=[], drops=[], top=[], share=[], colour=[]))
    plot = figure(height=height, sizing_mode="stretch_width", title=title, tools="", toolbar_location=None,
                  x_range=Range1d(-0.5, 0.5), y_range=y_range or Range1d(0, 1))
    kept = plot.vbar(x="expert", width=0.8, bottom=0, top="load", source=source, fill_color="colour",
                     line_color="colour")
    drops = plot.vbar(x="expert", width=0.8, bottom="load", top="top", source=source, fill_color=DROP_COLOUR,
                      line_color=None, hatch_pattern="/", hatch_color="#d62728", hatch_alpha=0.6)
    plot.add_tools(HoverTool(renderers=[kept, drops], tooltips=[
        ("expert", "@expert"), ("slots served", "@load"), ("dropped here", "@drops"),
        ("share of served slots", "@share{0.0%}")]))
    capacity = Span(location=0, dimension="width", line_color="#d62728", line_dash="dashed", line_width=2,
                    visible=False)
    mean = Span(location=0, dimension="width", line_color="#777", line_dash="dotted", line_width=1.5)
    plot.add_layout(capacity)
    plot.add_layout(mean)
    plot.xaxis.ticker = FixedTicker(ticks=[])  # made once: a new model in a served document costs ~0.3 s
    plot.xaxis.axis_label = "expert"
    plot.yaxis.axis_label = "slots"
    plot.xgrid.visible = False
    return plot, source, capacity, mean


def load_data(routing: Routing) -> dict:
    """The `load_figure` source columns of ``routing``."""
    e = routing.n_experts
    loads = routing.loads.astype(np.int64)
    drops = routing.drops_per_expert()
    total = max(int(loads.sum()), 1)
    return dict(expert=np.arange(e), load=loads, drops=drops, top=loads + drops, share=loads / total,
                colour=expert_colours(e))


def draw_loads(routing: Routing, plot, source, capacity, mean, *, y_end: float | None = None) -> None:
    """Fill one `load_figure` with ``routing`` (``y_end``: the y-axis top, default from the data)."""
    data = load_data(routing)
    source.data = data
    e = routing.n_experts
    plot.x_range.update(start=-0.5, end=e - 0.5)
    for axis in plot.xaxis:
        if list(axis.ticker.ticks) != list(range(e)):
            axis.ticker.ticks = list(range(e))
    capacity.visible = routing.capacity >= 0
    capacity.location = max(routing.capacity, 0)
    mean.location = float(routing.loads.mean())
    if y_end is None:
        y_end = load_y_end(routing)
    plot.y_range.update(start=0, end=y_end)


def load_y_end(routing: Routing) -> float:
    """A y-axis top that shows the tallest bar and the capacity line."""
    top = int((routing.loads + routing.drops_per_expert()).max())
    return max(top, routing.capacity, 1) * 1.08


def metric_values(routing: Routing, logits: np.ndarray, sequence_ids: np.ndarray, micro_batches: int) -> dict:
    """The `METRICS` of ``routing`` (NaN where a metric is undefined, e.g. when no slot was routed)."""
    out = {"z_loss": router_z_loss(logits), "drop_rate": routing.drop_rate,
           "mean_experts_per_token": float(routing.experts_per_token.mean())}
    n_seq = int(np.unique(sequence_ids).size)
    for scope in SCOPES:
        try:
            s = balance_summary(routing, scope=scope, sequence_ids=sequence_ids,
                                micro_batches=max(1, min(micro_batches, n_seq)))
        except WorkbenchError:  # every load is 0: balance is undefined
            out[f"lbl_{scope}"] = out["load_cv"] = out["max_violation"] = out["load_entropy"] = float("nan")
            continue
        out[f"lbl_{scope}"] = s.load_balancing_loss
        out.update(load_cv=s.load_cv, max_violation=s.max_violation, load_entropy=s.load_entropy)
    return out


def metrics_html(values: dict, *, title: str = "") -> str:
    rows = "".join(
        f'<tr><td>{html.escape(label)}</td><td class="wb-moe-m-{key}">'
        f'{"—" if np.isnan(values[key]) else fmt.format(values[key])}</td></tr>'
        for key, (label, fmt) in METRICS.items())
    head = f"<tr><th>{html.escape(title)}</th><th>value</th></tr>" if title else "<tr><th>metric</th><th>value</th></tr>"
    return (f"{STYLE}<style>table.wb-table {{ border-collapse: collapse; font-size: 13px; margin: 4px 0; }}"
            "table.wb-table th, table.wb-table td { border-bottom: 1px solid #ddd; padding: 3px 8px; "
            "text-align: left; } table.wb-table th { background: #f4f4f4; }</style>"
            f'<table class="wb-table wb-moe-metrics">{head}{rows}</table>')


class ExpertLoad(RoutedView):
    """Per-expert load bars at ``layer`` under the router settings, the capacity line (``Routing.capacity``),
    dropped slots stacked on their requested expert, and the balance-metrics table.

    Outputs: ``routing``; ``source`` (columns expert/load/drops/top/share/colour); ``capacity_line`` and
    ``mean_line`` (Bokeh Spans; the capacity one hidden without capacity); ``metrics`` (the `METRICS` values)."""

    micro_batches = param.Integer(default=4, bounds=(1, None),
                                  doc="micro-batches of whole sequences for the micro-batch Switch loss")

    def _build(self) -> list:
        self.metrics: dict = {}
        self._plot, self.source, self.capacity_line, self.mean_line = load_figure("Expert load")
        self._table = pn.pane.HTML("", width=330)
        self.param.watch(self._update, "micro_batches")
        return [pn.Row(pn.pane.Bokeh(self._plot, sizing_mode="stretch_width"), self._table,
                       sizing_mode="stretch_width")]

    def _render(self) -> None:
        tr = self.trace
        r = self.routing = self.route_layer()
        draw_loads(r, self._plot, self.source, self.capacity_line, self.mean_line)
        self.metrics = metric_values(r, tr.layer(self.layer), tr.sequence_ids, self.micro_batches)
        self._table.object = metrics_html(self.metrics)
        cap = "no capacity (unlimited)" if r.capacity < 0 else f"capacity {r.capacity} slots per expert (dashed)"
        self._plot.title.text = f"Expert load at {layer_label(tr, self.layer)}: {r.router}, {cap}"
        served = int(r.kept.sum())
        self._summary.object = (
            f'{STYLE}<div class="wb-stats wb-moe-load-summary"><b>{r.router}</b> · {layer_label(tr, self.layer)} '
            f'· <b class="wb-moe-served">{served}</b> slots served · '
            f'<b class="wb-moe-dropped-slots">{r.n_dropped}</b> dropped ({r.drop_rate:.1%}) · capacity '
            f'<b class="wb-moe-capacity">{r.capacity if r.capacity >= 0 else "none"}</b> · loads '
            f"{int(r.loads.min())}..{int(r.loads.max())} (mean {r.loads.mean():.1f}, dotted)</div>")


class DropByPosition(RoutedView):
    """Drop rate (dropped slots / slots that asked for an expert) against token position within its sequence,
    in ``bins`` equal-width bins. Outputs: ``routing``, ``drops`` (a `PositionDrops`), ``source`` (columns
    left/right/rate/slots/dropped/label; rate 0 where a bin has no slots)."""

    bins = param.Integer(default=8, bounds=(1, 256))

    def _build(self) -> list:
        self.drops = None
        self.source = ColumnDataSource(dict(left=[], right=[], rate=[], slots=[], dropped=[], label=[]))
        plot = figure(height=200, sizing_mode="stretch_width", tools="", toolbar_location=None,
                      title="Drop rate by token position", y_range=Range1d(0, 1))
        quads = plot.quad(left="left", right="right", bottom=0, top="rate", source=self.source,
                          fill_color=DROP_COLOUR, line_color="#d62728")
        plot.add_tools(HoverTool(renderers=[quads], tooltips=[("positions", "@label"), ("drop rate", "@rate{0.0%}"),
                                                              ("dropped", "@dropped"), ("slots", "@slots")]))
        plot.xaxis.axis_label = "token position in its sequence"
        plot.yaxis.axis_label = "drop rate"
        self._plot = plot
        self.param.watch(self._update, "bins")
        return [pn.pane.Bokeh(plot, sizing_mode="stretch_width")]

    def _render(self) -> None:
        tr = self.trace
        r = self.routing = self.route_layer()
        d = self.drops = drop_rate_by_position(r, tr.positions, bins=self.bins)
        edges = d.edges
        labels = [f"{int(np.ceil(lo))}..{int(np.ceil(hi)) - 1}" for lo, hi in zip(edges[:-1], edges[1:])]
        self.source.data = dict(left=edges[:-1], right=edges[1:], rate=np.nan_to_num(d.rate, nan=0.0),
                                slots=d.slots, dropped=d.dropped, label=labels)
        top = float(np.nanmax(d.rate)) if np.isfinite(d.rate).any() else 0.0
        self._plot.y_range.update(start=0, end=max(top * 1.1, 0.05))
        self._plot.title.text = f"Drop rate by token position at {layer_label(tr, self.layer)} ({r.router})"
        worst = int(np.nanargmax(d.rate)) if top > 0 else -1
        where = f"; highest in positions {labels[worst]} ({top:.1%})" if worst >= 0 else ""
        self._summary.object = (f'{STYLE}<div class="wb-stats wb-moe-pos-summary">{r.n_dropped} of '
                                f"{int(d.slots.sum())} slots dropped ({r.drop_rate:.1%}){where}</div>")
