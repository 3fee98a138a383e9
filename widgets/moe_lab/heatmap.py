"""``RoutingHeatmap``: which expert every token went to at one MoE layer, as coloured text and as a token x expert
heatmap of router probabilities. The pieces every MoE view shares (`RoutedView`, settings controls, expert colours,
token rendering) are in `widgets.moe_lab.routed_view`, and importable from here too.

The text colours each token by its first (best) serving expert; a token with a dropped slot is underlined in red
and a token no expert serves (every slot dropped, or no expert picked it under expert choice) is greyed and struck
through. The heatmap shows the router probabilities (sigmoid scores for ``deepseek_v3``) of the tokens (x) for
every expert (y): a yellow dot marks a kept slot, a red cross a dropped one, an orange ring a slot rerouted there.

>>> from workbench.routing import synthetic_trace
>>> view = RoutingHeatmap(trace=synthetic_trace(n_tokens=64), router="capacity_topk", capacity_factor=1.0)
>>> int(view.routing.kept.sum()) == len(view.kept_source.data["x"])
True
"""

from __future__ import annotations

import numpy as np
import panel as pn
import param
from bokeh.models import ColorBar, ColumnDataSource, CustomJSHover, HoverTool, LinearColorMapper, Range1d
from bokeh.palettes import Blues256
from bokeh.plotting import figure

from widgets.moe_lab.routed_view import (  # noqa: F401 - re-exported: they lived here before routed_view.py
    CAPACITY_ROUTERS,
    DROP_POLICY_ROUTERS,
    OVERFLOW_ROUTERS,
    ROUTER_HELP,
    STYLE,
    TOP1_ROUTERS,
    RoutedView,
    SettingsControls,
    error_html,
    expert_colours,
    layer_label,
    router_params,
    served_lists,
    token_text,
    tokens_html,
)

# slot states of a (token, expert) cell of the heatmap
NOT_CHOSEN, KEPT, DROPPED, REROUTED = 0, 1, 2, 3
SLOT_NAMES = ("not chosen", "kept", "dropped (over capacity)", "kept (rerouted here)")


def legend_html(n_experts: int, marks: bool = False) -> str:
    """Expert colour swatches (and, with ``marks``, what the text and heatmap marks mean)."""
    colours = expert_colours(n_experts)
    items = "".join(f'<span class="wb-moe-swatch" style="background:{c}"></span>{e}' for e, c in enumerate(colours))
    if marks:
        items += (' &nbsp;·&nbsp; text: <span class="wb-moe-dropped">red underline</span> = a slot dropped, '
                  '<span class="wb-moe-none">struck through</span> = no expert &nbsp;·&nbsp; heatmap: yellow dot = '
                  "kept slot, red × = dropped, orange ring = rerouted here")
    return f'{STYLE}<div class="wb-moe-legend">experts: {items}</div>'


class RoutingHeatmap(RoutedView):
    """The trace's text coloured by each token's first expert at ``layer``, and the token x expert heatmap of
    router probabilities with the kept/dropped slots marked.

    Outputs: ``routing``; ``first_expert`` int [T] (-1: no expert); ``status`` int8 [E, T] (`SLOT_NAMES` codes);
    sources ``source`` (image/status/x/y/dw/dh), ``kept_source``/``dropped_source``/``rerouted_source`` (x =
    token + 0.5, y = expert + 0.5, one row per slot); ``text_html`` (the coloured text)."""

    visible_tokens = param.Integer(default=200, bounds=(8, None), doc="tokens shown before zooming out")

    def _build(self) -> list:
        self.first_expert = np.zeros(0, np.int64)
        self.status = None
        self.text_html = ""
        self._drawn_trace = None
        self.tokens = ColumnDataSource(dict(token=[]))
        self.source = ColumnDataSource(dict(image=[np.zeros((1, 1), np.float32)], status=[np.zeros((1, 1), np.int8)],
                                            x=[0], y=[0], dw=[1], dh=[1]))
        empty = dict(x=[], y=[])
        self.kept_source = ColumnDataSource(dict(empty))
        self.dropped_source = ColumnDataSource(dict(empty))
        self.rerouted_source = ColumnDataSource(dict(empty))
        plot = figure(height=260, sizing_mode="stretch_width", tools="xpan,xwheel_zoom,reset",
                      active_scroll="xwheel_zoom", toolbar_location="right", x_range=Range1d(0, 1),
                      y_range=Range1d(0, 1), title="Router probabilities: tokens (x) × experts (y)")
        self._mapper = LinearColorMapper(palette=list(reversed(Blues256)), low=0, high=1)  # white = 0
        image = plot.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source,
                           color_mapper=self._mapper)
        plot.scatter("x", "y", source=self.kept_source, size=6, fill_color="#ffd54f", line_color="black",
                     line_width=0.7)
        plot.scatter("x", "y", source=self.dropped_source, marker="x", size=9, line_color="#d62728", line_width=2)
        plot.scatter("x", "y", source=self.rerouted_source, marker="circle", size=11, fill_alpha=0,
                     line_color="#ff7f0e", line_width=2)
        position = CustomJSHover(args=dict(src=self.tokens), code=(
            "const i = Math.floor(value); const t = src.data.token[i];"
            "return t === undefined ? String(i) : i + '  ' + JSON.stringify(t)"))
        floor = CustomJSHover(code="return String(Math.floor(value))")
        slot = CustomJSHover(args=dict(names=list(SLOT_NAMES)), code="return names[value] ?? String(value)")
        plot.add_tools(HoverTool(renderers=[image], tooltips=[
            ("token", "$x{custom}"), ("expert", "$y{custom}"), ("probability", "@image{0.000}"),
            ("slot", "@status{custom}")], formatters={"$x": position, "$y": floor, "@status": slot}))
        plot.add_layout(ColorBar(color_mapper=self._mapper, width=10, title="p"), "right")
        plot.xaxis.axis_label = "token (index in the trace)"
        plot.yaxis.axis_label = "expert"
        plot.grid.visible = False
        self._plot = plot
        self._legend = pn.pane.HTML("", sizing_mode="stretch_width")
        self._text = pn.pane.HTML("", sizing_mode="stretch_width")
        return [self._legend, self._text, pn.pane.Bokeh(plot, sizing_mode="stretch_width")]

    def _render(self) -> None:
        tr = self.trace
        r = self.routing = self.route_layer()
        t_count, e_count = r.n_tokens, r.n_experts
        # heatmap cells: probability and slot state
        status = np.zeros((e_count, t_count), np.int8)
        t_idx, j_idx = np.nonzero(r.kept)
        status[r.assignments[t_idx, j_idx], t_idx] = KEPT
        rerouted = r.extra.get("rerouted_mask")
        if rerouted is not None and rerouted.any():
            rt, rj = np.nonzero(rerouted)
            status[r.assignments[rt, rj], rt] = REROUTED
        dt, dj = np.nonzero(r.dropped)
        status[r.requested[dt, dj], dt] = DROPPED
        self.status = status
        probs = np.ascontiguousarray(r.probs.T)
        if self._drawn_trace is not tr:  # a new text: new hover tokens and axes
            self.tokens.data = dict(token=[token_text(tr, t) for t in range(t_count)])
            self._drawn_trace = tr
            self._plot.x_range.update(start=0, end=min(t_count, self.visible_tokens))
            self._plot.y_range.update(start=0, end=e_count)
        self.source.data = dict(image=[probs], status=[status], x=[0], y=[0], dw=[t_count], dh=[e_count])
        self._mapper.high = max(float(probs.max()), 1e-6)
        self.kept_source.data = dict(x=t_idx + 0.5, y=r.assignments[t_idx, j_idx] + 0.5)
        self.dropped_source.data = dict(x=dt + 0.5, y=r.requested[dt, dj] + 0.5)
        if rerouted is not None and rerouted.any():
            self.rerouted_source.data = dict(x=rt + 0.5, y=r.assignments[rt, rj] + 0.5)
        else:
            self.rerouted_source.data = dict(x=[], y=[])
        # coloured text
        first = self.first_expert = r.first_experts()
        colours = expert_colours(e_count)
        any_dropped = r.dropped.any(axis=1)
        classes, titles, styles = [], [], []
        assignments, weights, requested = r.assignments.tolist(), r.weights.tolist(), r.requested.tolist()
        dropped, positions, first, any_dropped = r.dropped.tolist(), tr.positions.tolist(), first.tolist(), \
            any_dropped.tolist()
        for t in range(t_count):
            e = first[t]
            served = [f"{a} ({w:.2f})" for a, w in zip(assignments[t], weights[t]) if a >= 0]
            title = f"token {t} {token_text(tr, t)!r} · {tr.tags[t] or 'untagged'} · position {positions[t]}"
            title += " · experts " + (", ".join(served) if served else "none")
            if any_dropped[t]:
                title += " · dropped: " + ", ".join(str(a) for a, d in zip(requested[t], dropped[t]) if d)
            if e < 0:
                classes.append("wb-moe-none" + (" wb-moe-dropped" if any_dropped[t] else ""))
                styles.append("")
            else:
                classes.append(f"wb-moe-e{e}" + (" wb-moe-dropped" if any_dropped[t] else ""))
                styles.append(f"background:{colours[e]}55")
            titles.append(title)
        self.text_html = tokens_html(tr, classes, titles, styles)
        self._text.object = self.text_html
        self._legend.object = legend_html(e_count, marks=True)
        n_none = int((self.first_expert < 0).sum())
        cap = "no capacity" if r.capacity < 0 else f"capacity {r.capacity} slots per expert"
        self._plot.title.text = (f"Router {'scores' if r.router == 'deepseek_v3' else 'probabilities'} at "
                                 f"{layer_label(tr, self.layer)}: tokens (x) × experts (y)")
        self._summary.object = (
            f'{STYLE}<div class="wb-stats wb-moe-heat-summary"><b>{r.router}</b> at {layer_label(tr, self.layer)}'
            f" · {t_count} tokens × {e_count} experts · {cap} · "
            f'<b class="wb-moe-ndropped">{r.n_dropped}</b> slots dropped ({r.drop_rate:.1%}) on '
            f"{sum(any_dropped)} tokens · {n_none} tokens without an expert</div>")
