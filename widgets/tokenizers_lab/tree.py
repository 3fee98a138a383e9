"""``MergeTree``: the binary tree of merges that builds a token, down to its bytes, with merge ranks and counts."""

from __future__ import annotations

import panel as pn
import param
from bokeh.models import ColumnDataSource, HoverTool, LabelSet
from bokeh.plotting import figure

from widgets.base import WorkbenchView
from workbench.errors import WorkbenchError
from workbench.tokenization.explore import merge_tree, token_label


class MergeTree(WorkbenchView):
    """Type a word; pick one of its tokens; see how BPE built it. ``tree`` holds the rendered
    :class:`~workbench.tokenization.explore.MergeTree`; ``nodes``/``edges`` are the plot's data sources."""

    tokenizer = param.Parameter()
    word = param.String(default=" acknowledged", doc="text whose tokens can be inspected")
    token_id = param.Integer(default=None, allow_None=True, doc="the token whose tree is drawn")

    def __init__(self, **params):
        super().__init__(**params)
        self.tree = None
        self.nodes = ColumnDataSource(dict(x=[], y=[], label=[], id=[], rank=[], count=[], detail=[]))
        self.edges = ColumnDataSource(dict(x0=[], y0=[], x1=[], y1=[]))
        plot = figure(height=360, sizing_mode="stretch_width", toolbar_location=None, tools="",
                      title="Merge tree", x_axis_location=None, y_axis_location=None)
        plot.grid.visible = False
        plot.segment("x0", "y0", "x1", "y1", source=self.edges, color="#999", line_width=1.5)
        circles = plot.scatter("x", "y", source=self.nodes, size=14, color="#4c78a8")
        plot.add_layout(LabelSet(x="x", y="y", text="label", source=self.nodes, y_offset=9, x_offset=0,
                                 text_align="center", text_font_size="11px"))
        plot.add_tools(HoverTool(renderers=[circles], tooltips=[("token", "@label"), ("id", "@id"),
                                                                ("merge", "@detail")]))
        self._plot = plot
        self._word = pn.widgets.TextInput.from_param(self.param.word, label="word or text")
        self._choice = pn.widgets.Select(label="token", options={}, width=260)
        self._choice.param.watch(lambda e: setattr(self, "token_id", e.new), "value")
        self._info = pn.pane.HTML("", sizing_mode="stretch_width")
        self._layout = pn.Column(pn.Row(self._word, self._choice), self._info, self._plot, sizing_mode="stretch_width")
        self._update_choices()

    @param.depends("tokenizer", "word", watch=True)
    def _update_choices(self) -> None:
        if self.tokenizer is None:
            return
        ids = self.tokenizer.encode(self.word) if self.word else []
        options = {f"{token_label(self.tokenizer.id_to_token(i))}  (id {i})": i for i in ids}
        self._choice.options = options
        if ids:
            longest = max(ids, key=lambda i: len(self.tokenizer.id_to_token(i)))
            self._choice.value = longest
            self.token_id = longest
        self._draw()

    @param.depends("token_id", watch=True)
    def _draw(self) -> None:
        if self.tokenizer is None or self.token_id is None:
            self.nodes.data = dict(x=[], y=[], label=[], id=[], rank=[], count=[], detail=[])
            self.edges.data = dict(x0=[], y0=[], x1=[], y1=[])
            return
        try:
            tree = self.tree = merge_tree(self.tokenizer, self.token_id)
        except WorkbenchError as exc:
            self._info.object = f"<p>{exc}</p>"
            return
        details = [f"#{r}" + (f", count {c}" if c is not None else "") if r >= 0 else "byte"
                   for r, c in zip(tree.ranks, tree.counts)]
        self.nodes.data = dict(x=list(tree.x), y=list(tree.y), label=tree.labels, id=tree.ids, rank=tree.ranks,
                               count=[-1 if c is None else c for c in tree.counts], detail=details)
        self.edges.data = dict(x0=[tree.x[p] for p, _ in tree.edges], y0=[tree.y[p] for p, _ in tree.edges],
                               x1=[tree.x[c] for _, c in tree.edges], y1=[tree.y[c] for _, c in tree.edges])
        root = tree.root
        merge = f"merge #{root.rank}" if root.rank >= 0 else "a single byte"
        count = f", count {root.count} when merged" if root.count is not None else ""
        self._info.object = (f'<div class="wb-stats">token <b>{token_label(root.token)}</b> (id {root.id}): {merge}'
                             f"{count}; {len(tree.ids)} nodes, depth {tree.depth}</div>")

    def __panel__(self):
        return self._layout
