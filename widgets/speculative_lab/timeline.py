"""``PearlTimeline``: drafting and verification on two lanes over time, the sequential schedule above PEARL's
pre-verify/post-verify schedule, from a run's measured draft and verify costs (`workbench.speculative.pearl`).

>>> PearlTimeline(run=run).timeline.speedup            # doctest: +SKIP
1.04
"""

from __future__ import annotations

import panel as pn
import param
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from widgets.base import WorkbenchView
from workbench.speculative.pearl import run_timeline

LANES = ["PEARL: verify", "PEARL: draft", "sequential: verify", "sequential: draft"]
COLOURS = {"draft": "#72b7b2", "verify": "#4c78a8"}


class PearlTimeline(WorkbenchView):
    """Two schedules of the same run on two lanes each (see the module docstring). ``max_steps`` bounds how many
    steps are drawn (the first ones)."""

    run = param.Parameter(default=None, doc="The SpecRun whose measured costs are scheduled.")
    max_steps = param.Integer(default=30, bounds=(1, 500), doc="Steps drawn.")

    def __init__(self, **params):
        super().__init__(**params)
        self.timeline = None
        self.source = ColumnDataSource(dict(lane=[], left=[], right=[], step=[], colour=[], kind=[]))
        fig = figure(height=220, sizing_mode="stretch_width", y_range=LANES, title="Sequential vs PEARL",
                     x_axis_label="milliseconds", toolbar_location="right", tools="xpan,xwheel_zoom,reset")
        bars = fig.hbar(y="lane", left="left", right="right", height=0.7, color="colour", line_color="white",
                        source=self.source)
        fig.add_tools(HoverTool(renderers=[bars], tooltips=[("step", "@step"), ("what", "@kind"),
                                                            ("from", "@left{0.0} ms"), ("to", "@right{0.0} ms")]))
        self._fig = fig
        self._summary = pn.pane.HTML("", sizing_mode="stretch_width")
        self._layout = pn.Column(self._summary, fig, sizing_mode="stretch_width")
        self._update()

    @param.depends("run", "max_steps", watch=True)
    def _update(self) -> None:
        if self.run is None or not self.run.steps:
            self.timeline = None
            self.source.data = dict(lane=[], left=[], right=[], step=[], colour=[], kind=[])
            self._summary.object = "No run yet."
            return
        tl = self.timeline = run_timeline(self.run)
        cols = dict(lane=[], left=[], right=[], step=[], colour=[], kind=[])
        for name, events in (("sequential", tl.sequential), ("PEARL", tl.pearl)):
            for kind, start, end, step in events:
                if step >= self.max_steps:
                    continue
                cols["lane"].append(f"{name}: {kind}")
                cols["left"].append(1000 * start)
                cols["right"].append(1000 * end)
                cols["step"].append(int(step) + 1)
                cols["colour"].append(COLOURS[kind])
                cols["kind"].append(kind)
        self.source.data = cols
        self._summary.object = (
            f'<div class="wb-spec-summary wb-spec-pearl">Whole run: sequential {1000 * tl.sequential_seconds:.0f} ms, '
            f'PEARL {1000 * tl.pearl_seconds:.0f} ms (<b>{tl.speedup:.2f}x</b>), simulated from this run\'s '
            f'measured draft and verify times; the first {min(self.max_steps, self.run.n_steps)} steps drawn. '
            f'PEARL drafts the next step\'s first token while the target verifies (pre-verify) and keeps drafting '
            f'during verification (post-verify); it pays when drafting costs as much as verifying.</div>')

    def __panel__(self):
        return self._layout
