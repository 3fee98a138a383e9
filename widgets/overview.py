"""The dashboard's first tab: the shipped corpora and the default model, with live next-token probabilities.

>>> from widgets.overview import Overview          # doctest: +SKIP
>>> view = Overview()                               # loads the shared default model
>>> view.text = "The capital of France is"
>>> view.topk_source.data["token"][0]
' Paris'
"""

from __future__ import annotations

import html
from typing import Any

import panel as pn
import param
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from widgets.base import WorkbenchView
from widgets.warmup import MODEL_JOB
from workbench.data import corpus_table, load_corpus, parallel_table, shipped_corpora
from workbench.errors import WorkbenchError
from workbench.models import model_summary, next_token_topk, shared_default_model

DEFAULT_PROMPT = "The capital of France is"


def _html_table(rows: list[dict], css_class: str) -> str:
    if not rows:
        return "<p><em>nothing to show</em></p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>" for row in rows
    )
    return f'<table class="wb-table {css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _visible(token: str) -> str:
    """Show whitespace in a token so ' Paris' and 'Paris' differ on screen."""
    return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥") or "∅"


class Overview(WorkbenchView):
    """Corpora (sizes, languages, a sample) and the model (configuration, live top-10 next tokens).

    ``model``/``tokenizer`` default to the shared SmolLM2-135M-Instruct; if it is not installed the model card says
    how to install it and the corpus part still works. ``topk_source`` holds the rendered predictions
    (columns ``rank``, ``token``, ``label``, ``id``, ``probability``).
    """

    TAB = "Overview"
    WARM_UP = [MODEL_JOB]   # the shared model: the first job, also what the other model-based tabs wait for
    NEEDS = ["model"]

    text = param.String(default=DEFAULT_PROMPT, doc="Text whose next token the model predicts.")
    k = param.Integer(default=10, bounds=(1, 50), doc="How many candidates to show.")
    corpus = param.String(default="prose_en", doc="Corpus shown in the sample box.")

    def __init__(self, model: Any = None, tokenizer: Any = None, **params):
        super().__init__(**params)
        self._model_error: str | None = None
        if model is None:
            try:
                model, tokenizer = shared_default_model()
            except WorkbenchError as exc:
                self._model_error = str(exc)
        self.model, self.tokenizer = model, tokenizer
        self.topk_source = ColumnDataSource(dict(rank=[], token=[], label=[], id=[], probability=[]))
        self._topk_table = pn.pane.HTML("", sizing_mode="stretch_width")
        self._status = pn.pane.Markdown("", margin=(0, 10))
        self._sample = pn.pane.HTML("", sizing_mode="stretch_width", max_height=260, styles={"overflow": "auto"})
        self._build_layout()
        self._update_sample()
        self._update_predictions()

    # -- layout ---------------------------------------------------------------------------------------------
    def _build_layout(self) -> None:
        self._text_input = pn.widgets.TextAreaInput(
            label="Type text; SmolLM2 predicts the next token as you type",
            value=self.text, height=110, sizing_mode="stretch_width", css_classes=["wb-prompt"],
        )
        self._text_input.param.watch(lambda e: setattr(self, "text", e.new or ""), "value_input")
        self._text_input.param.watch(lambda e: setattr(self, "text", e.new or ""), "value")
        names = [n for n in shipped_corpora() if not n.startswith("parallel_")] + sorted(
            n for n in shipped_corpora() if n.startswith("parallel_"))
        self._corpus_select = pn.widgets.Select(label="Sample from", options=names, value=self.corpus, width=220)
        # a watcher, not .link(self, ...): Panel embeds a saved view's states only through watchers on widgets
        self._corpus_select.param.watch(lambda e: setattr(self, "corpus", e.new), "value")

        plot = figure(height=300, sizing_mode="stretch_width", y_range=[], x_range=(0, 1),
                      title="Next-token probability", toolbar_location=None, tools="")
        plot.hbar(y="label", right="probability", height=0.8, source=self.topk_source, color="#4c78a8")
        plot.add_tools(HoverTool(tooltips=[("token", "@label"), ("id", "@id"), ("p", "@probability{0.0000}")]))
        plot.xaxis.axis_label = "probability"
        self._plot = plot

        corpora = pn.Column(
            "## Corpora",
            pn.pane.HTML(_html_table(corpus_table(), "wb-corpora"), sizing_mode="stretch_width"),
            "### Parallel text: the same passages in every language",
            pn.pane.HTML(_html_table(parallel_table(), "wb-parallel"), sizing_mode="stretch_width"),
            self._corpus_select,
            self._sample,
            sizing_mode="stretch_width",
        )
        if self._model_error:
            model_part = pn.Column("## Model", pn.pane.Alert(self._model_error, alert_type="warning"))
        else:
            summary = model_summary(self.model)
            summary["parameters"] = f"{summary['parameters'] / 1e6:.1f} M"
            model_part = pn.Column(
                "## Model",
                pn.pane.HTML(_html_table([{"property": k, "value": v} for k, v in summary.items()], "wb-model"),
                             sizing_mode="stretch_width"),
                self._text_input, self._status, self._plot, self._topk_table,
                sizing_mode="stretch_width",
            )
        self._layout = pn.Row(corpora, model_part, sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout

    # -- reactions ------------------------------------------------------------------------------------------
    @param.depends("corpus", watch=True)
    def _update_sample(self) -> None:
        corpus = load_corpus(self.corpus)
        self._sample.object = (
            f"<p><b>{html.escape(corpus.name)}</b>: {html.escape(corpus.description)}</p>"
            f'<pre class="wb-sample" style="white-space: pre-wrap">{html.escape(corpus.sample(1200))}</pre>'
        )

    @param.depends("text", "k", watch=True)
    def _update_predictions(self) -> None:
        if self._model_error:
            return
        try:
            top = next_token_topk(self.model, self.tokenizer, self.text, k=self.k)
        except WorkbenchError as exc:
            self._status.object = f"⚠ {exc}"
            return
        rows = top.rows()
        labels = [f"{r['rank']}. {_visible(r['token'])}" for r in rows]
        self._plot.y_range.factors = labels[::-1]
        self.topk_source.data = dict(
            rank=[r["rank"] for r in rows], token=[r["token"] for r in rows], label=labels,
            id=[r["id"] for r in rows], probability=[r["probability"] for r in rows],
        )
        self._status.object = (f"{top.n_context} context tokens · entropy of the next-token distribution "
                               f"{top.entropy:.2f} bits")
        self._topk_table.object = _html_table(
            [{"rank": r["rank"], "token": _visible(r["token"]), "id": r["id"], "probability": f"{r['probability']:.4f}"}
             for r in rows],
            "wb-topk",
        )
