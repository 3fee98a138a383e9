"""Headless tests of the speculative decoding lab's widgets on a real SmolLM2 run: set parameters, assert on the data
they render; the tab decodes, shows errors without losing the last run, and control changes that do not re-run the
model stay well under 100 ms."""

import time

import numpy as np
import pytest

from widgets.speculative_lab import (
    AcceptanceStrip,
    BuilderCompare,
    DraftTreeView,
    PearlTimeline,
    SpeedupCurve,
)
from workbench.speculative.layout import step_layout

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def spec_run(default_model):
    """A prompt-lookup run on a grounded code task: long accepted paths and rejections."""
    from workbench.speculative import generate
    from workbench.speculative.prompts import task_prompts

    return generate(task_prompts("grounded")[0].text, chat=True, drafter="prompt_lookup", schedule="fixed",
                    schedule_params={"gamma": 6}, max_new_tokens=40)


def _ms(fn):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def test_draft_tree_walks_the_run_and_highlights_each_accepted_path(spec_run):
    view = DraftTreeView(run=spec_run)
    assert spec_run.n_steps > 3
    seen = set()
    timings = []
    for i in range(min(spec_run.n_steps, 8)):
        timings.append(_ms(lambda i=i: setattr(view, "step", i)))
        data = view.node_source.data
        lay = step_layout(spec_run.steps[i])
        assert data["state"] == [str(s) for s in lay["state"]]
        assert data["x"] == lay["x"].tolist()
        assert data["token"][1:] == lay["token"][1:].tolist()
        # the root is the token decided before this step; the bonus the first token after the accepted ones
        assert data["state"][-1] == "bonus" and data["token"][-1] == spec_run.steps[i].bonus
        thick = [w for w in view.edge_source.data["width"] if w > 3]
        assert len(thick) == spec_run.steps[i].n_accepted      # one thick edge per accepted node
        assert f"step {i + 1} of {spec_run.n_steps}" in view._summary.object
        seen.add(tuple(data["state"]))
    assert len(seen) > 1                                   # the highlighted path changes with the step
    assert view._slider.value == min(spec_run.n_steps, 8) - 1
    assert max(timings) < 100, timings
    # the root's text is the last decided token
    i = 2
    view.step = i
    ctx = spec_run.prompt_ids.tolist() + spec_run.output_ids.tolist()
    assert view.node_source.data["token"][0] == ctx[len(spec_run.prompt_ids) + sum(
        len(s.tokens) for s in spec_run.steps[:i]) - 1]


def test_acceptance_strip_marks_every_token_by_source(spec_run):
    view = AcceptanceStrip(run=spec_run)
    html = view._text.object
    sources = spec_run.token_sources()
    assert html.count('class="wb-spec-tok') == len(spec_run.output_ids)
    for src in (0, 1, 2):
        assert html.count(f"wb-spec-src{src}") == int((sources == src).sum())
    assert view.bar_source.data["accepted"] == spec_run.acceptance_lengths().tolist()
    assert f"{spec_run.summary()['new_tokens']} tokens in {spec_run.n_steps} steps" in view._stats.object
    view.run = None
    assert view.bar_source.data["accepted"] == []


def test_pearl_timeline_draws_both_schedules(spec_run):
    view = PearlTimeline(run=spec_run, max_steps=50)
    lanes = set(view.source.data["lane"])
    assert {"sequential: verify", "PEARL: verify"} <= lanes
    n_all = len(view.source.data["lane"])
    assert view.timeline.pearl_seconds <= view.timeline.sequential_seconds + 1e-12
    view.max_steps = 2
    assert 0 < len(view.source.data["lane"]) < n_all
    assert set(view.source.data["step"]) <= {1, 2}


def test_builder_compare_replans_live_when_the_budget_moves():
    view = BuilderCompare(acceptance=[0.6, 0.2, 0.1, 0.05], budget=8, left="sequoia", right="kary")
    left, right = view.sources
    n8 = len(left[0].data["x"])
    assert n8 == 9                                          # the root + 8 nodes
    timings = [_ms(lambda b=b: setattr(view, "budget", b)) for b in (16, 32, 64, 4)]
    assert max(timings) < 100, timings
    assert len(left[0].data["x"]) == 5 and len(right[0].data["x"]) == 5
    view.budget = 32
    a, b = view.shapes
    assert a.expected >= b.expected and f"{a.expected:.3f}" in view._summary.object
    view.right = "chain"
    assert view.shapes[1].name == "chain" and view.shapes[1].depth == view.shapes[1].size
    assert "sequoia" in view._table.object and "dyspec" in view._table.object
    view.budget = 1
    assert len(left[0].data["x"]) == 2


def test_speedup_curve_follows_the_acceptance_rate():
    curve = {0: 0.023, 1: 0.0232, 2: 0.0226, 4: 0.025, 8: 0.044, 16: 0.06}
    view = SpeedupCurve(curve=curve, alpha=0.5)
    before = list(view.expected_source.data["speedup"])
    assert view.expected_source.data["gamma"][0] == 0 and before[0] == pytest.approx(1.0)
    assert _ms(lambda: setattr(view, "alpha", 0.9)) < 100
    after = view.expected_source.data["speedup"]
    assert max(after) > max(before)
    assert view.cost_source.data["ms"] == pytest.approx([1000 * v for v in curve.values()])
    view.measured = {"gammas": [2, 4], "speedup": [1.5, 1.9], "tokens_per_s": [40.0, 50.0],
                     "plain_tokens_per_s": 26.0, "alpha": 0.8}
    assert view.measured_source.data["gamma"] == [2, 4] and "measured on the prompt" in view._summary.object


def test_lab_decodes_switches_drafter_and_keeps_the_last_run_on_bad_input(default_model):
    from widgets.speculative_lab.lab import SpeculativeLab

    lab = SpeculativeLab(max_new_tokens=24)
    first = lab.run
    assert first is not None and len(first.output_ids) == 24
    assert lab.tree.run is first and lab.strip.run is first and "tokens in" in lab.status
    lab.drafter, lab.builder, lab.depth = "corpus_ngram", "eagle2", 3
    run = lab.decode()
    assert run.params["drafter"] == "corpus_ngram" and run.params["builder"] == "eagle2"
    assert max(s.tree.max_depth for s in run.steps) <= 3
    # greedy output does not depend on the drafter
    assert np.array_equal(run.output_ids, first.output_ids)
    assert lab.speedup.curve and 0 in lab.speedup.curve
    lab.prompt = "   "
    assert lab.decode() is None
    assert "prompt is empty" in lab.status and lab.run is run
    lab.prompt, lab.temperature, lab.verifier, lab.builder = "Write a haiku about the sea.", 0.8, "specinfer", "native"
    sampled = lab.decode()
    assert sampled.params["verifier"] == "specinfer" and sampled.params["temperature"] == 0.8


def test_lab_sweeps_the_drafters_over_prompts(default_model):
    from widgets.speculative_lab.lab import SpeculativeLab
    from workbench.speculative.prompts import task_prompts

    lab = SpeculativeLab(decode_now=False, budget=6)
    sweep = lab.sweep_drafters(blocking=True, prompts=task_prompts("grounded")[:2], max_new_tokens=12)
    assert lab.sweep is sweep and len(sweep.table) == 8           # 4 drafters x 2 prompts
    assert set(sweep.table["new_tokens"]) == {12}
    assert sweep.table.groupby("prompt")["output_digest"].nunique().eq(1).all()  # greedy: same text whatever drafts
    html = lab._sweep_table.object
    assert "mean_acceptance_length" in html and "suffix" in html and "measured here" in html
    assert "accepts the most" in lab.status and not lab._sweep.disabled
