"""What every MoE routing view shares: `RoutedView` (a trace, a layer and router settings routed through
`workbench.routing.route`; a change re-routes and redraws), `SettingsControls` (the router settings as widgets),
which settings each router takes (`router_params`), expert colours, the trace's tokens as HTML and the lab's
stylesheet. The views themselves: `widgets.moe_lab.heatmap`, `load`, `flow` and `compare`.

>>> router_params("topk_softmax", k=2, capacity_factor=1.0, drop_policy="position", overflow="drop")
{'k': 2}
"""

from __future__ import annotations

import functools
import html
import time

import numpy as np
import panel as pn
import param
from bokeh.palettes import Category10_10, Category20_20, Turbo256

from widgets.base import WorkbenchView, shown_token
from widgets.base import error_html as base_error_html
from workbench.errors import WorkbenchError
from workbench.routing import DROP_POLICIES, OVERFLOW_MODES, ROUTER_NAMES, Routing, route

#: routers that take a capacity factor, a drop policy, an overflow mode; the one that ignores k
CAPACITY_ROUTERS = ("switch_top1", "capacity_topk", "capacity_aware", "expert_choice")
DROP_POLICY_ROUTERS = ("switch_top1", "capacity_topk", "capacity_aware")
OVERFLOW_ROUTERS = ("capacity_aware",)
TOP1_ROUTERS = ("switch_top1",)
ROUTER_HELP = {
    "topk_softmax": "softmax over the experts, top-k, weights renormalised over the k (Mixtral); no capacity",
    "switch_top1": "top-1 of the softmax (Switch Transformer); overflowing tokens are dropped",
    "capacity_topk": "top-k with capacity ceil(cf · T · k / E) per expert, overflow dropped (GShard; BPR with "
                     "the probability policy)",
    "capacity_aware": "top-k with capacity; overflow dropped or rerouted to the best expert with room",
    "expert_choice": "every expert takes its capacity best tokens; a token gets 0..E experts (Zhou et al.)",
    "deepseek_v3": "sigmoid scores + selection-only bias, top-k (DeepSeek-V3); no capacity",
    "null_experts": "top-k over real + one null expert; a null slot does nothing (AdaMoE); no capacity",
    "grouped_topk": "k/2 experts inside each of 2 expert groups (Pangu MoGE); no capacity",
}

STYLE = """
<style>
.wb-stats { font-size: 13px; color: #444; margin: 4px 0; }
.wb-moe-text { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; line-height: 1.9;
               white-space: pre-wrap; word-break: break-all; max-height: 420px; overflow-y: auto; }
.wb-moe-seq { margin: 2px 0 8px 0; }
.wb-moe-tag { font-family: sans-serif; font-size: 11px; color: #fff; background: #555; border-radius: 3px;
              padding: 1px 5px; margin-right: 6px; }
.wb-moe-tok { border-radius: 3px; padding: 1px 0; margin-right: 1px; }
.wb-moe-dropped { border-bottom: 2px solid #d62728; }
.wb-moe-none { color: #999; background: #eee; text-decoration: line-through; }
.wb-moe-diff { outline: 2px solid #d62728; }
.wb-moe-same { color: #999; }
.wb-moe-legend { font-size: 12px; color: #444; }
.wb-moe-swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #999; vertical-align: -2px;
                 margin: 0 3px 0 10px; }
</style>
"""


error_html = functools.partial(base_error_html, lab="moe", style=STYLE)


# Category10/20 without their reds: red means "dropped" in every MoE view
_CATEGORY9 = [c for i, c in enumerate(Category10_10) if i != 3]
_CATEGORY18 = [c for i, c in enumerate(Category20_20) if i not in (6, 7)]


def expert_colours(n_experts: int) -> list[str]:
    """One colour per expert: Category10 (9 experts) or Category20 (18), red left out, then evenly spaced Turbo
    colours."""
    if n_experts <= len(_CATEGORY9):
        return _CATEGORY9[:n_experts]
    if n_experts <= len(_CATEGORY18):
        return _CATEGORY18[:n_experts]
    return [Turbo256[int(i)] for i in np.linspace(0, 255, n_experts)]


def router_params(router: str, *, k: int, capacity_factor: float, drop_policy: str, overflow: str,
                  trace=None, layer: int = 0) -> dict:
    """The keyword params of ``router`` among the shared settings (a router gets only those it takes). For
    ``deepseek_v3`` on a trace with a ``bias`` (one per layer and expert: a captured DeepSeek-V3 gate, or a tiny MoE trained with
    the sigmoid gate), that layer's bias, so the lab replays what the model did.

    ``router_params("switch_top1", k=2, capacity_factor=1.0, drop_policy="position", overflow="drop")``
    -> ``{"capacity_factor": 1.0, "drop_policy": "position"}``.
    """
    p: dict = {}
    if router not in TOP1_ROUTERS:
        p["k"] = k
    if router in CAPACITY_ROUTERS:
        p["capacity_factor"] = capacity_factor
    if router in DROP_POLICY_ROUTERS:
        p["drop_policy"] = drop_policy
    if router in OVERFLOW_ROUTERS:
        p["overflow"] = overflow
    if router == "deepseek_v3" and trace is not None and trace.bias is not None:
        p["bias"] = trace.bias[layer].astype(np.float64)
    return p


def served_lists(routing: Routing) -> list[str]:
    """Per token, its serving experts in increasing order as text: ``"1, 5"``, or ``"none"``."""
    return [", ".join(map(str, sorted(e for e in row if e >= 0))) or "none" for row in routing.assignments.tolist()]


def token_text(trace, t: int) -> str:
    return trace.tokens[t] if trace.tokens is not None else f"⟨{int(trace.token_ids[t])}⟩"


def tokens_html(trace, classes, titles, styles=None, *, css_class: str = "wb-moe-text") -> str:
    """The trace's tokens as spans (one ``wb-moe-tok`` span per token, ``data-t`` = token index), one block per
    sequence headed by its tag. ``classes``/``titles``/``styles``: a string per token."""
    seq = trace.sequence_ids
    out = [STYLE, f'<div class="{css_class}">']
    for t in range(trace.n_tokens):
        if t == 0 or seq[t] != seq[t - 1]:
            if t:
                out.append("</div>")
            tag = trace.tags[t] or f"sequence {int(seq[t])}"
            out.append(f'<div class="wb-moe-seq"><span class="wb-moe-tag">{html.escape(tag)}</span>')
        style = f' style="{styles[t]}"' if styles is not None and styles[t] else ""
        out.append(f'<span class="wb-moe-tok {classes[t]}" data-t="{t}"{style} title="{html.escape(titles[t])}">'
                   f"{shown_token(token_text(trace, t))}</span>")
    out.append("</div></div>")
    return "".join(out)


def layer_label(trace, layer: int) -> str:
    """``"layer 2"``, or ``"layer 2 (model layer 5)"`` when the trace's meta numbers its layers differently."""
    layers = trace.meta.get("layers") if trace is not None else None
    if isinstance(layers, list) and len(layers) == trace.n_layers and layers[layer] != layer:
        return f"layer {layer} (model layer {layers[layer]})"
    return f"layer {layer}"


class RoutedView(WorkbenchView):
    """Base of the MoE views: ``trace`` (a `RoutingTrace`), ``layer`` (an index into its layers) and the router
    settings; any change re-routes and redraws (`_render`, in the subclass). A bad setting (k larger than the
    experts, a capacity factor <= 0 ...) shows the core's message in ``error`` and keeps the last drawing.
    ``last_update_ms``: server-side time of the last update."""

    trace = param.Parameter(doc="a RoutingTrace")
    layer = param.Integer(default=0, doc="index into the trace's layers")
    router = param.Selector(default="capacity_topk", objects=list(ROUTER_NAMES))
    k = param.Integer(default=2, doc="slots per token (mean experts per token for expert_choice)")
    capacity_factor = param.Number(default=1.25, doc="capacity = ceil(cf * T * k / E) slots per expert")
    drop_policy = param.Selector(default="position", objects=list(DROP_POLICIES))
    overflow = param.Selector(default="drop", objects=list(OVERFLOW_MODES))
    show_controls = param.Boolean(default=True, doc="show the router settings (the lab shares its own)")
    routing = param.Parameter(default=None, precedence=-1, doc="the Routing drawn (output)")
    error = param.String(default="", precedence=-1)

    SETTINGS = ("trace", "layer", "router", "k", "capacity_factor", "drop_policy", "overflow")

    def __init__(self, **params):
        super().__init__(**params)
        self.last_update_ms = 0.0
        self._error = pn.pane.HTML("", sizing_mode="stretch_width")
        self._summary = pn.pane.HTML("", sizing_mode="stretch_width")
        self.controls: SettingsControls | None = None  # made when first shown: hidden widgets still cost updates
        self._controls_box = pn.Column()
        parts = self._build()
        self._layout = pn.Column(self._controls_box, self._error, self._summary, *parts,
                                 sizing_mode="stretch_width")
        self._show_controls()
        self.param.watch(self._update, list(self.SETTINGS))
        self._update()

    # subclasses: the Panel objects below the summary, and the drawing of one update
    def _build(self) -> list:
        raise NotImplementedError

    def _render(self) -> None:
        raise NotImplementedError

    @param.depends("show_controls", watch=True)
    def _show_controls(self) -> None:
        if self.show_controls and self.controls is None:
            self.controls = SettingsControls(self)
            self._controls_box[:] = [self.controls.panel]
        self._controls_box.visible = self.show_controls

    def settings(self) -> dict:
        return {name: getattr(self, name) for name in self.SETTINGS}

    def route_layer(self, layer: int | None = None, router: str | None = None) -> Routing:
        """Route one layer of the trace (default: ``layer``) with ``router`` (default: ``router``) and the
        shared settings; a `WorkbenchError` for a bad setting."""
        layer = self.layer if layer is None else layer
        router = self.router if router is None else router
        logits = self.trace.layer(layer)
        params = router_params(router, k=self.k, capacity_factor=self.capacity_factor,
                               drop_policy=self.drop_policy, overflow=self.overflow, trace=self.trace, layer=layer)
        return route(logits, router, **params)

    def _update(self, *_events) -> None:
        t0 = time.perf_counter()
        if self.controls is not None:
            self.controls.refresh()
        if self.trace is None:
            self._summary.object = f'{STYLE}<div class="wb-stats">no routing trace</div>'
            return
        try:
            self._render()
        except WorkbenchError as exc:
            self.error = str(exc)
            self._error.object = error_html(self.error)
        else:
            self.error = ""
            self._error.object = ""
        self.last_update_ms = (time.perf_counter() - t0) * 1e3

    def __panel__(self):
        return self._layout


class SettingsControls:
    """Widgets for an owner's router settings (router, k, capacity factor, drop policy, overflow, layer), kept in
    step with its parameters both ways; ``refresh()`` adapts them to the trace and disables the settings the
    chosen router does not take."""

    def __init__(self, owner: param.Parameterized, width: int = 290):
        self.owner = owner
        w = width
        self.router = pn.widgets.Select.from_param(owner.param.router, label="router", width=w,
                                                   css_classes=["wb-moe-router"])
        # k and the capacity factor are kept in step by hand: the parameters accept any value (the core says what
        # is wrong with a bad one), the sliders only values they can show
        self.k = pn.widgets.IntSlider(label="k (experts per token)", start=1, end=8, value=1, width=w,
                                      css_classes=["wb-moe-k"])
        self.capacity_factor = pn.widgets.EditableFloatSlider(
            label="capacity factor", start=0.25, end=4.0, step=0.05, fixed_start=0.05, value=1.0, width=w,
            css_classes=["wb-moe-cf"])
        for widget, name, cast in ((self.k, "k", int), (self.capacity_factor, "capacity_factor", float)):
            widget.param.watch(lambda e, name=name, cast=cast: self._from_widget(name, cast(e.new)), "value")
            owner.param.watch(lambda e, widget=widget: self._to_widget(widget, e.new), name)
        self.drop_policy = pn.widgets.Select.from_param(owner.param.drop_policy, label="drop policy", width=w,
                                                        css_classes=["wb-moe-drop-policy"])
        self.overflow = pn.widgets.Select.from_param(owner.param.overflow, label="overflow", width=w,
                                                     css_classes=["wb-moe-overflow"])
        self.layer = pn.widgets.DiscreteSlider(label="layer", options=[0], value=0, width=w,
                                               css_classes=["wb-moe-layer"])
        self.layer.param.watch(self._layer_moved, "value")
        owner.param.watch(lambda e: self._show_layer(), "layer")
        self.help = pn.pane.HTML("", width=w)
        self.panel = pn.Column(self.router, self.help, self.k, self.capacity_factor, self.drop_policy,
                               self.overflow, self.layer, width=w + 10)
        self._quiet = False
        self._to_widget(self.k, owner.k)
        self._to_widget(self.capacity_factor, owner.capacity_factor)
        self.refresh()

    def _from_widget(self, name: str, value) -> None:
        if not self._quiet and getattr(self.owner, name) != value:
            setattr(self.owner, name, value)

    def _to_widget(self, widget, value) -> None:
        if isinstance(widget, pn.widgets.EditableFloatSlider):
            low, high = widget.fixed_start, widget.fixed_end
        else:
            low, high = widget.start, widget.end
        if value is None or (low is not None and value < low) or (high is not None and value > high):
            return
        if widget.value != value:
            self._quiet = True
            try:
                widget.value = value
            finally:
                self._quiet = False

    def _layer_moved(self, event) -> None:
        self._from_widget("layer", int(event.new))

    def _show_layer(self) -> None:
        if self.owner.layer in self.layer.options and self.layer.value != self.owner.layer:
            self._quiet = True
            try:
                self.layer.value = self.owner.layer
            finally:
                self._quiet = False

    def refresh(self) -> None:
        o = self.owner
        router = o.router
        self.k.disabled = router in TOP1_ROUTERS
        self.capacity_factor.disabled = router not in CAPACITY_ROUTERS
        self.drop_policy.disabled = router not in DROP_POLICY_ROUTERS
        self.overflow.disabled = router not in OVERFLOW_ROUTERS
        self.help.object = f'{STYLE}<div class="wb-stats">{html.escape(ROUTER_HELP.get(router, ""))}</div>'
        tr = o.trace
        if tr is None:
            return
        end = max(2, min(tr.n_experts, 16))
        if self.k.end != end:
            self._quiet = True
            try:
                if self.k.value > end:
                    self.k.value = end
                self.k.end = end
            finally:
                self._quiet = False
            self._to_widget(self.k, o.k)
        layers = list(range(tr.n_layers))
        if self.layer.options != layers:
            self._quiet = True
            try:
                self.layer.options = layers
            finally:
                self._quiet = False
        self._show_layer()
