"""Headless tests of the KV-cache lab's widgets: set parameters, assert on the data they render."""

import math
import re
import time

import numpy as np
import pandas as pd
import pytest

from widgets.kvcache_lab import EvictedText, PolicyCompare, QualityVsBudget, RetentionMap
from workbench.kvcache import replay
from workbench.kvcache.heavy_hitters import heavy_hitters
from workbench.kvcache.replay import EVICTED, KEPT, SINK, SKIPPED

pytestmark = pytest.mark.model

LAYER = 15


def _spans(html: str, state: str) -> int:
    return len(re.findall(rf'class="wb-kv-tok wb-kv-{state}[ "]', html))


def test_retention_map_budget_change_updates_the_image_in_place(kv_trace):
    view = RetentionMap(trace=kv_trace, policy="h2o", budget=64, layer=LAYER)
    source = view.source
    before = view.source.data["image"][0].copy()
    assert before.shape == (kv_trace.n_steps, kv_trace.n_tokens)
    assert view.source.data["dw"] == [kv_trace.n_tokens] and view.source.data["dh"] == [kv_trace.n_steps]
    assert (np.count_nonzero(before == KEPT, axis=1) == 64).all()  # H2O keeps exactly the budget at every step
    assert '<b class="wb-kv-kept">64.0</b>' in view._summary.object

    timings = []
    for budget in (16, 32, 48, 96, 16):
        t0 = time.perf_counter()
        view.budget = budget
        timings.append((time.perf_counter() - t0) * 1e3)
    assert view.source is source  # updated in place, not rebuilt
    after = view.source.data["image"][0]
    assert not np.array_equal(before, after)
    assert (np.count_nonzero(after == KEPT, axis=1) == 16).all()
    assert '<b class="wb-kv-kept">16.0</b>' in view._summary.object
    assert view.retention.budget == 16 and view._budget_w.value == 16
    assert list(view.mass_source.data["step"]) == list(range(kv_trace.n_steps))
    np.testing.assert_allclose(view.mass_source.data["mass"], view.retention.mass[0, 0], rtol=1e-6)
    median = sorted(timings)[len(timings) // 2]
    print(f"\nRetentionMap budget change, server side: median {median:.1f} ms, max {max(timings):.1f} ms "
          f"({kv_trace.n_tokens} tokens, {kv_trace.n_steps} steps)")
    assert max(timings) < 500


def test_retention_map_head_layer_and_policy(kv_trace):
    view = RetentionMap(trace=kv_trace, policy="streaming_llm", budget=32, layer=LAYER)
    assert view._layer_w.options == [int(x) for x in kv_trace.layers]
    assert view._head_w.options == list(range(kv_trace.n_kv_heads))
    states = view.states
    assert (states[:, :4] == SINK).all()  # the 4 attention sinks stay
    assert (states == EVICTED).any() and not (states == SKIPPED).any()
    retention = view.retention
    t0 = time.perf_counter()
    view.head = 2
    head_ms = (time.perf_counter() - t0) * 1e3
    assert view.retention is retention  # a head change recolours, it does not replay
    np.testing.assert_array_equal(view.source.data["image"][0], retention.cell_states(0, 2))
    assert view._head_w.value == 2 and "KV head 2" in view._plot.title.text
    t0 = time.perf_counter()
    view.layer = 3
    layer_ms = (time.perf_counter() - t0) * 1e3
    assert view.retention.layers.tolist() == [3] and view._layer_w.value == 3
    assert "mit-han-lab/streaming-llm" in view._about.object
    view.policy = "quest"
    assert view._policy_w.value == "quest"
    assert "mit-han-lab/Quest" in view._about.object and "differs" in view._about.object
    assert (view.states == SKIPPED).any() and not (view.states == EVICTED).any()
    assert "skipped" in view._summary.object
    print(f"\nRetentionMap head change {head_ms:.1f} ms, layer change {layer_ms:.1f} ms (server side)")
    view._budget_w.value = 40  # the control drives the parameter
    assert view.budget == 40 and view.retention.budget == 40


def test_retention_map_bad_budget_shows_an_error_instead_of_raising(kv_trace):
    view = RetentionMap(trace=kv_trace, policy="h2o", budget=64, layer=LAYER)
    image = view.source.data["image"][0].copy()
    view.budget = 10**6
    assert "larger than the whole context" in view.error
    assert "wb-kv-error" in view._error.object and "larger than the whole context" in view._error.object
    np.testing.assert_array_equal(view.source.data["image"][0], image)  # the last good map stays
    view.budget = 0
    assert "at least 1 token" in view.error
    view.policy, view.budget = "streaming_llm", 3
    assert "sinks" in view.error
    view.budget = 20
    assert view.error == "" and view._error.object == ""
    assert view.retention.budget == 20
    view.head = 7
    assert "KV head 7 does not exist" in view.error
    view.head = 1
    assert view.error == "" and view._head_w.value == 1


def test_evicted_text_greys_the_evicted_tokens(kv_trace):
    r = replay(kv_trace, "h2o", 32, layers=[LAYER])
    view = EvictedText(trace=kv_trace, retention=r, layer=LAYER, head=1, step=10)
    body = view._body.object
    row = r.cell_states(0, 1)[10]
    query = kv_trace.n_prefill + 10
    assert body.count('class="wb-kv-tok') == query + 1  # positions up to the query
    assert _spans(body, "evicted") == np.count_nonzero(row == EVICTED) > 0
    assert _spans(body, "kept") == np.count_nonzero(row == KEPT) == 32
    assert f'<b class="wb-kv-nevicted">{np.count_nonzero(row == EVICTED)}</b>' in view._stats.object
    assert "wb-kv-query" in body and f'data-pos="{query}"' in body
    # heavy hitters: H2O's own scores (attention renormalised over the kept keys), so every one marked is kept
    assert set(view.heavy_positions.tolist()) == set(heavy_hitters(kv_trace, r, 0, 1, 10, 10).tolist())
    assert all(row[p] == KEPT for p in view.heavy_positions)
    assert "H2O score" in body
    assert len(re.findall(r'class="[^"]*wb-kv-heavy', body)) == 10
    t0 = time.perf_counter()
    view.step = 0
    step_ms = (time.perf_counter() - t0) * 1e3
    assert view._body.object.count('class="wb-kv-tok') == kv_trace.n_prefill + 1
    assert _spans(view._body.object, "evicted") == np.count_nonzero(r.cell_states(0, 1)[0] == EVICTED)
    view._slider.value = 5  # the slider drives the step
    assert view.step == 5 and _spans(view._body.object, "evicted") == np.count_nonzero(
        r.cell_states(0, 1)[5] == EVICTED)
    view.heavy = 0
    assert not re.findall(r'class="[^"]*wb-kv-heavy', view._body.object)
    print(f"\nEvictedText step change {step_ms:.1f} ms (server side)")


def test_evicted_text_marks_sinks_and_skipped_positions(kv_trace):
    sinks = replay(kv_trace, "streaming_llm", 24, layers=[LAYER])
    view = EvictedText(trace=kv_trace, retention=sinks)
    assert view._slider.value == kv_trace.n_steps - 1  # no step given: the last one
    assert _spans(view._body.object, "sink") == 4
    quest = replay(kv_trace, "quest", 32, layers=[LAYER])
    view.retention = quest
    row = quest.cell_states(0, 0)[-1]
    assert _spans(view._body.object, "skipped") == np.count_nonzero(row == SKIPPED) > 0
    assert _spans(view._body.object, "evicted") == 0 and "wb-kv-nskipped" in view._stats.object
    view.layer = 2  # not replayed: a message, not an exception
    assert "was not replayed" in view._stats.object


def test_policy_compare_counts_the_xor_of_the_kept_masks(kv_trace):
    view = PolicyCompare(trace=kv_trace, policy_a="streaming_llm", policy_b="h2o", budget=48, layer=LAYER, head=1)
    ra = replay(kv_trace, "streaming_llm", 48, layers=[LAYER])
    rb = replay(kv_trace, "h2o", 48, layers=[LAYER])
    ka, kb = ra.kept[0, 1], rb.kept[0, 1]
    assert view.n_differ == np.count_nonzero(ka ^ kb) > 0
    assert view.counts["only_a"] == np.count_nonzero(ka & ~kb)
    assert view.counts["only_b"] == np.count_nonzero(kb & ~ka)
    assert view.counts["both"] == np.count_nonzero(ka & kb)
    assert view.n_differ_layer == np.count_nonzero(ra.kept[0] ^ rb.kept[0])
    assert f'<b class="wb-kv-ndiff">{view.n_differ}</b>' in view._summary.object
    np.testing.assert_array_equal(view.source_a.data["image"][0], ra.cell_states(0, 1))
    assert view._fig_a.x_range is view._fig_d.x_range  # linked zoom
    diff_source = view.source_diff
    view.policy_b = "streaming_llm"
    assert view.source_diff is diff_source and view.n_differ == 0 and view.n_differ_layer == 0
    view.policy_b, view.head = "snapkv", 0
    rs = replay(kv_trace, "snapkv", 48, layers=[LAYER])
    assert view.n_differ == np.count_nonzero(ra.kept[0, 0] ^ rs.kept[0, 0])
    view.budget = 10**6
    assert "larger than the whole context" in view.error and "wb-kv-error" in view._error.object


def _sweep_table() -> pd.DataFrame:
    rows = []
    for policy, base in (("window", 9.0), ("h2o", 3.0), ("snapkv", 1.5)):
        for budget in (16, 32, 64, 128):
            scale = 32 / budget
            rows.append({"policy": policy, "budget": budget, "kept_fraction": budget / 400,
                         "delta_ppl": base * scale, "kl": 0.1 * base * scale, "top1": 1 - 0.05 * base * scale,
                         "passkey": math.nan if policy == "window" else min(1.0, budget / 64)})
    rows.append({"policy": "full", "budget": 16, "kept_fraction": 1.0, "delta_ppl": 0.0, "kl": 0.0, "top1": 1.0,
                 "passkey": 1.0})
    return pd.DataFrame(rows)


def test_quality_vs_budget_draws_one_line_per_policy():
    table = _sweep_table()
    view = QualityVsBudget(table=table)
    assert view.policies == ["window", "h2o", "snapkv", "full"]
    for metric, fig in view.figures.items():
        lines = [r for r in fig.renderers if r.visible and type(r.glyph).__name__ == "Line"]
        assert len(lines) == 4, metric
    assert [item.label.value for item in view.legend.items] == view.policies
    assert view.sources["h2o"].data["budget"] == [16, 32, 64, 128]
    assert view.sources["h2o"].data["delta_ppl"] == pytest.approx([6.0, 3.0, 1.5, 0.75])
    assert view.sources["full"].data["budget"] == [16, 32, 64, 128]  # a flat reference line
    assert view.sources["full"].data["kl"] == [0.0] * 4
    assert all(math.isnan(v) for v in view.sources["window"].data["passkey"])
    assert "wb-kv-quality" in view._table.object and "snapkv" in view._table.object
    h2o = view.sources["h2o"]
    view.table = table[table.policy.isin(["h2o", "window"])].assign(passkey=math.nan)
    assert view.sources["h2o"] is h2o  # the same source, new data
    assert [item.label.value for item in view.legend.items] == ["window", "h2o"]
    visible = [r for r in view.figures["kl"].renderers if r.visible and type(r.glyph).__name__ == "Line"]
    assert len(visible) == 2
    assert view.sources["snapkv"].data["budget"] == []
    assert "probe not run" in view.figures["passkey"].title.text
    view.table = None
    assert view.legend.items == [] and view._table.object == ""


def test_lab_builds_with_the_default_trace_and_keeps_the_views_in_step():
    from widgets.dashboard import TABS
    from widgets.kvcache_lab.lab import DEFAULT_SOURCE, OWN_TEXT, KVCacheLab, default_trace, excerpt

    assert ("KV cache", KVCacheLab) in TABS
    lab = KVCacheLab()
    trace = lab.trace
    assert trace is default_trace() and 250 <= trace.n_tokens <= 450  # captured once per process
    assert lab.text == excerpt(DEFAULT_SOURCE) and f"{trace.n_tokens} tokens" in lab.status
    m = lab.retention_map
    assert m.retention is not None and m.retention.n_tokens == trace.n_tokens and not m.show_controls
    assert lab.evicted_text.retention is None  # follows the map once its tab is shown
    lab._views.active = 1
    assert lab.evicted_text.retention is m.retention
    t0 = time.perf_counter()
    m.budget = 24  # what the side bar's budget control does: the map replays, the visible text follows
    lab_ms = (time.perf_counter() - t0) * 1e3
    assert lab.evicted_text.retention is m.retention and lab.evicted_text.retention.budget == 24
    print(f"\nKV-cache lab budget change with the Evicted text tab shown: {lab_ms:.1f} ms (server side)")
    m.head = 1
    assert lab.evicted_text.head == 1
    lab._views.active = 2
    assert lab.compare.budget == 24 and lab.compare.head == 1 and lab.compare.retention_a.budget == 24
    lab._views.active = 0
    # sources: a shipped excerpt fills the text box; typing switches to "your own text"
    lab.source = "heapq.py (code)"
    assert lab.text.startswith("def heappush") and lab._text_w.value == lab.text
    lab._text_w.value = "Hello there"
    assert lab.source == OWN_TEXT and lab.text == "Hello there"
    assert lab.capture_text(blocking=True) is None  # too short for 32 decode steps
    assert lab.status.startswith("⚠") and "decode steps" in lab.status and lab.trace is trace
    assert not lab._progress.visible and not lab._capture_button.disabled


def test_lab_captures_a_new_text(kv_text):
    from widgets.kvcache_lab.lab import KVCacheLab

    lab = KVCacheLab(source="your own text", text=kv_text[:700], decode_steps=8)
    old = lab.trace
    new = lab.capture_text(blocking=True)
    assert new is not None and lab.trace is new and new is not old and new.n_steps == 8
    assert lab.retention_map.retention.n_tokens == new.n_tokens
    assert lab.retention_map.source.data["dh"] == [8]
    assert "captured in" in lab.status


def test_lab_quality_sweep_runs_on_the_current_trace(kv_trace):
    pytest.importorskip("workbench.kvcache.evaluate")
    from widgets.kvcache_lab.lab import KVCacheLab

    lab = KVCacheLab(trace=kv_trace)
    assert not lab._q_results.visible and "Run quality sweep" in lab._q_help.object
    lab.quality_policies, lab.quality_budgets = ["window", "h2o"], [16, 64, 100000]
    sweep = lab.run_quality(blocking=True)
    assert sweep is not None and len(sweep.table) == 4
    assert lab._q_results.visible and lab.quality.policies == ["window", "h2o"]
    assert "100000" in lab.quality_status and "skipped" in lab.quality_status
    h2o = lab.quality.sources["h2o"].data
    assert h2o["budget"] == [16, 64] and h2o["delta_ppl"][0] >= h2o["delta_ppl"][1] - 0.5
    lab.quality_budgets = [100000]
    assert lab.run_quality(blocking=True) is None and lab.quality_status.startswith("⚠")
