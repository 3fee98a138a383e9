"""``DraftTreeView``: the draft tree of one speculative decoding step, drawn as a tree, and a step slider that walks
through a whole `SpecRun`.

Each node is labelled with its token text, sized by its draft probability and coloured by what the verifier did:
the accepted path (green, thick edges), reached-but-rejected nodes (red), nodes never reached because an ancestor
was rejected (grey), the root (the last decided token) and the bonus token the target added (orange, dashed edge).
Hover gives the token id, draft and target probability and depth. Layout and states come from
`workbench.speculative.layout.step_layout`.

>>> from workbench.speculative import generate                        # doctest: +SKIP
>>> view = DraftTreeView(run=generate(prompt, drafter="suffix"))       # doctest: +SKIP
>>> view.step = 3; view.node_source.data["state"]                      # doctest: +SKIP
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, HoverTool, LabelSet
from bokeh.plotting import figure

from widgets.base import WorkbenchView
from widgets.base import error_html as base_error_html
from workbench.speculative.layout import ACCEPTED, BONUS, REJECTED, ROOT, UNREACHED, step_layout

COLOURS = {ROOT: "#555555", ACCEPTED: "#54a24b", REJECTED: "#e45756", UNREACHED: "#d0d0d0", BONUS: "#f58518"}
LEGEND = ((ROOT, "root (last decided token)"), (ACCEPTED, "accepted"), (REJECTED, "rejected"),
          (UNREACHED, "never reached"), (BONUS, "bonus token"))
STYLE = """
<style>
.wb-spec-legend { font-size: 12px; color: #444; }
.wb-spec-swatch { display: inline-block; width: 11px; height: 11px; border-radius: 6px; vertical-align: -1px;
                  margin: 0 3px 0 10px; }
.wb-spec-summary { font-size: 13px; color: #333; margin: 2px 0; }
</style>
"""


def visible(token: str) -> str:
    """A token's text with whitespace made visible (a label must not be blank)."""
    return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥") or "∅"


def legend_html() -> str:
    items = "".join(f'<span class="wb-spec-swatch" style="background:{COLOURS[k]}"></span>{html.escape(v)}'
                    for k, v in LEGEND)
    return f'{STYLE}<div class="wb-spec-legend">{items}</div>'


error_html = functools.partial(base_error_html, lab="spec", style=STYLE)


def default_token_text() -> Callable[[list[int]], list[str]]:
    """Token id -> text with the default model's tokenizer (what every SpecRun of the lab was decoded with)."""
    from workbench.models import default_runner

    return default_runner().token_strings


def empty_tree_data() -> tuple[dict, dict]:
    nodes = dict(x=[], y=[], node=[], token=[], text=[], label=[], state=[], colour=[], size=[], draft=[],
                 target=[], depth=[], line=[])
    edges = dict(xs=[], ys=[], colour=[], width=[], dash=[])
    return nodes, edges


def tree_data(layout: dict, texts: list[str]) -> tuple[dict, dict]:
    """Column data for the nodes and edges of a drawing from `step_layout`-style arrays and each row's token text."""
    x, y, parent, state = layout["x"], layout["y"], layout["parent"], layout["state"]
    draft = layout["draft_prob"]
    size = np.where(np.isnan(draft), 14.0, 8.0 + 18.0 * np.sqrt(np.nan_to_num(draft)))
    on = layout["on_path"]
    nodes = dict(
        x=x.tolist(), y=y.tolist(), node=layout["node"].tolist(), token=layout["token"].tolist(),
        text=texts, label=[visible(t)[:14] for t in texts], state=[str(s) for s in state],
        colour=[COLOURS[s] for s in state], size=size.tolist(),
        draft=["-" if np.isnan(v) else f"{v:.3f}" for v in draft],
        target=["-" if np.isnan(v) else f"{v:.3f}" for v in layout["target_prob"]],
        depth=layout["depth"].tolist(), line=["#222222" if o else "#ffffff" for o in on],
    )
    xs, ys, colour, width, dash = [], [], [], [], []
    for i in range(1, len(x)):
        p = int(parent[i])
        xs.append([float(x[p]), float(x[i])])
        ys.append([float(y[p]), float(y[i])])
        path = bool(on[i] and on[p])
        colour.append(COLOURS[BONUS] if state[i] == BONUS else (COLOURS[ACCEPTED] if path else "#b0b0b0"))
        width.append(2.5 if state[i] == BONUS else (3.5 if path else 1.2))
        dash.append("dashed" if state[i] == BONUS else "solid")
    return nodes, dict(xs=xs, ys=ys, colour=colour, width=width, dash=dash)


def tree_figure(nodes: ColumnDataSource, edges: ColumnDataSource, title: str, height: int = 360):
    """A Bokeh figure drawing ``nodes``/``edges`` (from `tree_data`), depth left to right."""
    fig = figure(height=height, sizing_mode="stretch_width", title=title, toolbar_location="right",
                 tools="pan,wheel_zoom,reset,save", x_axis_label="draft depth", y_axis_label=None)
    fig.multi_line(xs="xs", ys="ys", line_color="colour", line_width="width", line_dash="dash", source=edges)
    circles = fig.scatter(x="x", y="y", size="size", fill_color="colour", line_color="line", line_width=1.5,
                          source=nodes)
    fig.add_layout(LabelSet(x="x", y="y", text="label", source=nodes, x_offset=9, y_offset=-6,
                            text_font_size="11px", text_color="#222222"))
    fig.add_tools(HoverTool(renderers=[circles], tooltips=[
        ("token", "@text"), ("id", "@token"), ("state", "@state"), ("depth", "@depth"),
        ("draft p", "@draft"), ("target p", "@target")]))
    fig.yaxis.visible = False
    fig.ygrid.visible = False
    fig.xaxis.ticker.desired_num_ticks = 8
    return fig


class DraftTreeView(WorkbenchView):
    """One step of a `SpecRun` as a tree (see the module docstring); ``step`` walks through the run.

    ``node_source``/``edge_source`` hold what is drawn; ``token_text`` turns ids into text (default: SmolLM2's
    tokenizer)."""

    run = param.Parameter(default=None, doc="The SpecRun shown.")
    step = param.Integer(default=0, bounds=(0, None), doc="Which decoding step (0-based).")

    def __init__(self, token_text: Callable[[list[int]], list[str]] | None = None, **params):
        super().__init__(**params)
        self._token_text = token_text
        nodes, edges = empty_tree_data()
        self.node_source = ColumnDataSource(nodes)
        self.edge_source = ColumnDataSource(edges)
        self._fig = tree_figure(self.node_source, self.edge_source, "Draft tree")
        self._slider = pn.widgets.IntSlider(label="Step", start=0, end=1, value=0, sizing_mode="stretch_width",
                                            css_classes=["wb-spec-step"])
        self._slider.param.watch(lambda e: setattr(self, "step", int(e.new)), "value")
        self._summary = pn.pane.HTML("", css_classes=["wb-spec-summary"], sizing_mode="stretch_width")
        self._layout = pn.Column(self._slider, self._summary, pn.pane.HTML(legend_html()), self._fig,
                                 sizing_mode="stretch_width")
        self._on_run()

    def texts(self, ids) -> list[str]:
        if self._token_text is None:
            self._token_text = default_token_text()
        return list(self._token_text([int(i) for i in ids]))

    @param.depends("run", watch=True)
    def _on_run(self) -> None:
        n = self.run.n_steps if self.run is not None else 0
        self._slider.end = max(1, n - 1)
        self._slider.disabled = n <= 1
        if self.step != 0:
            self.step = 0           # redraws through the watcher below
        else:
            self._draw()

    @param.depends("step", watch=True)
    def _draw(self) -> None:
        run = self.run
        if run is None or not run.steps:
            nodes, edges = empty_tree_data()
            self.node_source.data, self.edge_source.data = nodes, edges
            self._summary.object = "No run yet."
            return
        i = min(max(self.step, 0), run.n_steps - 1)
        if self._slider.value != i:
            self._slider.value = i
        s = run.steps[i]
        layout = step_layout(s)
        ids = layout["token"].tolist()
        context = run.prompt_ids.tolist() + run.output_ids.tolist()
        decided = len(run.prompt_ids) + sum(len(st.tokens) for st in run.steps[:i]) - 1   # the root's position
        root_id = int(context[decided]) if 0 <= decided < len(context) else -1
        texts = self.texts([root_id] + ids[1:])
        nodes, edges = tree_data(layout, texts)
        nodes["token"][0] = root_id
        self.node_source.data, self.edge_source.data = nodes, edges
        accepted_text = "".join(html.escape(visible(texts[int(a) + 1])) for a in s.accepted)
        bonus_text = html.escape(visible(texts[-1]))
        self._summary.object = (
            f"<b>step {i + 1} of {run.n_steps}</b>: drafted {s.tree.size} node(s), depth {s.tree.max_depth}; "
            f"accepted <b>{s.n_accepted}</b> <span class='wb-spec-path'>[{accepted_text}]</span> + bonus "
            f"<b>{bonus_text}</b>; draft {1000 * s.draft_seconds:.1f} ms, verify {1000 * s.verify_seconds:.1f} ms")

    def __panel__(self):
        return self._layout
