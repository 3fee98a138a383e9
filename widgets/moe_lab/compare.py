"""``RouterCompare``: the same router logits routed by two routers, side by side: their expert loads (same y
scale), their balance figures, and the text with the tokens whose experts differ outlined in red.

A token *differs* when the set of experts serving it is not the same under both routers (slot order and combine
weights are ignored), so ``n_differ == sum(set(a[t]) - {-1} != set(b[t]) - {-1} for t in tokens)``.

>>> from workbench.routing import synthetic_trace
>>> view = RouterCompare(trace=synthetic_trace(n_tokens=64), router="topk_softmax", router_b="capacity_topk",
...                      capacity_factor=1.0)
>>> view.n_differ == int(view.differ.sum())
True
"""

from __future__ import annotations

import html

import numpy as np
import panel as pn
import param
from bokeh.models import Range1d

from widgets.moe_lab.load import draw_loads, load_figure, load_y_end
from widgets.moe_lab.routed_view import (
    STYLE,
    RoutedView,
    expert_colours,
    layer_label,
    served_lists,
    tokens_html,
)
from workbench.routing import ROUTER_NAMES


class RouterCompare(RoutedView):
    """Router A (``router``) against router B (``router_b``) on ``layer``, both with the shared settings.

    Outputs: ``routing`` (A), ``routing_b`` (B); ``differ`` bool [T] (tokens served by different expert sets);
    ``n_differ``; ``source_a``/``source_b`` (load bars, see `load_figure`); ``capacity_a``/``capacity_b`` (Spans);
    ``text_html`` (the text with ``wb-moe-diff`` spans)."""

    router_b = param.Selector(default="expert_choice", objects=list(ROUTER_NAMES))

    SETTINGS = (*RoutedView.SETTINGS, "router_b")

    def _build(self) -> list:
        self.routing_b = None
        self.differ = np.zeros(0, bool)
        self.n_differ = 0
        self.text_html = ""
        y_range = Range1d(0, 1)
        self._plot_a, self.source_a, self.capacity_a, mean_a = load_figure("A", height=230, y_range=y_range)
        self._plot_b, self.source_b, self.capacity_b, mean_b = load_figure("B", height=230, y_range=y_range)
        self._means = (mean_a, mean_b)
        self.router_b_select = pn.widgets.Select.from_param(self.param.router_b, label="router B", width=220,
                                                            css_classes=["wb-moe-router-b"])
        self._text = pn.pane.HTML("", sizing_mode="stretch_width")
        return [self.router_b_select,
                pn.Row(pn.pane.Bokeh(self._plot_a, sizing_mode="stretch_width"),
                       pn.pane.Bokeh(self._plot_b, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
                self._text]

    def _render(self) -> None:
        tr = self.trace
        ra = self.route_layer()
        rb = self.route_layer(router=self.router_b)
        self.routing, self.routing_b = ra, rb
        y_end = max(load_y_end(ra), load_y_end(rb))
        draw_loads(ra, self._plot_a, self.source_a, self.capacity_a, self._means[0], y_end=y_end)
        draw_loads(rb, self._plot_b, self.source_b, self.capacity_b, self._means[1], y_end=y_end)
        for tag, r, plot in (("A", ra, self._plot_a), ("B", rb, self._plot_b)):
            cap = "no capacity" if r.capacity < 0 else f"capacity {r.capacity}"
            plot.title.text = f"{tag}: {r.router} ({cap})"
        differ = self.differ = (ra.served_mask() != rb.served_mask()).any(axis=1)
        self.n_differ = int(differ.sum())
        colours = expert_colours(ra.n_experts)
        first_b = rb.first_experts().tolist()
        names_a, names_b = served_lists(ra), served_lists(rb)
        classes, titles, styles = [], [], []
        for t, d in enumerate(differ.tolist()):
            titles.append(f"token {t} · A: {names_a[t]} · B: {names_b[t]}")
            if d:
                classes.append("wb-moe-diff")
                styles.append(f"background:{colours[first_b[t]]}55" if first_b[t] >= 0 else "")
            else:
                classes.append("wb-moe-same")
                styles.append("")
        self.text_html = tokens_html(tr, classes, titles, styles)
        self._text.object = self.text_html

        def line(tag: str, r) -> str:
            return (f"{tag} <b>{html.escape(r.router)}</b>: {int(r.kept.sum())} slots served, {r.n_dropped} dropped "
                    f"({r.drop_rate:.1%}), {r.experts_per_token.mean():.2f} experts per token, loads "
                    f"{int(r.loads.min())}..{int(r.loads.max())}")

        self._summary.object = (
            f'{STYLE}<div class="wb-stats wb-moe-compare">{line("A", ra)}<br>{line("B", rb)}<br>'
            f'<b class="wb-moe-ndiff">{self.n_differ}</b> of {ra.n_tokens} tokens are served by different experts '
            f"at {layer_label(tr, self.layer)} (outlined in red, coloured by B's first expert; the others grey)"
            "</div>")
