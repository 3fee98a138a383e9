"""``QualityVsBudget``: what a policy costs in model quality as its budget shrinks, one line per policy.

Three small figures with a shared (log-scaled) budget axis: the perplexity increase over the full cache, the KL
divergence of the next-token distributions from the full cache's, and passkey-retrieval accuracy. The input is
the table of a `~workbench.kvcache.QualitySweep` (columns policy, budget, kept_fraction, delta_ppl, kl, top1,
passkey); setting ``table`` again updates the per-policy data sources in place.

>>> from workbench.kvcache import quality_sweep                                        # doctest: +SKIP
>>> view = QualityVsBudget(table=quality_sweep(text, ["window", "h2o"], [32, 64]).table)  # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, DataRange1d, FixedTicker, HoverTool, Legend, LegendItem
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from widgets.base import WorkbenchView
from workbench.kvcache import SPECS

#: (column, figure title, y-axis label)
METRICS = (("delta_ppl", "Perplexity increase over the full cache", "Δ perplexity"),
           ("kl", "KL(full ‖ policy) of next-token distributions", "KL, nats"),
           ("passkey", "Passkey retrieval accuracy", "accuracy"))
COLUMNS = ("budget", "kept_fraction", "delta_ppl", "kl", "top1", "passkey")


def _base_name(label: str) -> str:
    return label.split("(", 1)[0]


class QualityVsBudget(WorkbenchView):
    """``table``: a pandas DataFrame with columns policy, budget, kept_fraction, delta_ppl, kl, top1 and passkey
    (NaN where the probe was not run). ``sources`` maps policy -> its ColumnDataSource; ``lines[metric][policy]``
    is the line renderer of that policy in that metric's figure (hidden when the policy is not in the table)."""

    table = param.DataFrame(default=None, allow_None=True)

    def __init__(self, **params):
        super().__init__(**params)
        self.sources: dict[str, ColumnDataSource] = {}
        self.lines: dict[str, dict] = {m: {} for m, _, _ in METRICS}
        self._dots: dict[str, dict] = {m: {} for m, _, _ in METRICS}
        self.policies: list[str] = []
        x_range = DataRange1d()
        self.figures = {}
        for metric, title, label in METRICS:
            fig = figure(height=260, sizing_mode="stretch_width", toolbar_location=None, tools="",
                         x_axis_type="log", x_range=x_range, title=title, min_width=260)
            fig.xaxis.axis_label = "budget (tokens per KV head)"
            fig.yaxis.axis_label = label
            self.figures[metric] = fig
        self.figures["passkey"].y_range = DataRange1d(start=0, end=1.05)
        self._ticks = FixedTicker(ticks=[])
        for fig in self.figures.values():
            fig.xaxis.ticker = self._ticks
        # inside the frame: a legend outside a stretching figure can make Bokeh's layout grow without end
        self.legend = Legend(items=[], location="top_right", click_policy="hide", label_text_font_size="11px",
                             background_fill_alpha=0.7, spacing=0, padding=4)
        self.figures["delta_ppl"].add_layout(self.legend)
        self._table = pn.pane.HTML("", sizing_mode="stretch_width")
        self._layout = pn.Column(
            pn.Row(*[pn.pane.Bokeh(f, sizing_mode="stretch_width") for f in self.figures.values()],
                   sizing_mode="stretch_width"),
            self._table, sizing_mode="stretch_width")
        self._update()

    def _renderers_for(self, policy: str, colour: str) -> None:
        """Create the line and markers of a policy in every figure (once; later tables reuse them)."""
        source = self.sources[policy] = ColumnDataSource({c: [] for c in ("policy", *COLUMNS)})
        for metric, _, _ in METRICS:
            fig = self.figures[metric]
            line = fig.line("budget", metric, source=source, color=colour, line_width=2)
            dots = fig.scatter("budget", metric, source=source, color=colour, size=7)
            fig.add_tools(HoverTool(renderers=[dots], tooltips=[
                ("policy", "@policy"), ("budget", "@budget"), (metric, f"@{metric}{{0.000}}"),
                ("cache kept", "@kept_fraction{0.0%}")]))
            self.lines[metric][policy] = line
            self._dots[metric][policy] = dots

    @param.depends("table", watch=True)
    def _update(self) -> None:
        t = self.table
        present = [] if t is None or len(t) == 0 else list(dict.fromkeys(t["policy"].astype(str)))
        budgets = [] if not present else sorted({int(b) for b in t["budget"]})
        for policy in present:
            if policy not in self.sources:
                self._renderers_for(policy, Category10_10[len(self.sources) % 10])
            rows = t[t["policy"].astype(str) == policy].sort_values("budget")
            data = {"policy": [policy] * len(rows), **{c: self._column(rows, c) for c in COLUMNS}}
            spec = SPECS.get(_base_name(policy))
            if spec is not None and spec.kind == "full" and len(rows) == 1 and budgets:
                # the full cache does not depend on the budget: draw it as a flat reference line
                data = {k: v * len(budgets) for k, v in data.items()}
                data["budget"] = budgets
            self.sources[policy].data = data
        for policy in self.sources:
            shown = policy in present
            for metric, _, _ in METRICS:
                self.lines[metric][policy].visible = shown
                self._dots[metric][policy].visible = shown
            if not shown:
                self.sources[policy].data = {c: [] for c in ("policy", *COLUMNS)}
        self.policies = present
        self._ticks.ticks = budgets
        self.legend.items = [LegendItem(label=p, renderers=[self.lines["delta_ppl"][p], self._dots["delta_ppl"][p]])
                             for p in present]
        passkey_run = t is not None and "passkey" in t and t["passkey"].notna().any()
        self.figures["passkey"].title.text = ("Passkey retrieval accuracy" if passkey_run or t is None
                                              else "Passkey retrieval accuracy (probe not run)")
        if t is None or len(t) == 0:
            self._table.object = ""
            return
        shown = [c for c in ("policy", "budget", "kept_fraction", "delta_ppl", "kl", "top1", "passkey") if c in t]
        self._table.object = t[shown].round(4).to_html(classes="wb-table wb-kv-quality", index=False)

    @staticmethod
    def _column(rows, column: str) -> list:
        if column not in rows:
            return [math.nan] * len(rows)
        values = rows[column].to_numpy(dtype=np.float64)
        return [int(v) for v in values] if column == "budget" else values.tolist()

    def __panel__(self):
        return self._layout
