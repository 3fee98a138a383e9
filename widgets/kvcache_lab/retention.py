"""``RetentionMap``: which cache positions a KV policy keeps at every decode step, for one layer and KV head.

The map is an image of decode steps (rows, first step on top) by positions (columns), one colour per cell state of
:meth:`~workbench.kvcache.Retention.cell_states` (future, kept, evicted, sink, skipped). Changing the policy, budget
or layer replays that one layer (about 10 ms for a 400-token trace); changing the head only recolours.

>>> from workbench.kvcache import capture                                        # doctest: +SKIP
>>> view = RetentionMap(trace=capture(text, decode_steps=32), policy="h2o", budget=64)  # doctest: +SKIP
>>> view.retention.summary()["kept_tokens"]                                      # doctest: +SKIP
64.0
"""

from __future__ import annotations

import functools
import html
import time

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, CustomJSHover, HoverTool, LinearColorMapper, Range1d, Span
from bokeh.plotting import figure

from widgets.base import WorkbenchView
from widgets.base import error_html as base_error_html
from workbench.errors import WorkbenchError
from workbench.kvcache import POLICY_NAMES, SPECS, replay
from workbench.kvcache.replay import EVICTED, FUTURE, KEPT, SINK, SKIPPED

#: cell code -> (name, colour); the codes are those of `Retention.cell_states`
STATES = {FUTURE: ("future", "#ffffff"), KEPT: ("kept", "#4c78a8"), EVICTED: ("evicted", "#d9d9d9"),
          SINK: ("sink", "#f58518"), SKIPPED: ("skipped", "#c6dbef")}
STATE_NAMES = tuple(STATES[c][0] for c in range(len(STATES)))
STATE_COLOURS = tuple(STATES[c][1] for c in range(len(STATES)))
STYLE = """
<style>
.wb-stats { font-size: 13px; color: #444; margin: 4px 0; }
.wb-kv-legend { font-size: 12px; color: #444; }
.wb-kv-swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #999; vertical-align: -2px;
                margin: 0 3px 0 10px; }
</style>
"""


def policy_groups() -> dict[str, list[str]]:
    """Policy names grouped by kind, for a grouped select."""
    groups: dict[str, list[str]] = {"eviction": [], "selection": [], "full": []}
    for name in POLICY_NAMES:
        groups[SPECS[name].kind].append(name)
    return {k: v for k, v in groups.items() if v}


def policy_select(owner: param.Parameterized, name: str, label: str, width: int = 280) -> pn.widgets.Select:
    """A Select of policies grouped by kind, kept in step with ``owner.<name>`` both ways."""
    select = pn.widgets.Select(label=label, groups=policy_groups(), value=getattr(owner, name), width=width)

    def from_widget(event) -> None:
        if getattr(owner, name) != event.new:
            setattr(owner, name, event.new)

    def to_widget(event) -> None:
        if select.value != event.new:
            select.value = event.new

    select.param.watch(from_widget, "value")
    owner.param.watch(to_widget, name)
    return select


def legend_html(names=STATE_NAMES, colours=STATE_COLOURS) -> str:
    items = "".join(f'<span class="wb-kv-swatch" style="background:{c}"></span>{html.escape(n)}'
                    for n, c in zip(names, colours))
    return f'{STYLE}<div class="wb-kv-legend">{items}</div>'


def about_html(name: str) -> str:
    """One small paragraph: the official code a policy follows and where we differ (`SPECS[name]`)."""
    spec = SPECS[name]
    parts = [f"<b>follows</b> {html.escape(spec.official)}" if spec.official else ""]
    if spec.differences:
        parts.append(f"<b>differs</b>: {html.escape(spec.differences)}")
    return f'{STYLE}<div class="wb-stats wb-kv-about">{"<br>".join(p for p in parts if p)}</div>'


error_html = functools.partial(base_error_html, lab="kv", style=STYLE)


def state_figure(title: str, names=STATE_NAMES, colours=STATE_COLOURS, *, height: int = 300, x_range=None,
                 y_range=None, tokens: ColumnDataSource | None = None):
    """A positions x decode-steps image plot. Returns ``(figure, image source, prefill span)``; the source has
    columns image/x/y/dw/dh and the y axis runs downwards (step 0 on top)."""
    source = ColumnDataSource(dict(image=[np.zeros((1, 1), np.int8)], x=[0], y=[0], dw=[1], dh=[1]))
    plot = figure(height=height, sizing_mode="stretch_width", title=title, tools="xpan,xwheel_zoom,reset",
                  toolbar_location="right", x_range=x_range or Range1d(0, 1), y_range=y_range or Range1d(1, 0))
    mapper = LinearColorMapper(palette=list(colours), low=-0.5, high=len(colours) - 0.5)
    image = plot.image(image="image", x="x", y="y", dw="dw", dh="dh", source=source, color_mapper=mapper)
    floor = CustomJSHover(code="return String(Math.floor(value))")
    state = CustomJSHover(args=dict(names=list(names)), code="return names[value] ?? String(value)")
    if tokens is not None:
        position = CustomJSHover(args=dict(src=tokens), code=(
            "const i = Math.floor(value); const t = src.data.token[i];"
            "return t === undefined ? String(i) : i + '  ' + JSON.stringify(t)"))
    else:
        position = floor
    plot.add_tools(HoverTool(renderers=[image], tooltips=[("position", "$x{custom}"), ("step", "$y{custom}"),
                                                          ("state", "@image{custom}")],
                             formatters={"$x": position, "$y": floor, "@image": state}))
    prefill = Span(location=0, dimension="height", line_color="#333", line_dash="dashed", line_width=1)
    plot.add_layout(prefill)
    plot.xaxis.axis_label = "position (token index)"
    plot.yaxis.axis_label = "decode step"
    plot.grid.visible = False
    return plot, source, prefill


def middle_layer(trace) -> int:
    """The model layer in the middle of a trace's captured layers (a representative default)."""
    return int(trace.layers[len(trace.layers) // 2])


class RetentionMap(WorkbenchView):
    """Kept/evicted/sink/skipped/future cells of ``policy`` at ``budget`` for model ``layer`` and KV ``head``.

    ``retention`` (a one-layer `Retention`) and ``states`` (int8 [S, T]) hold what is drawn; ``source`` is the image
    data source, ``mass_source`` the per-step attention mass of the head; ``error`` is the message of a bad input
    (the previous map stays). ``controls`` holds the policy/budget/layer/head widgets (the KV-cache lab shows them
    in its side bar with ``show_controls=False``). ``last_update_ms`` is the server-side time of the last update.
    """

    trace = param.Parameter(doc="a KVTrace")
    policy = param.Selector(default="h2o", objects=list(POLICY_NAMES))
    budget = param.Integer(default=64, doc="tokens per KV head (the core checks the range)")
    layer = param.Integer(default=None, allow_None=True, doc="model layer; None: the middle captured layer")
    head = param.Integer(default=0, bounds=(0, None), doc="KV head")
    show_controls = param.Boolean(default=True)
    retention = param.Parameter(default=None, precedence=-1, doc="the Retention being shown (output)")
    error = param.String(default="", precedence=-1)

    def __init__(self, **params):
        super().__init__(**params)
        self.states = None
        self.last_update_ms = 0.0
        self.tokens = ColumnDataSource(dict(token=[]))
        self._plot, self.source, self._prefill = state_figure("Retention map", tokens=self.tokens)
        self.mass_source = ColumnDataSource(dict(step=[], mass=[], kept=[]))
        mass = figure(height=150, sizing_mode="stretch_width", toolbar_location=None, tools="", y_range=(0, 1.02),
                      title="Attention mass on the kept positions, per decode step (this head)")
        line = mass.line("step", "mass", source=self.mass_source, color="#4c78a8", line_width=2)
        mass.add_tools(HoverTool(renderers=[line], mode="vline", tooltips=[("step", "@step"),
                                                                           ("mass", "@mass{0.000}"),
                                                                           ("kept", "@kept")]))
        mass.xaxis.axis_label = "decode step"
        self._mass_plot = mass
        self._summary = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["wb-kv-summary-pane"])
        self._error = pn.pane.HTML("", sizing_mode="stretch_width")
        self._build_controls()
        self._layout = pn.Column(sizing_mode="stretch_width")
        self._arrange()
        self._new_trace()

    # -- controls -----------------------------------------------------------------------------------------------
    def _build_controls(self) -> None:
        self._policy_w = pn.widgets.Select(label="policy", groups=policy_groups(), value=self.policy, width=280)
        self._budget_w = pn.widgets.EditableIntSlider(label="budget (tokens per KV head)", start=1, end=512,
                                                      value=self.budget, fixed_start=1, width=280,
                                                      css_classes=["wb-kv-budget"])
        self._layer_w = pn.widgets.DiscreteSlider(label="layer", options=[0], value=0, width=280)
        self._head_w = pn.widgets.RadioButtonGroup(label="KV head", options=[0], value=0, color="default")
        self._quiet = False  # set while the widgets are adjusted to a new trace: their events are not user input
        for widget, name, cast in ((self._policy_w, "policy", str), (self._budget_w, "budget", int),
                                   (self._layer_w, "layer", int), (self._head_w, "head", int)):
            widget.param.watch(lambda e, name=name, cast=cast: self._from_widget(name, cast(e.new)), "value")
        self._about = pn.pane.HTML(about_html(self.policy), width=280, margin=(0, 10))
        self.param.watch(lambda e: setattr(self._about, "object", about_html(e.new)), "policy")
        self.controls = pn.Column(self._policy_w, self._about, self._budget_w, self._layer_w,
                                  pn.pane.HTML('<div class="wb-stats">KV head</div>', margin=(0, 10)),
                                  self._head_w, width=300)

    def _from_widget(self, name: str, value) -> None:
        if not self._quiet and getattr(self, name) != value:
            setattr(self, name, value)

    def _sync_controls(self) -> None:
        """Show the current parameter values in the widgets (after a programmatic change)."""
        if self._policy_w.value != self.policy:
            self._policy_w.value = self.policy
        if self._budget_w.value != self.budget and self.budget >= 1:  # the slider cannot show budgets < 1
            self._budget_w.value = self.budget
        self._quiet = True
        try:
            if self.layer in self._layer_w.options and self._layer_w.value != self.layer:
                self._layer_w.value = self.layer
            if self.head in self._head_w.options and self._head_w.value != self.head:
                self._head_w.value = self.head
        finally:
            self._quiet = False

    @param.depends("show_controls", watch=True)
    def _arrange(self) -> None:
        parts = [self.controls] if self.show_controls else []
        self._layout[:] = [*parts, self._error, self._summary, pn.pane.HTML(legend_html(), margin=(0, 5)),
                           pn.pane.Bokeh(self._plot, sizing_mode="stretch_width"),
                           pn.pane.Bokeh(self._mass_plot, sizing_mode="stretch_width")]

    # -- updates ------------------------------------------------------------------------------------------------
    @param.depends("trace", watch=True)
    def _new_trace(self) -> None:
        tr = self.trace
        if tr is None:
            self._summary.object = f'{STYLE}<div class="wb-stats">no trace: capture a text first</div>'
            return
        layers = [int(x) for x in tr.layers]
        self._quiet = True
        try:
            self._layer_w.options = layers
            self._head_w.options = list(range(tr.n_kv_heads))
            self._budget_w.end = max(tr.n_tokens, 2)
        finally:
            self._quiet = False
        self.tokens.data = dict(token=list(tr.tokens))
        self._plot.x_range.update(start=0, end=tr.n_tokens)
        self._plot.y_range.update(start=tr.n_steps, end=0)
        self._prefill.location = tr.n_prefill
        self.retention = None  # the old one belongs to another text
        with param.parameterized.discard_events(self):  # one replay below, not one per corrected parameter
            if self.layer not in layers:
                self.layer = middle_layer(tr)
            if self.head >= tr.n_kv_heads:
                self.head = 0
        self._replay()

    @param.depends("policy", "budget", "layer", watch=True)
    def _replay(self) -> None:
        if self.trace is None:
            return
        t0 = time.perf_counter()
        self._sync_controls()
        try:
            self.retention = replay(self.trace, self.policy, self.budget, layers=[self.layer])
        except WorkbenchError as exc:
            self.error = f"{self.policy} at budget {self.budget}: {exc}"
            self._error.object = error_html(self.error)
            if self.retention is None:  # nothing valid to keep showing
                self.source.data = dict(image=[np.zeros((1, 1), np.int8)], x=[0], y=[0], dw=[1], dh=[1])
                self.mass_source.data = dict(step=[], mass=[], kept=[])
                self._summary.object = ""
            self.last_update_ms = (time.perf_counter() - t0) * 1e3
            return
        self.error = ""
        self._error.object = ""
        self._draw()
        self.last_update_ms = (time.perf_counter() - t0) * 1e3

    @param.depends("head", watch=True)
    def _draw(self) -> None:
        r = self.retention
        if r is None:
            return
        if self.head >= r.kept.shape[1]:
            self.error = f"KV head {self.head} does not exist; this model has {r.kept.shape[1]} KV heads"
            self._error.object = error_html(self.error)
            return
        self.error = ""
        self._error.object = ""
        self._sync_controls()
        s, t = r.n_steps, r.n_tokens
        states = self.states = r.cell_states(0, self.head)
        self.source.data = dict(image=[states], x=[0], y=[0], dw=[t], dh=[s])
        self.mass_source.data = dict(step=list(range(s)), mass=r.mass[0, self.head].astype(float).tolist(),
                                     kept=r.n_kept[0, self.head].tolist())
        self._plot.title.text = (f"{r.policy.label()} · budget {r.budget} · layer {int(r.layers[0])} · "
                                 f"KV head {self.head}: positions (x) × decode steps (y)")
        self._summary.object = self.summary_html()

    def summary_html(self) -> str:
        r = self.retention
        s = r.summary()
        last = self.states[-1]
        head_mass = float(r.mass[0, self.head].mean())
        not_used = "skipped" if r.policy.kind == "selection" else "evicted"
        n_gone = int(np.count_nonzero(last == (SKIPPED if r.policy.kind == "selection" else EVICTED)))
        sinks = f" · {int(np.count_nonzero(last == SINK))} sinks" if r.sinks else ""
        return (
            f'{STYLE}<div class="wb-stats wb-kv-summary"><b>{html.escape(s["policy"])}</b> ({s["kind"]}) · budget '
            f'{s["budget"]} · layer {int(r.layers[0])}, all heads: attention mass '
            f'<b class="wb-kv-mass">{s["attention_mass"]:.3f}</b> · output error {s["output_error"]:.3f} · oracle '
            f'IoU {s["oracle_iou"]:.3f} · kept <b class="wb-kv-kept">{s["kept_tokens"]:.1f}</b> tokens '
            f'({s["kept_fraction"]:.1%} of the cache) · replayed in {s["replay_ms"]:.0f} ms</div>'
            f'<div class="wb-stats wb-kv-head">KV head {self.head}: mean attention mass {head_mass:.3f}; at the '
            f"last step {int(np.count_nonzero((last == KEPT) | (last == SINK)))} kept, {n_gone} {not_used}{sinks}"
            "</div>")

    def __panel__(self):
        return self._layout
