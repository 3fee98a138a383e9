"""The dashboard's "MoE routing" tab: route the router logits of a real MoE language model with every router, and
see which expert each token goes to, the expert loads against capacity, what gets dropped, the balance losses,
how tokens move between experts from layer to layer, and how two routers differ on the same logits.

The default trace (`default_trace`) is the project's tiny MoE language model (`workbench.routing.tiny_moe`, the
"global" variant) run over a handful of shipped excerpts (English prose, Python code and a few languages of the
parallel corpus), each token tagged with its domain or language; it is computed once per process and shared by
every session. Without the model installed the lab says so and shows nothing: it never invents data. Any other
`RoutingTrace` (e.g. ``capture_router_logits`` of a Hugging Face MoE model) can be shown with
``MoERoutingLab(trace=...)``.
"""

from __future__ import annotations

import html
import threading

import panel as pn
import param

from widgets.base import WorkbenchView
from widgets.moe_lab.compare import RouterCompare
from widgets.moe_lab.flow import LayerFlow
from widgets.moe_lab.heatmap import RoutingHeatmap
from widgets.moe_lab.load import DropByPosition, ExpertLoad
from widgets.moe_lab.routed_view import RoutedView, SettingsControls
from workbench.errors import ModelNotFoundError, WorkbenchError
from workbench.routing import DROP_POLICIES, OVERFLOW_MODES, ROUTER_NAMES, RoutingTrace

TINY_MOE_VARIANT = "global"
EXCERPT_TOKENS = 96  # tokens kept of each excerpt (the tiny model's context is 128)
PARALLEL_LANGUAGES = ("de", "fr", "ru", "zh")
#: (tag, corpus, file name or None for the first file, where the excerpt starts) of the non-parallel excerpts
EXCERPTS = (
    ("English prose", "prose_en", None, "It is a truth universally acknowledged"),
    ("Python code", "code", "heapq.py", "def heappush(heap, item):"),
)
EXCERPT_CHARS = 1200  # characters read per excerpt before the token cap

_DEFAULT: dict = {}  # "trace" -> the default RoutingTrace, once computed
_LOCK = threading.Lock()


def default_texts() -> list[tuple[str, str]]:
    """The (tag, text) pairs of the default trace: the `EXCERPTS` and the first passages of the shipped parallel
    text in `PARALLEL_LANGUAGES` (tagged with the language's name)."""
    from workbench.data import language_name, load_corpus, parallel_texts

    out = []
    for tag, corpus, file_name, anchor in EXCERPTS:
        paths = load_corpus(corpus).paths
        path = next((p for p in paths if p.name == file_name), paths[0]) if file_name else paths[0]
        text = path.read_text(encoding="utf-8")
        start = max(text.find(anchor), 0)
        out.append((tag, text[start:start + EXCERPT_CHARS]))
    parallel = parallel_texts()
    for lang in PARALLEL_LANGUAGES:
        if lang in parallel:
            out.append((language_name(lang), "\n\n".join(parallel[lang][:3])[:EXCERPT_CHARS]))
    return out


def default_trace() -> RoutingTrace:
    """The tiny MoE model's router logits over `default_texts` (at most `EXCERPT_TOKENS` tokens each), computed once
    per process. A `ModelNotFoundError` saying what is missing when the tiny MoE model is not installed."""
    with _LOCK:
        if "trace" in _DEFAULT:
            return _DEFAULT["trace"]
        try:
            from workbench.routing import tiny_moe

            load_model, load_tokenizer, trace_text = (tiny_moe.load_tiny_moe, tiny_moe.load_tiny_moe_tokenizer,
                                                      tiny_moe.trace_text)
        except (ImportError, AttributeError) as exc:
            raise ModelNotFoundError(
                f"The tiny MoE model is not installed, so the MoE routing lab has no default trace ({exc}). "
                "Show a trace of your own with MoERoutingLab(trace=...)") from exc
        try:
            model = load_model(TINY_MOE_VARIANT)
            tokenizer = load_tokenizer()
        except WorkbenchError as exc:
            raise ModelNotFoundError(
                f"The tiny MoE model is not installed, so the MoE routing lab has no default trace: {exc}") from exc
        tags, texts = zip(*default_texts())
        trace = trace_text(model, tokenizer, list(texts), tags=list(tags), max_tokens=EXCERPT_TOKENS)
        _DEFAULT["trace"] = trace
        return trace


def describe(trace: RoutingTrace) -> str:
    """One line about a trace: tokens, sequences, tags, layers x experts, model and its own router."""
    tags = list(dict.fromkeys(t for t in trace.tags if t))
    shown = ", ".join(tags[:8]) + (" …" if len(tags) > 8 else "")
    meta = trace.meta
    own = ""
    if meta.get("router"):
        k = meta.get("top_k") or meta.get("router_params", {}).get("k")
        own = f"; the model itself routes with {meta['router']}" + (f" top-{k}" if k else "")
    return (f"{trace.n_tokens} tokens in {trace.n_sequences} sequences ({shown}) · {trace.n_layers} MoE layers × "
            f"{trace.n_experts} experts of {meta.get('model', 'an unnamed model')}{own}")


def warm_up() -> None:
    """The dashboard's warm-up job for this tab: every router kernel, and the default trace (the tiny MoE model
    over the shipped excerpts)."""
    from workbench.routing import warm_up as warm_up_routers

    warm_up_routers()
    default_trace()


class MoERoutingLab(WorkbenchView):
    """The MoE routing lab over ``trace`` (default: `default_trace`). The side controls (router, k, capacity factor,
    drop policy, overflow, layer) drive every view: ``heatmap`` (`RoutingHeatmap`), ``load`` (`ExpertLoad`),
    ``drops`` (`DropByPosition`), ``flow`` (`LayerFlow`) and ``compare`` (`RouterCompare`, whose router A is the
    side bar's). Only the views of the visible tab re-route on a change; the others catch up when shown."""

    TAB = "MoE routing"
    WARM_UP = [("routing", "compiling the router kernels, capturing the tiny MoE model's default trace", warm_up)]
    NEEDS = ["routing"]

    trace = param.Parameter(default=None, doc="a RoutingTrace")
    router = param.Selector(default="capacity_topk", objects=list(ROUTER_NAMES))
    k = param.Integer(default=2)
    capacity_factor = param.Number(default=1.25)
    drop_policy = param.Selector(default="position", objects=list(DROP_POLICIES))
    overflow = param.Selector(default="drop", objects=list(OVERFLOW_MODES))
    layer = param.Integer(default=0)
    status = param.String(default="")

    SETTINGS = RoutedView.SETTINGS

    def __init__(self, **params):
        if params.get("trace") is None:
            try:
                params["trace"] = default_trace()
            except WorkbenchError as exc:  # no model installed: the lab still says what to do
                params["status"] = f"⚠ {exc}"
        trace = params.get("trace")
        if trace is not None:
            params.setdefault("status", describe(trace))
            k = trace.meta.get("top_k")  # start from the model's own k where the trace says it
            if "k" not in params and isinstance(k, int) and 1 <= k <= trace.n_experts:
                params["k"] = k
        super().__init__(**params)
        self.heatmap = RoutingHeatmap(show_controls=False, trace=None)
        self.load = ExpertLoad(show_controls=False, trace=None)
        self.drops = DropByPosition(show_controls=False, trace=None)
        self.flow = LayerFlow(show_controls=False, trace=None)
        self.compare = RouterCompare(show_controls=False, trace=None)
        self.controls = SettingsControls(self)
        self._build()
        self.param.watch(self._settings_changed, list(self.SETTINGS))
        self._views.param.watch(lambda e: self._sync(), "active")
        self._sync()

    def _build(self) -> None:
        side = pn.Column(pn.pane.Markdown("#### Trace", margin=(0, 10)),
                         pn.pane.HTML(self._status_html(), width=290, css_classes=["wb-moe-status-pane"]),
                         pn.pane.Markdown("#### Router", margin=(0, 10)), self.controls.panel, width=320)
        self._status_pane = side[1]
        self._views = pn.Tabs(("Tokens", self.heatmap), ("Load & balance", pn.Column(self.load, self.drops,
                                                                                      sizing_mode="stretch_width")),
                              ("Layer flow", self.flow), ("Compare routers", self.compare),
                              sizing_mode="stretch_width")
        intro = pn.pane.Markdown(
            "Route the router logits of a real MoE language model with every major router: which expert each "
            "token goes to, expert loads against capacity and what gets dropped, the balance losses, how tokens "
            "move between experts from layer to layer, and where two routers disagree on the same logits.",
            sizing_mode="stretch_width", margin=(0, 10))
        self._layout = pn.Row(side, pn.Column(intro, self._views, sizing_mode="stretch_width"),
                              sizing_mode="stretch_width")

    def _status_html(self) -> str:
        cls = "wb-moe-status wb-moe-warning" if self.status.startswith("⚠") else "wb-moe-status"
        return f'<div class="{cls}" style="font-size: 13px; color: #444">{html.escape(self.status)}</div>'

    @param.depends("status", watch=True)
    def _show_status(self) -> None:
        self._status_pane.object = self._status_html()

    def __panel__(self):
        return self._layout

    def visible_views(self) -> list[RoutedView]:
        """The views of the tab being shown."""
        return [[self.heatmap], [self.load, self.drops], [self.flow], [self.compare]][self._views.active]

    def _settings_changed(self, *events) -> None:
        if any(e.name == "trace" for e in events):
            if self.trace is not None:
                if not 0 <= self.layer < self.trace.n_layers:
                    with param.parameterized.discard_events(self):
                        self.layer = 0
                self.status = describe(self.trace)
        self.controls.refresh()
        self._sync()

    def _sync(self) -> None:
        """Push the lab's trace and settings to the visible views (one re-route each, and none when they already
        show them)."""
        settings = {name: getattr(self, name) for name in self.SETTINGS}
        for view in self.visible_views():
            changed = {k: v for k, v in settings.items()
                       if (getattr(view, k) is not v if k == "trace" else getattr(view, k) != v)}
            if changed:
                view.param.update(**changed)
