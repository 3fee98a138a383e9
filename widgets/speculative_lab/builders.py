"""``BuilderCompare``: two tree builders side by side under the same acceptance vector and budget: the shape each
drafts and its expected accepted tokens per verification (`workbench.speculative.shapes`). Moving the budget
re-plans both trees live (Sequoia's DP included).

>>> view = BuilderCompare(acceptance=[0.6, 0.2, 0.1, 0.05], budget=16, left="sequoia", right="kary")  # doctest: +SKIP
>>> view.shapes[0].expected > view.shapes[1].expected                                                # doctest: +SKIP
True
"""

from __future__ import annotations

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource

from widgets.base import WorkbenchView
from widgets.speculative_lab.tree_view import empty_tree_data, error_html, tree_data, tree_figure
from workbench.errors import WorkbenchError
from workbench.speculative.layout import ACCEPTED, REJECTED, ROOT, tree_layout
from workbench.speculative.shapes import SHAPE_BUILDERS, compare_builders

DEFAULT_ACCEPTANCE = (0.55, 0.15, 0.08, 0.05, 0.03, 0.02, 0.01, 0.01)


def shape_layout(shape, acceptance: np.ndarray) -> tuple[dict, list[str]]:
    """`step_layout`-style arrays for a planned shape: every node drawn as if accepted-able, sized by its rank's
    acceptance, the most likely path (rank 0 all the way) marked; labels are ranks (#1 = the drafter's best)."""
    tree = shape.tree
    x, y = tree_layout(tree.parents)
    ranks = np.asarray(tree.meta.get("ranks", np.zeros(tree.size, np.int64)), np.int64)
    acc = acceptance[np.minimum(ranks, len(acceptance) - 1)] if tree.size else np.zeros(0)
    on = np.zeros(tree.size + 1, bool)
    on[0] = True
    for i in range(tree.size):
        p = tree.parents[i]
        on[i + 1] = ranks[i] == 0 and on[p + 1]
    state = np.array([ROOT] + [ACCEPTED if o else REJECTED for o in on[1:]], object)
    layout = {"x": x.astype(np.float64), "y": y, "node": np.arange(-1, tree.size),
              "parent": np.concatenate([[-1], np.asarray(tree.parents, np.int64) + 1]),
              "token": np.concatenate([[-1], ranks]), "state": state,
              "draft_prob": np.concatenate([[np.nan], acc]), "target_prob": np.full(tree.size + 1, np.nan),
              "depth": x.astype(np.int64), "on_path": on}
    return layout, ["root"] + [f"#{r + 1}" for r in ranks.tolist()]


class BuilderCompare(WorkbenchView):
    """Two builders' trees at one budget under one acceptance vector (see the module docstring)."""

    acceptance = param.List(default=list(DEFAULT_ACCEPTANCE), doc="Positional acceptance vector p[rank].")
    budget = param.Integer(default=16, bounds=(1, 64), doc="Draft nodes (the root excluded).")
    left = param.Selector(default="sequoia", objects=list(SHAPE_BUILDERS))
    right = param.Selector(default="eagle2", objects=list(SHAPE_BUILDERS))

    def __init__(self, **params):
        super().__init__(**params)
        self.shapes = []
        self.sources = []
        figs = []
        for side in ("left", "right"):
            nodes, edges = empty_tree_data()
            ns, es = ColumnDataSource(nodes), ColumnDataSource(edges)
            self.sources.append((ns, es))
            figs.append(tree_figure(ns, es, side, height=320))
        self._figs = figs
        self._budget = pn.widgets.EditableIntSlider(label="Budget (draft nodes)", start=1, end=64, value=self.budget,
                                            width=300, css_classes=["wb-spec-budget"])
        self._budget.param.watch(lambda e: setattr(self, "budget", int(e.new)), "value")
        self._left = pn.widgets.Select(label="Left", options=list(SHAPE_BUILDERS), value=self.left, width=140)
        self._right = pn.widgets.Select(label="Right", options=list(SHAPE_BUILDERS), value=self.right, width=140)
        self._left.param.watch(lambda e: setattr(self, "left", e.new), "value")
        self._right.param.watch(lambda e: setattr(self, "right", e.new), "value")
        self._summary = pn.pane.HTML("", sizing_mode="stretch_width")
        self._table = pn.pane.HTML("", sizing_mode="stretch_width")
        self._layout = pn.Column(pn.Row(self._budget, self._left, self._right), self._summary,
                                 pn.Row(*figs, sizing_mode="stretch_width"), self._table,
                                 sizing_mode="stretch_width")
        self._update()

    @param.depends("acceptance", "budget", "left", "right", watch=True)
    def _update(self) -> None:
        for widget, value in ((self._budget, self.budget), (self._left, self.left), (self._right, self.right)):
            if widget.value != value:
                widget.value = value
        try:
            acc = np.asarray(self.acceptance, np.float64)
            # every builder once per change: the two drawn and the table share the plans
            all_rows = compare_builders(acc, self.budget, SHAPE_BUILDERS)
        except WorkbenchError as exc:
            self._summary.object = error_html(str(exc))
            return
        by_name = {r.name: r for r in all_rows}
        self.shapes = [by_name[self.left], by_name[self.right]]
        for (ns, es), fig, shape in zip(self.sources, self._figs, self.shapes):
            layout, labels = shape_layout(shape, acc)
            nodes, edges = tree_data(layout, labels)
            ns.data, es.data = nodes, edges
            fig.title.text = (f"{shape.name}: {shape.size} nodes, depth {shape.depth}, expected "
                              f"{shape.expected:.3f} tokens per verification")
        a, b = self.shapes
        self._summary.object = (
            f'<div class="wb-spec-summary wb-spec-compare">Budget {self.budget}: <b>{a.name}</b> expects '
            f'{a.expected:.3f} tokens per verification, <b>{b.name}</b> {b.expected:.3f} '
            f'({a.expected / b.expected:.3f}x). Node labels are candidate ranks (#1 = the drafter\'s best); green: '
            f'the all-#1 path; size: the rank\'s acceptance p = [{", ".join(f"{v:.2f}" for v in acc[:8])}].</div>')
        cells = "".join(f"<tr><td>{r.name}</td><td>{r.size}</td><td>{r.depth}</td><td>{r.expected:.3f}</td></tr>"
                        for r in sorted(all_rows, key=lambda r: -r.expected))
        self._table.object = ('<table class="wb-table wb-spec-builders"><tr><th>builder</th><th>nodes</th>'
                              f'<th>depth</th><th>expected tokens / verification</th></tr>{cells}</table>')

    def __panel__(self):
        return self._layout
