"""``SpeedupCurve``: expected against measured speedup of chain drafts by draft length, next to the verify-cost curve
that explains where speculation stops paying. The expectation is `costs.expected_speedups` (tokens per step
under a per-token acceptance rate, over the measured cost of the pass); measured points come from
`sweep.measured_speedups` (real decodes with identical outputs).

>>> view = SpeedupCurve(curve=runner_verify_costs(runner), alpha=0.7)      # doctest: +SKIP
>>> view.alpha = 0.9; view.expected_source.data["speedup"][:3]            # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, HoverTool, Span
from bokeh.plotting import figure

from widgets.base import WorkbenchView
from workbench.errors import WorkbenchError
from workbench.speculative.costs import expected_speedups


class SpeedupCurve(WorkbenchView):
    """Expected vs measured speedup against draft length, and the verify-cost curve (see the module docstring)."""

    curve = param.Dict(default=None, doc="Verify-cost curve {draft nodes: seconds}; 0 = a plain step.")
    alpha = param.Number(default=0.6, bounds=(0.0, 0.99), doc="Per-token acceptance rate of the expectation.")
    max_gamma = param.Integer(default=16, bounds=(1, 64), doc="Longest draft on the x axis.")
    measured = param.Dict(default=None, doc="`sweep.measured_speedups` output, drawn as points.")

    def __init__(self, **params):
        super().__init__(**params)
        self.expected_source = ColumnDataSource(dict(gamma=[], speedup=[]))
        self.measured_source = ColumnDataSource(dict(gamma=[], speedup=[], tps=[]))
        self.cost_source = ColumnDataSource(dict(nodes=[], ms=[]))
        fig = figure(height=260, sizing_mode="stretch_width", title="Speedup over plain decoding",
                     x_axis_label="draft length (tokens)", y_axis_label="speedup", toolbar_location=None, tools="")
        line = fig.line("gamma", "speedup", source=self.expected_source, line_width=2, color="#4c78a8",
                        legend_label="expected")
        fig.scatter("gamma", "speedup", source=self.expected_source, size=5, color="#4c78a8")
        pts = fig.scatter("gamma", "speedup", source=self.measured_source, size=10, color="#e45756",
                          marker="diamond", legend_label="measured")
        fig.add_layout(Span(location=1.0, dimension="width", line_dash="dashed", line_color="#888888"))
        fig.add_tools(HoverTool(renderers=[line, pts], tooltips=[("draft length", "@gamma"),
                                                                  ("speedup", "@speedup{0.00}x")]))
        fig.legend.location = "top_right"
        cost = figure(height=260, sizing_mode="stretch_width", title="Verify-cost curve",
                      x_axis_label="draft nodes verified with the root", y_axis_label="ms per pass",
                      toolbar_location=None, tools="")
        cr = cost.line("nodes", "ms", source=self.cost_source, line_width=2, color="#54a24b")
        cost.scatter("nodes", "ms", source=self.cost_source, size=6, color="#54a24b")
        cost.add_tools(HoverTool(renderers=[cr], tooltips=[("nodes", "@nodes"), ("ms", "@ms{0.0}")]))
        self._alpha = pn.widgets.FloatSlider(label="Acceptance rate per token (expectation)", start=0.0, end=0.99,
                                             step=0.01, value=self.alpha, width=320, css_classes=["wb-spec-alpha"])
        self._alpha.param.watch(lambda e: setattr(self, "alpha", float(e.new)), "value")
        self._summary = pn.pane.HTML("", sizing_mode="stretch_width")
        self._layout = pn.Column(self._alpha, self._summary, pn.Row(fig, cost, sizing_mode="stretch_width"),
                                 sizing_mode="stretch_width")
        self._update()

    @param.depends("curve", "alpha", "max_gamma", "measured", watch=True)
    def _update(self) -> None:
        if self._alpha.value != self.alpha:
            self._alpha.value = self.alpha
        if not self.curve:
            self.expected_source.data = dict(gamma=[], speedup=[])
            self.cost_source.data = dict(nodes=[], ms=[])
            self._summary.object = "No verify-cost curve yet."
            return
        gammas = np.arange(0, self.max_gamma + 1)
        try:
            exp = expected_speedups(self.curve, self.alpha, gammas)
        except WorkbenchError as exc:
            self._summary.object = f"⚠ {exc}"
            return
        self.expected_source.data = dict(gamma=gammas.tolist(), speedup=exp.tolist())
        items = sorted((int(k), float(v)) for k, v in self.curve.items())
        self.cost_source.data = dict(nodes=[k for k, _ in items], ms=[1000 * v for _, v in items])
        best = int(gammas[int(np.argmax(exp))])
        text = (f'<div class="wb-spec-summary wb-spec-speedup">At acceptance {self.alpha:.2f} per token the best '
                f'chain drafts <b>{best}</b> token(s) for an expected <b>{exp.max():.2f}x</b>')
        m = self.measured or {}
        if m.get("gammas"):
            self.measured_source.data = dict(gamma=list(m["gammas"]), speedup=list(m["speedup"]),
                                             tps=list(m["tokens_per_s"]))
            text += (f'; measured on the prompt: best {max(m["speedup"]):.2f}x at draft length '
                     f'{m["gammas"][int(np.argmax(m["speedup"]))]} (plain {m["plain_tokens_per_s"]:.1f} tok/s, '
                     f'acceptance {m["alpha"]:.2f})')
        else:
            self.measured_source.data = dict(gamma=[], speedup=[], tps=[])
        self._summary.object = text + ".</div>"

    def __panel__(self):
        return self._layout
