"""``EvictedText``: the captured text as token spans at one decode step, as one KV head's cache sees it.

Kept tokens are plain, evicted ones greyed and struck through (skipped ones, for query-aware selection, greyed but
not struck: they are still in the cache), attention sinks boxed in orange, heavy hitters (the positions that have
received the most attention so far, `workbench.kvcache.heavy_hitters`: for H2O its own renormalised scores, the
ones its evictions follow; for other policies the full-cache attention received) underlined in red, and the
current query token outlined. Hovering a token shows its position, state and when it was evicted.

>>> from workbench.kvcache import replay                                           # doctest: +SKIP
>>> view = EvictedText(trace=tr, retention=replay(tr, "h2o", 32, layers=[15]), step=10)  # doctest: +SKIP
>>> view.row                                  # int8 [T]: the cell states at step 10   # doctest: +SKIP
"""

from __future__ import annotations

import html

import numpy as np
import panel as pn
import param

from widgets.base import WorkbenchView, shown_token
from widgets.kvcache_lab.retention import STATE_NAMES, STYLE, error_html
from workbench.kvcache.heavy_hitters import attention_received, top_positions, uses_replay_scores
from workbench.kvcache.replay import EVICTED, KEPT, SINK, SKIPPED

TEXT_STYLE = """
<style>
.wb-kv-text { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; line-height: 1.9;
              white-space: pre-wrap; word-break: break-all; }
.wb-kv-tok { border-radius: 3px; padding: 1px 0; margin-right: 1px; }
.wb-kv-kept { background: #e3edf7; }
.wb-kv-evicted { color: #b5b5b5; text-decoration: line-through; text-decoration-color: #ccc; }
.wb-kv-skipped { color: #b5b5b5; }
.wb-kv-sink { background: #fdd0a2; outline: 1px solid #f58518; }
.wb-kv-heavy { border-bottom: 2px solid #d62728; font-weight: 600; }
.wb-kv-query { outline: 2px solid #4c78a8; background: #fff3b0; }
</style>
"""


class EvictedText(WorkbenchView):
    """The text up to the query of decode ``step`` under ``retention`` (from `replay`) for model ``layer`` and
    KV ``head``. ``trace`` (the `KVTrace` replayed) gives the heavy hitters; without it none are marked.

    ``row`` (int8 [T], cell states at ``step``), ``heavy_positions`` (int [k]) and ``scores`` (float64 [T],
    accumulated attention) hold what is rendered."""

    trace = param.Parameter(doc="the KVTrace the retention was replayed on (for heavy hitters)")
    retention = param.Parameter(doc="a Retention from replay()")
    layer = param.Integer(default=None, allow_None=True, doc="model layer; None: the retention's first")
    head = param.Integer(default=0, bounds=(0, None))
    step = param.Integer(default=None, allow_None=True, doc="decode step; None: the last")
    heavy = param.Integer(default=10, bounds=(0, 200), doc="how many heavy hitters to mark")

    def __init__(self, **params):
        super().__init__(**params)
        self.row = None
        self.heavy_positions = np.zeros(0, np.int64)
        self.scores = None
        self._slider = pn.widgets.IntSlider(label="decode step", start=0, end=1, value=0,
                                            sizing_mode="stretch_width", css_classes=["wb-kv-step"])
        self._slider.param.watch(self._slider_moved, "value")
        self._heavy_w = pn.widgets.IntInput(label="heavy hitters marked", value=self.heavy, start=0, end=200,
                                            width=160)
        self._heavy_w.param.watch(lambda e: setattr(self, "heavy", int(e.new)), "value")
        self._stats = pn.pane.HTML("", sizing_mode="stretch_width")
        self._body = pn.pane.HTML("", sizing_mode="stretch_width")
        self._layout = pn.Column(pn.Row(self._slider, self._heavy_w, sizing_mode="stretch_width"), self._stats,
                                 self._body, sizing_mode="stretch_width")
        self._render()

    def _slider_moved(self, event) -> None:
        if self.step != event.new:
            self.step = int(event.new)

    def _layer_index(self) -> int:
        layers = [int(x) for x in self.retention.layers]
        if self.layer is None:
            return 0
        if self.layer not in layers:
            raise ValueError(f"layer {self.layer} was not replayed; this retention has layers {layers}")
        return layers.index(self.layer)

    @param.depends("trace", "retention", "layer", "head", "step", "heavy", watch=True)
    def _render(self) -> None:
        r = self.retention
        if r is None:
            self._stats.object = f'{STYLE}<div class="wb-stats">nothing replayed yet</div>'
            self._body.object = ""
            return
        try:
            li = self._layer_index()
            if not 0 <= self.head < r.kept.shape[1]:
                raise ValueError(f"KV head {self.head} does not exist; this model has {r.kept.shape[1]} KV heads")
            if self.trace is not None and len(self.trace.tokens) != r.n_tokens:
                raise ValueError("the retention was replayed on another trace than the one given")
        except ValueError as exc:
            self._stats.object = error_html(str(exc))
            return
        s = r.n_steps
        step = s - 1 if self.step is None else min(max(int(self.step), 0), s - 1)
        self._slider.end = max(s - 1, 1)
        if self._slider.value != step:
            self._slider.value = step
        states = r.cell_states(li, self.head)
        row = self.row = states[step]
        query = r.n_prefill + step
        self.scores, self.heavy_positions = self._heavy_hitters(li, step, query)
        evicted_at = r.evicted_at(li, self.head)
        heavy = set(self.heavy_positions.tolist())
        score_name = "H2O score" if self.trace is not None and uses_replay_scores(self.trace, r) else "attention received"
        out = [STYLE, TEXT_STYLE, '<div class="wb-kv-text">']
        for pos in range(query + 1):
            state = STATE_NAMES[row[pos]]
            cls = f"wb-kv-tok wb-kv-{state}" + (" wb-kv-heavy" if pos in heavy else "") + (
                " wb-kv-query" if pos == query else "")
            title = f"position {pos} · {r.tokens[pos]!r} · {state} at step {step}"
            if evicted_at[pos] >= 0 and row[pos] == EVICTED:
                title += f" (evicted at step {evicted_at[pos]})"
            if self.scores is not None:
                title += f" · {score_name} {self.scores[pos]:.2f}"
            out.append(f'<span class="{cls}" data-pos="{pos}" title="{html.escape(title)}">'
                       f"{shown_token(r.tokens[pos])}</span>")
        out.append("</div>")
        self._body.object = "".join(out)
        n_kept = int(np.count_nonzero((row == KEPT) | (row == SINK)))
        n_evicted = int(np.count_nonzero(row == EVICTED))
        n_skipped = int(np.count_nonzero(row == SKIPPED))
        n_sinks = int(np.count_nonzero(row == SINK))
        kept_heavy = sum(1 for p in heavy if row[p] in (KEPT, SINK))
        gone = (f'<b class="wb-kv-nskipped">{n_skipped}</b> skipped (still cached, not attended)'
                if r.policy.kind == "selection" else f'<b class="wb-kv-nevicted">{n_evicted}</b> evicted')
        self._stats.object = (
            f'{STYLE}<div class="wb-stats wb-kv-text-stats">{html.escape(r.policy.label())} · budget {r.budget} · '
            f"layer {int(r.layers[li])} · KV head {self.head} · step {step} of {s - 1}: query at position {query} "
            f"({html.escape(repr(r.tokens[query]))}) · <b class=\"wb-kv-nkept\">{n_kept}</b> kept · {gone}"
            + (f" · {n_sinks} sinks" if n_sinks else "")
            + (f" · heavy hitters: {len(heavy)} marked, {kept_heavy} of them kept" if len(heavy) else "")
            + "</div>")

    def _heavy_hitters(self, li: int, step: int, query: int):
        """Accumulated attention each position has received up to this step (`attention_received`: H2O's own
        scores for an H2O replay) and the ``heavy`` highest positions; (None, []) without a trace."""
        tr = self.trace
        if tr is None or self.heavy == 0:
            return None, np.zeros(0, np.int64)
        scores = attention_received(tr, self.retention, li, self.head, step)
        return scores, top_positions(scores, query + 1, self.heavy)

    def __panel__(self):
        return self._layout
