"""The dashboard's "Tokenizers" tab: pick or train a tokenizer, paste text, explore boundaries, diff, trees, replay."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import panel as pn
import param

from widgets.base import WorkbenchView, run_then_apply, session_callback
from widgets.tokenizers_lab.boundaries import TokenBoundaries
from widgets.tokenizers_lab.charts import ParityBars
from widgets.tokenizers_lab.diff import TokenDiff
from widgets.tokenizers_lab.replay import MergeReplay
from widgets.tokenizers_lab.tree import MergeTree
from workbench.data import load_corpus, parallel_texts
from workbench.errors import WorkbenchError
from workbench.tokenization import PRETOKENIZERS, TrainingProgress, load_tokenizer, train_bpe
from workbench.tokenization.metrics import metric_table

TABLE_METRICS = ("bytes_per_token", "chars_per_token", "fertility", "premium", "renyi_efficiency",
                 "char_split_rate", "continuation_rate")
CORPUS_METRICS = ("n_bytes", "n_tokens", "bytes_per_token", "fertility", "renyi_efficiency", "vocab_utilisation",
                  "char_split_rate", "continuation_rate")

def _named() -> tuple[str, ...]:
    """The named tokenizers on offer: GPT-2, SmolLM2, and Mistral's tekken when mistral_common is installed."""
    from workbench.errors import TokenizerFileError
    from workbench.tokenization.io import tekken_file

    try:
        tekken_file()
    except TokenizerFileError:
        return ("gpt2", "smollm2")
    return ("gpt2", "smollm2", "tekken")


NAMED = _named()
WARM = ("gpt2", "smollm2")  # loaded at dashboard start; others load when first chosen
CORPORA = ("prose_en", "code", "parallel", "stdlib")
_SHARED: dict = {}  # tokenizers loaded or trained in this process, shared by every session
_LOCK = threading.Lock()


def shared_tokenizer(name: str):
    """A named tokenizer (gpt2, smollm2) or one trained in this process, loaded once per process."""
    with _LOCK:
        if name not in _SHARED:
            _SHARED[name] = load_tokenizer(name)
        return _SHARED[name]


def default_text() -> str:
    """A short multilingual sample: the first article of the UDHR in a few scripts, and a line of code."""
    texts = parallel_texts()
    parts = [texts[lang][2] for lang in ("en", "ru", "zh", "hi", "ar") if lang in texts]
    return "\n".join(parts) + "\ndef tokenize(text: str) -> list[int]:\n    return [ord(c) for c in text]  # 2024\n"


def warm_up() -> None:
    """The dashboard's warm-up job for this tab: the named vocabularies, and the tokenizer kernels compiled (or
    loaded from Numba's cache)."""
    for name in WARM:
        shared_tokenizer(name).encode("warm up 123")


class TokenizersLab(WorkbenchView):
    """The Tokenizers lab. ``tokenizer``/``compare`` name entries of ``available``; ``train()`` adds one."""

    TAB = "Tokenizers"
    WARM_UP = [("tokenizers", "loading the GPT-2 and SmolLM2 vocabularies, compiling the tokenizer kernels", warm_up)]
    NEEDS = ["tokenizers"]

    tokenizer = param.Selector(default="gpt2", objects=list(NAMED))
    compare = param.Selector(default="smollm2", objects=list(NAMED))
    text = param.String(default="")
    corpus = param.Selector(default="prose_en", objects=list(CORPORA))
    vocab_size = param.Integer(default=4000, bounds=(257, 100_000))
    pretokenizer = param.Selector(default="gpt2", objects=list(PRETOKENIZERS))
    status = param.String(default="")

    def __init__(self, **params):
        params.setdefault("text", default_text())
        super().__init__(**params)
        names = list(NAMED) + sorted(n for n in _SHARED if n not in NAMED)
        self.param.tokenizer.objects = names
        self.param.compare.objects = names
        self.boundaries = TokenBoundaries(tokenizer=shared_tokenizer(self.tokenizer), text=self.text)
        self.diff = TokenDiff(tokenizer_a=shared_tokenizer(self.tokenizer), tokenizer_b=shared_tokenizer(self.compare),
                              text=self.text)
        self.tree = MergeTree(tokenizer=shared_tokenizer(self.tokenizer))
        self.replay = MergeReplay(tokenizer=shared_tokenizer(self.tokenizer), text=self.text[:5000])
        self.parity = ParityBars(category_key="text", value_key="premium")
        self._metrics_table = pn.pane.HTML("", sizing_mode="stretch_width")
        self._corpus_table = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["wb-tok-corpus-metrics"])
        self.metrics = None
        self.corpus_metrics = None
        self._build()
        self._update_metrics()

    def _build(self) -> None:
        text_input = pn.widgets.TextAreaInput(value=self.text, height=140, sizing_mode="stretch_width",
                                              placeholder="Paste or type text", css_classes=["wb-tok-text"])
        text_input.param.watch(lambda e: setattr(self, "text", e.new or ""), "value_input")
        text_input.param.watch(lambda e: setattr(self, "text", e.new or ""), "value")
        self._progress = pn.indicators.Progress(value=0, max=100, width=200, visible=False)
        train_button = pn.widgets.Button(label="Train", color="primary", width=90)
        train_button.on_click(lambda _: self.train(blocking=False))
        trainer = pn.Card(
            pn.widgets.Select.from_param(self.param.corpus, label="corpus"),
            pn.widgets.IntInput.from_param(self.param.vocab_size, label="vocabulary size"),
            pn.widgets.Select.from_param(self.param.pretokenizer, label="pre-tokenizer"),
            pn.Row(train_button, self._progress),
            pn.pane.Markdown(self.param.status, sizing_mode="stretch_width"),
            title="Train a tokenizer", collapsed=False, width=300,
        )
        measure_button = pn.widgets.Button(label="Measure on the corpus", width=190,
                                           css_classes=["wb-tok-measure"])
        measure_button.on_click(lambda _: self.measure_corpus(blocking=False))
        measure = pn.Row(measure_button, pn.pane.Markdown(
            "Both tokenizers on every file of the trainer's corpus (read in pieces of a few MB, on the Dask cluster's "
            "workers when one is connected).", sizing_mode="stretch_width"), sizing_mode="stretch_width")
        pickers = pn.Column(
            pn.widgets.Select.from_param(self.param.tokenizer, label="tokenizer"),
            pn.widgets.Select.from_param(self.param.compare, label="compare with"),
            width=300,
        )
        views = pn.Tabs(("Boundaries", self.boundaries), ("Diff", self.diff), ("Merge tree", self.tree),
                        ("Replay", self.replay),
                        ("Metrics", pn.Column(self.parity, self._metrics_table, measure, self._corpus_table,
                                              sizing_mode="stretch_width")),
                        dynamic=True, sizing_mode="stretch_width")
        self._layout = pn.Row(pn.Column(pickers, trainer), pn.Column(text_input, views, sizing_mode="stretch_width"),
                              sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout

    @param.depends("tokenizer", watch=True)
    def _tokenizer_changed(self) -> None:
        tok = shared_tokenizer(self.tokenizer)
        self.boundaries.tokenizer = tok
        self.diff.tokenizer_a = tok
        self.tree.tokenizer = tok
        self.replay.tokenizer = tok

    @param.depends("compare", watch=True)
    def _compare_changed(self) -> None:
        self.diff.tokenizer_b = shared_tokenizer(self.compare)

    @param.depends("tokenizer", "compare", watch=True)
    def _update_metrics(self) -> None:
        """Compression and parity of both tokenizers on the 19-language parallel corpus (UDHR)."""
        names = list(dict.fromkeys([self.tokenizer, self.compare]))
        table = self.metrics = metric_table({n: shared_tokenizer(n) for n in names}, parallel_texts(), reference="en")
        self.parity.rows = table.rows
        frame = table.to_pandas().set_index(["tokenizer", "text"])[list(TABLE_METRICS)].round(3)
        self._metrics_table.object = ("<p>Every metric on the Universal Declaration of Human Rights in 19 languages; "
                                      "premium = tokens relative to English for the same passages.</p>"
                                      + frame.to_html(classes="wb-table"))

    @param.depends("text", watch=True)
    def _text_changed(self) -> None:
        self.boundaries.text = self.text
        self.diff.text = self.text
        self.replay.text = self.text[:5000]

    def measure_corpus(self, *, blocking: bool = True):
        """Every metric of both tokenizers over the files of the chosen corpus (`metric_table` with files), on the
        connected Dask cluster when there is one; the table appears under the UDHR one. ``blocking=False``: the
        button (the work runs in a thread, the view changes on the session's next tick)."""
        names = list(dict.fromkeys([self.tokenizer, self.compare]))
        corpus = self.corpus

        def work() -> dict:
            from workbench.distributed import current_client

            client = current_client()
            files = [Path(p) for p in load_corpus(corpus).paths]
            start = time.perf_counter()
            try:
                table = metric_table({n: shared_tokenizer(n) for n in names}, {corpus: files}, reference=None,
                                     client=client, invalid="skip")
            except WorkbenchError as exc:
                return {"error": str(exc)}
            return {"table": table, "files": len(files), "seconds": time.perf_counter() - start,
                    "where": "on the Dask cluster" if client is not None else "here"}

        def apply(result: dict) -> None:
            if "error" in result:
                self.status = f"⚠ {result['error']}"
                return
            table = self.corpus_metrics = result["table"]
            frame = table.to_pandas().set_index(["tokenizer", "text"])[list(CORPUS_METRICS)].round(3)
            n_bytes, skipped = int(table.metric("n_bytes")[0, 0]), int(table.skipped_bytes[0, 0])
            left_out = f" ({skipped:,} bytes that are not UTF-8 text left out)" if skipped else ""
            self._corpus_table.object = (f"<p>On the corpus <b>{corpus}</b>: {result['files']} files, "
                                         f"{n_bytes / 1e6:.1f} MB{left_out}, measured {result['where']} in "
                                         f"{result['seconds']:.1f} s.</p>" + frame.to_html(classes="wb-table"))
            self.status = f"measured {corpus} in {result['seconds']:.1f} s"

        self.status = f"measuring {corpus} …"
        result = run_then_apply(work, apply, blocking=blocking)
        return result.get("table") if result else None

    def train(self, *, blocking: bool = True) -> str | None:
        """Train on the chosen corpus in the background (``blocking=False``: the button) and select the result."""
        name = f"trained: {self.corpus} {self.vocab_size} {self.pretokenizer}"
        corpus, vocab, pre = self.corpus, self.vocab_size, self.pretokenizer

        def on_progress(p: TrainingProgress) -> None:
            if p.total:
                share = p.done / p.total
                self._progress.value = int(100 * (0.5 * share if p.stage == "count" else 0.5 + 0.5 * share))
            self.status = f"{p.stage}: {p.done:,}{f' / {p.total:,}' if p.total else ''} ({p.seconds:.1f} s)"

        on_progress = session_callback(on_progress)  # called from the training thread

        def work() -> dict:
            from workbench.distributed import current_client

            try:
                tok = train_bpe(list(load_corpus(corpus).paths), vocab, pretokenizer=pre, progress=on_progress,
                                name=name, client=current_client())
            except WorkbenchError as exc:
                return {"error": str(exc)}
            with _LOCK:
                _SHARED[name] = tok
            return {"tokenizer": tok}

        def apply(result: dict) -> None:
            self._progress.visible = False
            if "error" in result:
                self.status = f"⚠ {result['error']}"
                return
            s = result["tokenizer"].training_stats
            self.status = (f"trained **{name}** on {s.corpus_bytes / 1e6:.1f} MB in "
                           f"{s.seconds_count + s.seconds_merge:.1f} s ({s.merges} merges)")
            names = list(NAMED) + sorted(n for n in _SHARED if n not in NAMED)
            self.param.tokenizer.objects = names
            self.param.compare.objects = names
            self.tokenizer = name

        self._progress.visible = True
        self._progress.value = 0
        result = run_then_apply(work, apply, blocking=blocking)
        return name if result and "tokenizer" in result else None
