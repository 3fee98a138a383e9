"""The dashboard's "KV cache" tab: capture SmolLM2's attention on a text, replay cache policies over it, see which
tokens survive, compare two policies, and measure what they cost in model quality.

The default trace (an excerpt of Pride and Prejudice, 32 decode steps) is captured once per process and shared by
every session (`default_trace`); other captures run in a background thread behind a progress indicator.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import panel as pn
import param

from widgets.base import WorkbenchView, run_then_apply, session_callback
from widgets.kvcache_lab.compare import PolicyCompare
from widgets.kvcache_lab.quality import QualityVsBudget
from widgets.kvcache_lab.retention import RetentionMap
from widgets.kvcache_lab.text import EvictedText
from workbench.distributed import current_client
from workbench.errors import KVCacheError, WorkbenchError
from workbench.kvcache import POLICY_NAMES, KVTrace, capture, passkey_probe, quality_sweep

#: shipped excerpts: label -> (corpus, file name or None for the first file, where the excerpt starts, length in
#: characters; cut back to the last blank line or line end)
EXCERPTS = {
    "Pride and Prejudice, chapter 1 (prose)": ("prose_en", None, "It is a truth universally acknowledged", 1400),
    "Pride and Prejudice, a dialogue (prose)": ("prose_en", None, '"I hope Mr. Bingley will like it', 1500),
    "heapq.py (code)": ("code", "heapq.py", "def heappush(heap, item):", 1300),
}
OWN_TEXT = "your own text"
DEFAULT_SOURCE = next(iter(EXCERPTS))
DECODE_STEPS = 32
QUALITY_POLICIES = ("window", "streaming_llm", "h2o", "snapkv", "tova", "quest")
QUALITY_BUDGETS = (16, 32, 64, 128)
MAX_TRACES = 4  # captures kept per process (a 400-token trace of all 30 layers holds about 35 MB)

_TRACES: OrderedDict = OrderedDict()  # (text, decode_steps) -> KVTrace, shared by every session
_LOCK = threading.RLock()  # one capture at a time: they share the model and the CPU
_EXCERPT_CACHE: dict[str, str] = {}

QUALITY_HELP = """
**Quality vs budget** runs the real model (SmolLM2-135M) once per policy and budget with exactly the cache that
policy keeps, over the decode steps of the captured text, and compares its next-token predictions with the full
cache: the perplexity increase, the KL divergence of the next-token distributions and top-1 agreement. The passkey
probe (optional, slower) hides a 5-digit key in about 500 tokens of filler and checks whether the model still
retrieves it after the context was compressed.

The default sweep (6 policies x 4 budgets, 24 model passes) takes about half a minute on a laptop CPU, so it runs
only when you press **Run quality sweep**, in the background.
"""


def excerpt(name: str) -> str:
    """The text of a shipped excerpt (see :data:`EXCERPTS`)."""
    from workbench.data import load_corpus

    if name not in _EXCERPT_CACHE:
        corpus, file_name, anchor, length = EXCERPTS[name]
        paths = load_corpus(corpus).paths
        path = next((p for p in paths if p.name == file_name), paths[0]) if file_name else paths[0]
        text = path.read_text(encoding="utf-8")
        start = max(text.find(anchor), 0)
        chunk = text[start:start + length]
        cut = chunk.rfind("\n\n")
        if cut < length // 2:
            cut = chunk.rfind("\n")
        _EXCERPT_CACHE[name] = chunk[:cut].rstrip() if cut > length // 2 else chunk
    return _EXCERPT_CACHE[name]


def shared_trace(text: str, decode_steps: int = DECODE_STEPS) -> KVTrace:
    """A capture of ``text`` (all layers, the last ``decode_steps`` tokens as decode steps) with the default model,
    cached per process (the last :data:`MAX_TRACES`)."""
    key = (text, int(decode_steps))
    with _LOCK:
        if key in _TRACES:
            _TRACES.move_to_end(key)
            return _TRACES[key]
        if not text.strip():
            raise KVCacheError("the text is empty; paste some text or pick a shipped excerpt")
        trace = capture(text, decode_steps=int(decode_steps))
        _TRACES[key] = trace
        while len(_TRACES) > MAX_TRACES:
            _TRACES.popitem(last=False)
        return trace


def default_trace() -> KVTrace:
    """The default trace: :data:`DEFAULT_SOURCE` with :data:`DECODE_STEPS` decode steps (about 1 s, once)."""
    return shared_trace(excerpt(DEFAULT_SOURCE), DECODE_STEPS)


def parse_budgets(text: str) -> list[int]:
    """``"16, 32 64"`` -> ``[16, 32, 64]``; a `KVCacheError` for anything but positive integers."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise KVCacheError(f"budgets must be whole numbers of tokens separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise KVCacheError(f"give at least one budget, each at least 1 token, got {text!r}")
    return sorted(set(values))


def warm_up() -> None:
    """The dashboard's warm-up job for this tab: the default capture (shared by every session) and the replay
    kernels of every policy (`workbench.kvcache.replay.warm_up`)."""
    from workbench.kvcache.replay import warm_up as warm_up_replay

    warm_up_replay(default_trace())


class KVCacheLab(WorkbenchView):
    """The KV-cache lab. ``trace`` is the capture every view replays; ``capture_text()`` replaces it with a capture
    of ``text``; ``run_quality()`` runs the quality sweep. Views: ``retention_map``, ``evicted_text``,
    ``compare`` and ``quality`` (their policy/budget/layer/head follow the retention map's controls)."""

    TAB = "KV cache"
    WARM_UP = [("kvcache", "capturing the default KV trace on SmolLM2, compiling the replay kernels", warm_up)]
    NEEDS = ["model", "kvcache"]

    source = param.Selector(default=DEFAULT_SOURCE, objects=[*EXCERPTS, OWN_TEXT])
    text = param.String(default="")
    decode_steps = param.Integer(default=DECODE_STEPS, bounds=(2, 512))
    status = param.String(default="")
    trace = param.Parameter(default=None)
    quality_policies = param.ListSelector(default=list(QUALITY_POLICIES), objects=list(POLICY_NAMES))
    quality_budgets = param.List(default=list(QUALITY_BUDGETS), item_type=int)
    quality_passkey = param.Boolean(default=False, doc="also run the passkey probe (slower)")
    quality_status = param.String(default="")

    def __init__(self, **params):
        params.setdefault("text", excerpt(params.get("source", DEFAULT_SOURCE))
                          if params.get("source", DEFAULT_SOURCE) != OWN_TEXT else "")
        if params.get("trace") is None:
            try:
                params["trace"] = default_trace()
            except WorkbenchError as exc:  # no model installed: the lab still shows what to do
                params["status"] = f"⚠ {exc}"
        super().__init__(**params)
        if self.trace is not None and not self.status:
            self.status = self._describe(self.trace)
        self.sweep = None
        self.retention_map = RetentionMap(trace=self.trace, show_controls=False)
        self.evicted_text = EvictedText()
        self.compare = PolicyCompare(show_controls=False)
        self.quality = QualityVsBudget()
        self._build()
        self.retention_map.param.watch(self._sync, ["retention", "head", "layer", "budget", "trace"])
        self._views.param.watch(self._sync, "active")

    # -- layout -------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        source = pn.widgets.Select.from_param(self.param.source, label="text", width=290)
        self._text_w = pn.widgets.TextAreaInput(value=self.text, height=170, width=290, css_classes=["wb-kv-input"],
                                                placeholder="Paste text to capture (at least decode steps + 1 "
                                                            "tokens)")
        self._text_w.param.watch(lambda e: setattr(self, "text", e.new or ""), "value_input")
        self._text_w.param.watch(lambda e: setattr(self, "text", e.new or ""), "value")
        steps = pn.widgets.IntInput.from_param(self.param.decode_steps, label="decode steps", width=130)
        self._capture_button = pn.widgets.Button(label="Capture", color="primary", width=100)
        self._capture_button.on_click(lambda _: self.capture_text(blocking=False))
        self._progress = pn.indicators.Progress(value=-1, active=True, width=160, visible=False)
        side = pn.Column(
            pn.pane.Markdown("#### Text", margin=(0, 10)), source, self._text_w,
            pn.Row(steps, self._capture_button), self._progress,
            pn.pane.Markdown(self.param.status, width=290),
            pn.pane.Markdown("#### Policy", margin=(0, 10)), self.retention_map.controls,
            width=320)
        self._q_button = pn.widgets.Button(label="Run quality sweep", color="primary", width=170)
        self._q_button.on_click(lambda _: self.run_quality(blocking=False))
        self._q_progress = pn.indicators.Progress(value=0, max=100, width=200, visible=False)
        budgets = pn.widgets.TextInput(label="budgets", value=", ".join(map(str, self.quality_budgets)), width=160)
        budgets.param.watch(self._budgets_typed, "value")
        self._q_help = pn.pane.Markdown(QUALITY_HELP, sizing_mode="stretch_width")
        self._q_results = pn.Column(self.quality, visible=False, sizing_mode="stretch_width")
        self.quality_panel = pn.Column(
            self._q_help,
            pn.Row(pn.widgets.MultiChoice.from_param(self.param.quality_policies, label="policies", width=380),
                   budgets, pn.widgets.Checkbox.from_param(self.param.quality_passkey, label="passkey probe")),
            pn.Row(self._q_button, self._q_progress),
            pn.pane.Markdown(self.param.quality_status, sizing_mode="stretch_width"),
            self._q_results, sizing_mode="stretch_width")
        self._views = pn.Tabs(("Retention map", self.retention_map), ("Evicted text", self.evicted_text),
                              ("Compare", self.compare), ("Quality", self.quality_panel),
                              sizing_mode="stretch_width")
        intro = pn.pane.Markdown(
            "Replay KV-cache eviction and selection policies over the attention SmolLM2-135M computed on a real "
            "text: which positions each KV head keeps at every decode step, which tokens that leaves, and what it "
            "costs in model quality.", sizing_mode="stretch_width", margin=(0, 10))
        self._layout = pn.Row(side, pn.Column(intro, self._views, sizing_mode="stretch_width"),
                              sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout

    # -- keeping the views in step ------------------------------------------------------------------------------
    @param.depends("trace", watch=True)
    def _new_trace(self) -> None:
        self.retention_map.trace = self.trace
        if self.quality.table is not None:  # results of another text
            self.quality.table = None
            self._q_results.visible = False
            self._q_help.visible = True
            self.quality_status = "The text changed: run the sweep again for this capture."

    def _sync(self, *_events) -> None:
        """Push the retention map's state to the visible view (the others follow when they are shown, so a
        control change replays one layer once, not three times)."""
        m = self.retention_map
        if self._views.active == 1:
            self.evicted_text.param.update(trace=m.trace, retention=m.retention, layer=m.layer, head=m.head)
        elif self._views.active == 2:
            self.compare.param.update(trace=m.trace, budget=m.budget, layer=m.layer, head=m.head)

    @param.depends("source", watch=True)
    def _source_chosen(self) -> None:
        if self.source != OWN_TEXT:
            self.text = excerpt(self.source)

    @param.depends("text", watch=True)
    def _text_changed(self) -> None:
        if self._text_w.value != self.text:
            self._text_w.value = self.text
        if self.source != OWN_TEXT and self.text != excerpt(self.source):
            self.source = OWN_TEXT

    def _budgets_typed(self, event) -> None:
        try:
            self.quality_budgets = parse_budgets(event.new)
        except KVCacheError as exc:
            self.quality_status = f"⚠ {exc}"

    @staticmethod
    def _describe(trace: KVTrace) -> str:
        return (f"{trace.n_tokens} tokens: {trace.n_prefill} context + {trace.n_steps} decode steps, "
                f"{trace.n_layers} layers x {trace.n_kv_heads} KV heads")

    # -- background work ----------------------------------------------------------------------------------------
    def _busy(self, on: bool) -> None:
        self._progress.visible = on
        self._capture_button.disabled = on
        self._views.loading = on

    def capture_text(self, *, blocking: bool = True) -> KVTrace | None:
        """Capture ``text`` with ``decode_steps`` decode steps and show it (``blocking=False``: in a thread, the
        button's way). Returns the trace when blocking; a bad text leaves the current trace and says why."""
        text, steps = self.text, self.decode_steps

        def work() -> dict:
            t0 = time.perf_counter()
            try:
                return {"trace": shared_trace(text, steps), "seconds": time.perf_counter() - t0}
            except WorkbenchError as exc:
                return {"error": f"⚠ {exc}"}

        def apply(result: dict) -> None:
            self._busy(False)
            if "error" in result:
                self.status = result["error"]
                return
            self.trace = result["trace"]
            self.status = f"{self._describe(self.trace)}; captured in {result['seconds']:.1f} s"

        self._busy(True)
        self.status = f"capturing {len(text):,} characters with SmolLM2 …"
        result = run_then_apply(work, apply, blocking=blocking)
        return result.get("trace") if result else None

    def run_quality(self, *, blocking: bool = True):
        """Run `quality_sweep` (and the passkey probe when ``quality_passkey``) for ``quality_policies`` x
        ``quality_budgets`` on the current trace, then plot it. Returns the `QualitySweep` when blocking."""
        trace, policies = self.trace, list(self.quality_policies)
        passkey = self.quality_passkey
        if trace is None:
            self.quality_status = "⚠ capture a text first"
            return None
        budgets = [b for b in self.quality_budgets if b < trace.n_tokens]
        dropped = [b for b in self.quality_budgets if b >= trace.n_tokens]

        def progress(p) -> None:
            self._q_progress.value = int(100 * (p.fraction or 0))

        progress = session_callback(progress)  # called from the worker thread

        def work() -> dict:
            t0 = time.perf_counter()
            try:
                if not policies or not budgets:
                    raise KVCacheError("choose at least one policy and one budget smaller than the text")
                probe = passkey_probe(policies, budgets, trials=1, progress=progress) if passkey else None
                sweep = quality_sweep(None, policies, budgets, trace=trace, passkey=probe, progress=progress,
                                      client=current_client())
            except WorkbenchError as exc:
                return {"error": f"⚠ {exc}"}
            return {"sweep": sweep, "seconds": time.perf_counter() - t0}

        def apply(result: dict) -> None:
            self._q_progress.visible = False
            self._q_button.disabled = False
            if "error" in result:
                self.quality_status = result["error"]
                return
            self.sweep = result["sweep"]
            self.quality.table = self.sweep.table
            self._q_results.visible = True
            self._q_help.visible = False
            note = f" (budgets {dropped} skipped: not smaller than the text)" if dropped else ""
            self.quality_status = (f"{len(self.sweep.table)} evaluations on {trace.n_tokens} tokens in "
                                   f"{result['seconds']:.1f} s{note}")

        self._q_progress.value = 0
        self._q_progress.visible = True
        self._q_button.disabled = True
        self.quality_status = (f"running {len(policies)} policies x {len(budgets)} budgets"
                               + (" (passkey probe first)" if passkey else "") + " …")
        result = run_then_apply(work, apply, blocking=blocking)
        return result.get("sweep") if result else None
