"""``SpeculativeLab``: the dashboard tab "Speculative decoding".

A prompt (one of the shipped tasks, or typed), a drafter, a tree builder, a verifier, a draft-length schedule, a
budget, a depth and a temperature; ``Decode`` runs `workbench.speculative.generate` on SmolLM2 in a background
thread with progress, and every view updates when the run lands: the draft tree of each step (`DraftTreeView`),
the text by token source (`AcceptanceStrip`), sequential vs PEARL (`PearlTimeline`), builders side by side under
the run's measured acceptance vector (`BuilderCompare`) and expected vs measured speedup with the verify-cost curve
(`SpeedupCurve`; ``Measure`` decodes the prompt at several draft lengths), and every drafter over the task prompts
(``sweep_drafters``, on the Dask cluster when one is connected). Controls that do not re-run the model
(the step slider, the compare budget, the acceptance slider) only redraw.

>>> lab = SpeculativeLab()                 # doctest: +SKIP  (decodes the default prompt once)
>>> lab.decode(blocking=True).summary()    # doctest: +SKIP
"""

from __future__ import annotations

import time

import numpy as np
import panel as pn
import param

from widgets.base import WorkbenchView, run_then_apply, session_callback
from widgets.speculative_lab.builders import DEFAULT_ACCEPTANCE, BuilderCompare
from widgets.speculative_lab.speedup import SpeedupCurve
from widgets.speculative_lab.strip import AcceptanceStrip
from widgets.speculative_lab.timeline import PearlTimeline
from widgets.speculative_lab.tree_view import DraftTreeView, error_html
from workbench.errors import SpeculativeError, WorkbenchError

DRAFTERS = ["prompt_lookup", "suffix", "recycling", "corpus_ngram", "early_exit"]
BUILDERS = ["native", "chain", "kary", "medusa", "sequoia", "eagle2", "dyspec", "goose"]
VERIFIERS = ["greedy", "sequoia", "specinfer", "chain_sampling", "spectr", "multidraft_is", "typical"]
SCHEDULES = ["fixed", "heuristic", "thompson", "specdecpp"]


def prompt_options() -> dict[str, str]:
    """Shipped task prompts by label ("grounded: heapq.py:heappush ..."), text as value."""
    from workbench.speculative.prompts import KINDS, task_prompts

    return {f"{p.kind}: {p.name}": p.text for kind in KINDS for p in task_prompts(kind)}


def builder_params(name: str, depth: int, acceptance) -> dict:
    """Parameters of a builder from the lab's depth control and the last run's acceptance vector."""
    from workbench.speculative.shapes import monotone_acceptance

    acc = [float(a) for a in monotone_acceptance(acceptance)]
    if name == "chain":
        return {"gamma": 64}
    if name == "kary":
        return {"k": 2, "depth": depth}
    if name == "medusa":
        return {"acceptance": [acc[:4] or [0.5]] * depth}
    if name == "sequoia":
        return {"acceptance": acc, "max_depth": depth}
    if name == "eagle2":
        return {"topk": 4, "depth": depth}
    if name == "dyspec":
        return {"max_depth": depth}
    if name == "goose":
        return {"branch": "corpus_ngram"}
    return {}


def _verify_curve() -> dict | None:
    """The default model's verify-cost curve (measured once per runner, 1-2 s; the warm-up measures it), or None
    when the model is missing."""
    from workbench.models import default_runner
    from workbench.speculative.costs import runner_verify_costs

    try:
        return runner_verify_costs(default_runner())
    except WorkbenchError:
        return None


def warm_up() -> None:
    """The dashboard's warm-up job for this tab: the lab's kernels, and the model's verify-cost curve (what the
    Thompson schedule and the speedup view read)."""
    from workbench.models import default_runner
    from workbench.speculative import warm_up as speculative_warm_up
    from workbench.speculative.costs import runner_verify_costs

    speculative_warm_up()
    runner_verify_costs(default_runner())


class SpeculativeLab(WorkbenchView):
    """The speculative decoding tab (see the module docstring). ``run`` is the last `SpecRun`."""

    TAB = "Speculative decoding"
    WARM_UP = [("speculative", "compiling the speculative-decoding kernels, measuring the verify-cost curve", warm_up)]
    NEEDS = ["model", "speculative"]

    prompt = param.String(default="", doc="The prompt text (a task prompt's or typed).")
    drafter = param.Selector(default="prompt_lookup", objects=DRAFTERS)
    builder = param.Selector(default="native", objects=BUILDERS)
    verifier = param.Selector(default="greedy", objects=VERIFIERS)
    schedule = param.Selector(default="fixed", objects=SCHEDULES)
    budget = param.Integer(default=8, bounds=(1, 64), doc="Draft nodes per step (the fixed schedule's gamma).")
    depth = param.Integer(default=4, bounds=(1, 16), doc="Tree depth for builders that take one.")
    temperature = param.Number(default=0.0, bounds=(0.0, 2.0))
    max_new_tokens = param.Integer(default=48, bounds=(1, 512))
    run = param.Parameter(default=None, doc="The last SpecRun.")
    sweep = param.Parameter(default=None, doc="The last AcceptanceSweep (`sweep_drafters`).")
    status = param.String(default="")

    def __init__(self, run=None, decode_now: bool = True, **params):
        options = prompt_options()
        params.setdefault("prompt", next(iter(options.values())))
        super().__init__(**params)
        self._options = options
        self.tree = DraftTreeView()
        self.strip = AcceptanceStrip()
        self.pearl = PearlTimeline()
        self.compare = BuilderCompare(acceptance=list(DEFAULT_ACCEPTANCE))
        self.speedup = SpeedupCurve()
        self._build()
        if run is not None:
            self._show(run, 0.0, _verify_curve())
        elif decode_now:
            self.decode(blocking=pn.state.curdoc is None or getattr(pn.state.curdoc, "session_context", None) is None)

    # -- layout -----------------------------------------------------------------------------------------------
    def _build(self) -> None:
        pick = pn.widgets.Select(label="Prompt", options=self._options, value=self.prompt, width=330)
        text = pn.widgets.TextAreaInput(label="… or type one", value=self.prompt, height=110,
                                        sizing_mode="stretch_width", css_classes=["wb-spec-prompt"])
        pick.param.watch(lambda e: setattr(text, "value", e.new), "value")
        text.param.watch(lambda e: setattr(self, "prompt", e.new or ""), "value")
        w = pn.widgets
        widgets = pn.FlexBox(
            w.Select.from_param(self.param.drafter, width=160, css_classes=["wb-spec-drafter"]),
            w.Select.from_param(self.param.builder, width=130, css_classes=["wb-spec-builder"]),
            w.Select.from_param(self.param.verifier, width=140),
            w.Select.from_param(self.param.schedule, width=120),
            w.IntSlider.from_param(self.param.budget, label="Budget (draft nodes)", width=170),
            w.IntSlider.from_param(self.param.depth, label="Depth", width=140),
            w.FloatSlider.from_param(self.param.temperature, step=0.1, width=150),
            w.IntInput.from_param(self.param.max_new_tokens, label="New tokens", width=100))
        self._button = pn.widgets.Button(label="Decode", color="primary", width=110,
                                         css_classes=["wb-spec-decode"])
        self._button.on_click(lambda _: self.decode(blocking=False))
        self._measure = pn.widgets.Button(label="Measure speedup by draft length", width=250)
        self._measure.on_click(lambda _: self.measure(blocking=False))
        self._progress = pn.indicators.Progress(value=0, max=100, width=220, visible=False)
        self._status = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["wb-spec-status"])
        self.param.watch(lambda e: setattr(self._status, "object", e.new), "status")
        self._sweep = pn.widgets.Button(label="Sweep the drafters over the task prompts", width=300,
                                        css_classes=["wb-spec-sweep"])
        self._sweep.on_click(lambda _: self.sweep_drafters(blocking=False))
        self._sweep_table = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["wb-spec-sweep-table"])
        sweep = pn.Column(self._sweep, pn.pane.Markdown(
            "Every model-free drafter (draft length = the budget) on 3 input-grounded and 2 open-ended task prompts, "
            "greedy, with vLLM's acceptance figures; on the Dask cluster's workers when one is connected (each loads "
            "the model once)."), self._sweep_table, sizing_mode="stretch_width")
        tabs = pn.Tabs(("Draft tree", self.tree), ("Acceptance", self.strip),
                       ("Builders side by side", self.compare), ("Speedup", pn.Column(self._measure, self.speedup)),
                       ("PEARL timeline", self.pearl), ("Drafters across prompts", sweep), dynamic=False,
                       sizing_mode="stretch_width")
        self._views = tabs
        self._layout = pn.Column(
            "## Speculative decoding on SmolLM2-135M-Instruct",
            pn.Row(pick, text, sizing_mode="stretch_width"), widgets,
            pn.Row(self._button, self._progress), self._status, tabs, sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout

    # -- work -------------------------------------------------------------------------------------------------
    def _kwargs(self) -> dict:
        acc = self.compare.acceptance
        kw = {"drafter": self.drafter, "verifier": self.verifier if self.temperature > 0 else "greedy",
              "schedule": self.schedule, "max_new_tokens": self.max_new_tokens,
              "temperature": float(self.temperature), "chat": True}
        if self.temperature > 0 and self.verifier == "greedy":
            kw["verifier"] = "sequoia"
        if self.schedule == "fixed":
            kw["schedule_params"] = {"gamma": self.budget}
        else:                       # heuristic, thompson, specdecpp: the budget caps the draft length
            kw["schedule_params"] = {"max_gamma": self.budget}
        if self.builder != "native":
            kw["builder"] = self.builder
            kw["builder_params"] = builder_params(self.builder, self.depth, acc)
        if self.drafter == "early_exit":
            kw["drafter_params"] = {"layers": 8}
        return kw

    def _busy(self, on: bool) -> None:
        self._progress.visible = on
        self._button.disabled = on
        self._measure.disabled = on
        self._sweep.disabled = on

    def _progress_callback(self):
        """A `Progress` callback for a worker thread: it moves the progress bar on the session's tick."""
        return session_callback(lambda p: setattr(self._progress, "value", int(100 * (p.fraction or 0))))

    def _finish(self, result: dict, show) -> None:
        """End of a background job: controls back, then its error in the status line or ``show(result)``."""
        self._busy(False)
        if "error" in result:
            self.status = error_html(result["error"])
        else:
            show(result)

    def decode(self, *, blocking: bool = True):
        """Run `generate` with the controls' settings and show the run (``blocking=False``: in a thread, the
        button's way). Returns the run when blocking; bad settings leave the last run and say why."""
        prompt, kw = self.prompt, self._kwargs()

        progress = self._progress_callback()

        def work() -> dict:
            from workbench.speculative import generate

            t0 = time.perf_counter()
            try:
                run = generate(prompt, progress=progress, **kw)
            except WorkbenchError as exc:
                return {"error": str(exc)}
            return {"run": run, "seconds": time.perf_counter() - t0, "curve": _verify_curve()}

        def apply(result: dict) -> None:
            self._finish(result, lambda r: self._show(r["run"], r["seconds"], r["curve"]))

        self._busy(True)
        self._progress.value = 0
        self.status = f"decoding {kw['max_new_tokens']} tokens with {kw['drafter']} …"
        result = run_then_apply(work, apply, blocking=blocking)
        return result.get("run") if result else None

    def _show(self, run, seconds: float, curve: dict | None = None) -> None:
        """Show ``run`` in every view; ``curve``: the verify-cost curve for the speedup view (measured off the
        session's thread, `_verify_curve`), else the view keeps its own."""
        self.run = run
        self.tree.run = run
        self.strip.run = run
        self.pearl.run = run
        acc = run.rank_acceptance(8)
        if acc.sum() > 0:
            self.compare.acceptance = [float(a) for a in acc]
        s = run.summary()
        if curve is not None:
            self.speedup.curve = curve
        self.speedup.alpha = float(min(0.99, max(0.0, s["path_acceptance_rate"])))
        p = run.params
        self.status = (f'<div class="wb-spec-summary wb-spec-run">{p.get("drafter")} / {p.get("builder") or "native"}'
                       f' / {p.get("verifier")} / {p.get("schedule")}: <b>{s["new_tokens"]} tokens in {s["steps"]} '
                       f'steps</b> ({s["tokens_per_step"]:.2f} tokens/step, {s["tokens_per_second"]:.1f} tok/s'
                       + (f", {seconds:.1f} s with prefill" if seconds else "") + f'); mean acceptance length '
                       f'{s["mean_acceptance_length"]:.2f} measured vs {s["expected_tree_length"]:.2f} expected from '
                       f'the trees drafted and the run\'s own acceptance vector'
                       + ("" if p.get("lossless", True) else " · <b>lossy verifier</b>") + "</div>")

    def measure(self, *, blocking: bool = True, gammas=(1, 2, 3, 4, 6, 8, 12)):
        """Decode the prompt at each fixed draft length with the current drafter and plot the measured speedups
        next to the expectation."""
        prompt, drafter, n = self.prompt, self.drafter, self.max_new_tokens

        def work() -> dict:
            from workbench.speculative.sweep import measured_speedups

            try:
                if drafter == "early_exit":
                    raise SpeculativeError("measure the speedup curve with a model-free drafter")
                return {"m": measured_speedups(prompt, gammas, drafter=drafter, max_new_tokens=n, chat=True)}
            except WorkbenchError as exc:
                return {"error": str(exc)}

        def show(result: dict) -> None:
            m = result["m"]
            self.speedup.measured = m
            self.speedup.alpha = float(min(0.99, m["alpha"]))
            best = int(np.argmax(m["speedup"]))
            self.status = (f'<div class="wb-spec-summary">measured: best {m["speedup"][best]:.2f}x at draft '
                           f'length {m["gammas"][best]}</div>')

        self._busy(True)
        self.status = f"measuring {len(gammas)} draft lengths with {drafter} …"
        result = run_then_apply(work, lambda r: self._finish(r, show), blocking=blocking)
        return result.get("m") if result else None

    def sweep_drafters(self, *, blocking: bool = True, prompts=None, max_new_tokens: int | None = None):
        """Every model-free drafter on the task prompts (`workbench.speculative.sweep.acceptance_sweep`, on the
        connected Dask cluster when there is one); the pooled table appears in "Drafters across prompts"."""
        from workbench.speculative.prompts import task_prompts
        from workbench.speculative.sweep import DRAFTER_CONFIGS

        if prompts is None:
            prompts = task_prompts("grounded")[:3] + task_prompts("open")[:2]
        n = max_new_tokens or self.max_new_tokens
        configs = {name: {**c, "schedule_params": {"gamma": self.budget}} for name, c in DRAFTER_CONFIGS.items()}
        total = len(prompts) * len(configs)

        progress = self._progress_callback()

        def work() -> dict:
            from workbench.distributed import current_client
            from workbench.speculative.sweep import acceptance_sweep

            client = current_client()
            t0 = time.perf_counter()
            try:
                sweep = acceptance_sweep(prompts, configs, max_new_tokens=n, client=client, progress=progress)
            except WorkbenchError as exc:
                return {"error": str(exc)}
            return {"sweep": sweep, "seconds": time.perf_counter() - t0,
                    "where": "on the Dask cluster" if client is not None else "here"}

        def show(result: dict) -> None:
            sweep = self.sweep = result["sweep"]
            frame = sweep.by_config().round(3)
            self._sweep_table.object = (
                f"<p>{total} runs of {n} new tokens, {len(prompts)} prompts, draft length {self.budget}, "
                f"measured {result['where']} in {result['seconds']:.1f} s.</p>" + frame.to_html(classes="wb-table"))
            best = frame["mean_acceptance_length"].idxmax()
            self.status = (f'<div class="wb-spec-summary">sweep: {best} accepts the most '
                           f'({frame.loc[best, "mean_acceptance_length"]:.2f} tokens per draft)</div>')

        self._busy(True)
        self._progress.value = 0
        self.status = f"sweeping {len(configs)} drafters over {len(prompts)} prompts …"
        result = run_then_apply(work, lambda r: self._finish(r, show), blocking=blocking)
        return result.get("sweep") if result else None
