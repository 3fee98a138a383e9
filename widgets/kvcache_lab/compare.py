"""``PolicyCompare``: two policies replayed on the same trace, side by side, and where their caches differ.

The difference map colours every cell of one layer and KV head: kept by both, only by A, only by B, by neither
(in the cache but dropped or skipped by both) and future. ``counts`` holds the cell counts; ``n_differ`` (cells kept
by exactly one policy) equals ``(kept_a ^ kept_b).sum()`` for the head, ``n_differ_layer`` over all heads.

>>> view = PolicyCompare(trace=tr, policy_a="streaming_llm", policy_b="h2o", budget=64)  # doctest: +SKIP
>>> view.counts["only_a"], view.counts["only_b"]                                        # doctest: +SKIP
"""

from __future__ import annotations

import html
import time

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, Range1d

from widgets.base import WorkbenchView
from widgets.kvcache_lab.retention import (
    STYLE,
    error_html,
    legend_html,
    middle_layer,
    policy_select,
    state_figure,
)
from workbench.errors import WorkbenchError
from workbench.kvcache import POLICY_NAMES, replay
from workbench.kvcache.replay import D_BOTH, D_NEITHER, D_ONLY_A, D_ONLY_B

DIFF_NAMES = ("future", "kept by both", "only A", "only B", "neither")
DIFF_COLOURS = ("#ffffff", "#4c78a8", "#f58518", "#54a24b", "#e0e0e0")


class PolicyCompare(WorkbenchView):
    """``policy_a`` and ``policy_b`` at one ``budget`` on ``trace``, for model ``layer`` and KV ``head``.

    ``retention_a``/``retention_b`` are the one-layer replays; ``diff`` the int8 [S, T] difference codes; sources
    ``source_a``, ``source_b``, ``source_diff`` feed the three images (their ranges are linked)."""

    trace = param.Parameter(doc="a KVTrace")
    policy_a = param.Selector(default="streaming_llm", objects=list(POLICY_NAMES))
    policy_b = param.Selector(default="h2o", objects=list(POLICY_NAMES))
    budget = param.Integer(default=64)
    layer = param.Integer(default=None, allow_None=True, doc="model layer; None: the middle captured layer")
    head = param.Integer(default=0, bounds=(0, None))
    show_controls = param.Boolean(default=True, doc="show budget/layer/head inputs (the lab shares its own)")
    error = param.String(default="", precedence=-1)

    def __init__(self, **params):
        super().__init__(**params)
        self.retention_a = self.retention_b = None
        self.diff = None
        self.counts: dict[str, int] = {}
        self.n_differ = 0
        self.n_differ_layer = 0
        self.last_update_ms = 0.0
        x_range, y_range = Range1d(0, 1), Range1d(1, 0)
        self._tokens = ColumnDataSource(dict(token=[]))
        self._fig_a, self.source_a, self._span_a = state_figure("A", height=220, x_range=x_range, y_range=y_range,
                                                                tokens=self._tokens)
        self._fig_b, self.source_b, self._span_b = state_figure("B", height=220, x_range=x_range, y_range=y_range,
                                                                tokens=self._tokens)
        self._fig_d, self.source_diff, self._span_d = state_figure(
            "Difference", DIFF_NAMES, DIFF_COLOURS, height=260, x_range=x_range, y_range=y_range, tokens=self._tokens)
        self._summary = pn.pane.HTML("", sizing_mode="stretch_width")
        self._error = pn.pane.HTML("", sizing_mode="stretch_width")
        pick_a = policy_select(self, "policy_a", "policy A", width=200)
        pick_b = policy_select(self, "policy_b", "policy B", width=200)
        self._shared = pn.Row(pn.widgets.IntInput.from_param(self.param.budget, label="budget", width=120),
                              pn.widgets.IntInput.from_param(self.param.layer, label="layer", width=100),
                              pn.widgets.IntInput.from_param(self.param.head, label="KV head", width=100))
        self._layout = pn.Column(
            pn.Row(pick_a, pick_b, self._shared), self._error, self._summary,
            pn.pane.HTML(legend_html(), margin=(0, 5)),
            pn.Row(pn.pane.Bokeh(self._fig_a, sizing_mode="stretch_width"),
                   pn.pane.Bokeh(self._fig_b, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            pn.pane.HTML(legend_html(DIFF_NAMES, DIFF_COLOURS), margin=(0, 5)),
            pn.pane.Bokeh(self._fig_d, sizing_mode="stretch_width"), sizing_mode="stretch_width")
        self._show_controls()
        self._new_trace()

    @param.depends("show_controls", watch=True)
    def _show_controls(self) -> None:
        self._shared.visible = self.show_controls

    @param.depends("trace", watch=True)
    def _new_trace(self) -> None:
        tr = self.trace
        if tr is None:
            self._summary.object = f'{STYLE}<div class="wb-stats">no trace: capture a text first</div>'
            return
        self._tokens.data = dict(token=list(tr.tokens))
        self._fig_a.x_range.update(start=0, end=tr.n_tokens)
        self._fig_a.y_range.update(start=tr.n_steps, end=0)
        for span in (self._span_a, self._span_b, self._span_d):
            span.location = tr.n_prefill
        with param.parameterized.discard_events(self):
            if self.layer not in [int(x) for x in tr.layers]:
                self.layer = middle_layer(tr)
            if self.head >= tr.n_kv_heads:
                self.head = 0
        self._replay()

    @param.depends("policy_a", "policy_b", "budget", "layer", watch=True)
    def _replay(self) -> None:
        if self.trace is None:
            return
        t0 = time.perf_counter()
        try:
            ra = replay(self.trace, self.policy_a, self.budget, layers=[self.layer])
            rb = replay(self.trace, self.policy_b, self.budget, layers=[self.layer])
        except WorkbenchError as exc:
            self.error = f"budget {self.budget}: {exc}"
            self._error.object = error_html(self.error)
            return
        self.error = ""
        self._error.object = ""
        self.retention_a, self.retention_b = ra, rb
        self._draw()
        self.last_update_ms = (time.perf_counter() - t0) * 1e3

    @param.depends("head", watch=True)
    def _draw(self) -> None:
        ra, rb = self.retention_a, self.retention_b
        if ra is None or not 0 <= self.head < ra.kept.shape[1]:
            return
        s, t = ra.n_steps, ra.n_tokens
        geometry = dict(x=[0], y=[0], dw=[t], dh=[s])
        self.source_a.data = dict(image=[ra.cell_states(0, self.head)], **geometry)
        self.source_b.data = dict(image=[rb.cell_states(0, self.head)], **geometry)
        diff = self.diff = ra.difference(rb, 0, self.head)
        self.source_diff.data = dict(image=[diff], **geometry)
        self.counts = {name: int(np.count_nonzero(diff == code)) for name, code in
                       (("both", D_BOTH), ("only_a", D_ONLY_A), ("only_b", D_ONLY_B), ("neither", D_NEITHER))}
        self.n_differ = self.counts["only_a"] + self.counts["only_b"]
        self.n_differ_layer = int(np.count_nonzero(ra.kept[0] ^ rb.kept[0]))
        label_a, label_b = ra.policy.label(), rb.policy.label()
        self._fig_a.title.text = f"A: {label_a}"
        self._fig_b.title.text = f"B: {label_b}"
        self._fig_d.title.text = f"Difference: A = {label_a}, B = {label_b} (layer {self.layer}, KV head {self.head})"
        sa, sb = ra.summary(), rb.summary()
        cells = self.n_differ + self.counts["both"] + self.counts["neither"]

        def line(tag: str, s: dict) -> str:
            return (f"{tag} <b>{html.escape(s['policy'])}</b>: attention mass {s['attention_mass']:.3f} · output "
                    f"error {s['output_error']:.3f} · kept {s['kept_tokens']:.1f} tokens")

        self._summary.object = (
            f'{STYLE}<div class="wb-stats wb-kv-compare">{line("A", sa)}<br>{line("B", sb)}<br>'
            f'<b class="wb-kv-ndiff">{self.n_differ}</b> of {cells} cached cells differ at KV head {self.head} '
            f'(only A {self.counts["only_a"]}, only B {self.counts["only_b"]}, both {self.counts["both"]}, '
            f'neither {self.counts["neither"]}); {self.n_differ_layer} over all heads of layer {self.layer}</div>')

    def __panel__(self):
        return self._layout
