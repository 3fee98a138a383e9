"""``AcceptanceStrip``: the generated text with every token marked by how it was produced (an accepted draft token,
the target's bonus token after a draft, or a plain decoding step with no draft), and the number of accepted
tokens per step underneath. Sources come from `SpecRun.token_sources`.

>>> AcceptanceStrip(run=run).bar_source.data["accepted"][:5]     # doctest: +SKIP
[3, 0, 5, 1, 0]
"""

from __future__ import annotations

import html

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from widgets.base import WorkbenchView
from widgets.speculative_lab.tree_view import STYLE

SOURCE_STYLE = {2: ("accepted draft token", "#c7e9c0"), 1: ("bonus token (target)", "#fdd0a2"),
                0: ("plain step (no draft)", "#eeeeee")}


class AcceptanceStrip(WorkbenchView):
    """The output text coloured by token source, and accepted tokens per step (see the module docstring)."""

    run = param.Parameter(default=None, doc="The SpecRun shown.")

    def __init__(self, **params):
        super().__init__(**params)
        self.bar_source = ColumnDataSource(dict(step=[], accepted=[], drafted=[], colour=[]))
        fig = figure(height=180, sizing_mode="stretch_width", title="Accepted draft tokens per step",
                     toolbar_location=None, tools="", x_axis_label="step", y_axis_label="accepted")
        bars = fig.vbar(x="step", top="accepted", width=0.8, color="colour", source=self.bar_source)
        fig.add_tools(HoverTool(renderers=[bars], tooltips=[("step", "@step"), ("accepted", "@accepted"),
                                                            ("drafted nodes", "@drafted")]))
        self._fig = fig
        self._text = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["wb-spec-strip"],
                                  styles={"max-height": "260px", "overflow": "auto"})
        self._stats = pn.pane.HTML("", sizing_mode="stretch_width")
        self._layout = pn.Column(self._stats, self._text, self._fig, sizing_mode="stretch_width")
        self._update()

    @param.depends("run", watch=True)
    def _update(self) -> None:
        run = self.run
        if run is None:
            self.bar_source.data = dict(step=[], accepted=[], drafted=[], colour=[])
            self._text.object, self._stats.object = "", "No run yet."
            return
        sources = run.token_sources()
        words = run.token_strings or [str(t) for t in run.output_ids]
        spans = []
        for tok, src in zip(words, sources.tolist()):
            label, colour = SOURCE_STYLE[src]
            spans.append(f'<span class="wb-spec-tok wb-spec-src{src}" title="{html.escape(label)}" '
                         f'style="background:{colour}">{html.escape(tok)}</span>')
        legend = " ".join(f'<span style="background:{c}; padding:0 4px">{html.escape(n)}</span>'
                          for n, c in SOURCE_STYLE.values())
        self._text.object = (f'{STYLE}<div style="font-size:12px;margin-bottom:4px">{legend}</div>'
                             f'<pre style="white-space:pre-wrap;font-size:13px;line-height:1.6">{"".join(spans)}</pre>')
        acc = run.acceptance_lengths()
        drafted = np.array([s.tree.size for s in run.steps], np.int64)
        self.bar_source.data = dict(step=list(range(1, run.n_steps + 1)), accepted=acc.tolist(),
                                    drafted=drafted.tolist(),
                                    colour=["#54a24b" if d else "#bbbbbb" for d in drafted.tolist()])
        s = run.summary()
        counts = np.bincount(sources, minlength=3)
        self._stats.object = (
            f'<div class="wb-spec-summary wb-spec-strip-stats">{s["new_tokens"]} tokens in {s["steps"]} steps '
            f'({s["tokens_per_step"]:.2f} tokens/step): {counts[2]} accepted draft tokens, {counts[1]} bonus, '
            f'{counts[0]} plain; mean acceptance length {s["mean_acceptance_length"]:.2f} (vLLM), draft '
            f'acceptance rate {s["draft_acceptance_rate"]:.3f}, {s["tokens_per_second"]:.1f} tok/s</div>')

    def __panel__(self):
        return self._layout
