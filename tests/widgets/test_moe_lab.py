"""Headless tests of the MoE routing lab's widgets: set parameters, assert on the data they render.

The traces are synthetic (`synthetic_trace`) or built here; the lab's default trace (the tiny MoE model) is only
checked for what it must be when the model is installed, and for the message when it is not."""

import re
import statistics
import sys
import time

import numpy as np
import pytest
from bokeh.document import Document

from widgets.moe_lab import DropByPosition, ExpertLoad, LayerFlow, RouterCompare, RoutingHeatmap
from widgets.moe_lab.heatmap import DROPPED, KEPT, NOT_CHOSEN, REROUTED
from workbench.routing import (
    ROUTER_NAMES,
    RoutingTrace,
    balance_summary,
    capacity_for,
    drop_rate_by_position,
    route,
    router_z_loss,
    synthetic_trace,
)

# the size of the lab's default trace: 6 excerpts of up to 96 tokens through the tiny MoE (4 layers x 8 experts)
LAYERS, TOKENS, EXPERTS, SEQUENCES = 4, 576, 8, 6


@pytest.fixture(scope="module")
def trace():
    return synthetic_trace(n_layers=LAYERS, n_tokens=TOKENS, n_experts=EXPERTS, n_sequences=SEQUENCES, seed=3)


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    from workbench.routing import warm_up

    warm_up()  # numba compilation stays out of the timings, as the lab's warm-up job does


def _served_sets(r) -> list[set]:
    return [{int(e) for e in row if e >= 0} for row in r.assignments]


def _spans(html: str, cls: str) -> int:
    return len(re.findall(rf'class="wb-moe-tok [^"]*\b{cls}\b', html))


def _timed(view, changes) -> list[float]:
    out = []
    for name, value in changes:
        t0 = time.perf_counter()
        setattr(view, name, value)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def test_heatmap_marks_kept_and_dropped_slots(trace):
    view = RoutingHeatmap(trace=trace, router="capacity_topk", k=2, capacity_factor=1.25, layer=1)
    r = view.routing
    ref = route(trace.layer(1), "capacity_topk", k=2, capacity_factor=1.25, drop_policy="position")
    np.testing.assert_array_equal(r.assignments, ref.assignments)
    image = view.source.data["image"][0]
    assert image.shape == (EXPERTS, TOKENS) and view.source.data["dw"] == [TOKENS]
    np.testing.assert_allclose(image, ref.probs.T)
    assert len(view.kept_source.data["x"]) == int(ref.kept.sum())
    assert len(view.dropped_source.data["x"]) == ref.n_dropped
    assert int((view.status == KEPT).sum()) == int(ref.kept.sum())
    assert int((view.status == DROPPED).sum()) == ref.n_dropped
    t, j = np.nonzero(ref.dropped)
    assert (view.status[ref.requested[t, j], t] == DROPPED).all()
    # the text: one span per token, coloured by the first serving expert, dropped ones marked
    text = view.text_html
    assert text.count('class="wb-moe-tok') == TOKENS
    first = np.where(ref.kept[:, 0], ref.assignments[:, 0], np.where(ref.kept[:, 1], ref.assignments[:, 1], -1))
    np.testing.assert_array_equal(view.first_expert, first)
    assert _spans(text, "wb-moe-e3") == int((first == 3).sum())
    assert _spans(text, "wb-moe-dropped") == int(ref.dropped.any(axis=1).sum())
    assert _spans(text, "wb-moe-none") == int((first < 0).sum())
    assert text.count('class="wb-moe-tag"') == SEQUENCES and "domain1" in text
    assert f'<b class="wb-moe-ndropped">{ref.n_dropped}</b>' in view._summary.object

    source, kept_source = view.source, view.kept_source
    view.capacity_factor = 0.5  # far below the mean load: many drops
    low = route(trace.layer(1), "capacity_topk", k=2, capacity_factor=0.5)
    assert view.source is source and view.kept_source is kept_source  # updated in place
    assert len(view.dropped_source.data["x"]) == low.n_dropped > ref.n_dropped
    assert _spans(view.text_html, "wb-moe-dropped") == int(low.dropped.any(axis=1).sum())
    view.router = "topk_softmax"  # no capacity: nothing dropped
    assert len(view.dropped_source.data["x"]) == 0 and _spans(view.text_html, "wb-moe-dropped") == 0
    assert len(view.kept_source.data["x"]) == 2 * TOKENS
    view.layer = 3
    np.testing.assert_allclose(view.source.data["image"][0], route(trace.layer(3), "topk_softmax").probs.T)
    assert "layer 3" in view._summary.object


def test_heatmap_shows_rerouted_slots_and_escapes_tokens():
    logits = np.array([[[3.0, 1.0, 0.0], [3.0, 2.0, 0.0], [3.0, 0.0, 2.0], [0.0, 3.0, 1.0]]])
    tr = RoutingTrace(logits=logits, token_ids=[1, 2, 3, 4], positions=[0, 1, 2, 0], sequence_ids=[0, 0, 0, 1],
                      tags=["code", "code", "code", "de"], tokens=["<b>", "x\n", "&", "Hund"])
    view = RoutingHeatmap(trace=tr, router="capacity_aware", k=1, capacity_factor=0.75, overflow="reroute")
    r = view.routing
    assert r.capacity == 1 and r.extra["rerouted"] > 0
    assert int((view.status == REROUTED).sum()) == r.extra["rerouted"] == len(view.rerouted_source.data["x"])
    assert ">&lt;b&gt;</span>" in view.text_html and "<b>" not in view.text_html  # token text is escaped
    assert "↵" in view.text_html and "&amp;" in view.text_html
    assert view.text_html.count('class="wb-moe-tag"') == 2 and ">de</span>" in view.text_html
    assert view.tokens.data["token"] == ["<b>", "x\n", "&", "Hund"]  # the heatmap's hover tokens
    view.overflow = "drop"
    ref = route(logits[0], "capacity_aware", k=1, capacity_factor=0.75, overflow="drop", drop_policy="position")
    assert int((view.status == REROUTED).sum()) == 0 and int((view.status == DROPPED).sum()) == ref.n_dropped == 2
    assert (view.status != NOT_CHOSEN).sum() == tr.n_tokens  # k = 1: one kept or dropped cell per token


def test_expert_load_bars_capacity_line_and_metrics(trace):
    view = ExpertLoad(trace=trace, router="capacity_topk", k=2, capacity_factor=1.5, micro_batches=2)
    r = view.routing
    data = view.source.data
    assert int(np.sum(data["load"])) == int(r.kept.sum()) == int(r.loads.sum())
    assert view.capacity_line.visible and view.capacity_line.location == r.capacity == capacity_for(
        TOKENS, EXPERTS, 2, 1.5)
    assert int(np.sum(data["drops"])) == r.n_dropped
    np.testing.assert_array_equal(data["top"], np.asarray(data["load"]) + np.asarray(data["drops"]))
    assert view._plot.y_range.end >= max(r.capacity, int(np.max(data["top"])))
    # the balance metrics are the core's
    g = balance_summary(r, scope="global")
    s = balance_summary(r, scope="sequence", sequence_ids=trace.sequence_ids)
    m = balance_summary(r, scope="micro", sequence_ids=trace.sequence_ids, micro_batches=2)
    assert view.metrics["lbl_global"] == pytest.approx(g.load_balancing_loss)
    assert view.metrics["lbl_sequence"] == pytest.approx(s.load_balancing_loss)
    assert view.metrics["lbl_micro"] == pytest.approx(m.load_balancing_loss)
    assert view.metrics["z_loss"] == pytest.approx(router_z_loss(trace.layer(0)))
    for key in ("load_cv", "max_violation", "load_entropy", "drop_rate"):
        assert view.metrics[key] == pytest.approx(getattr(g, key)), key
    table = view._table.object
    assert f'class="wb-moe-m-lbl_global">{g.load_balancing_loss:.4f}<' in table
    assert f'class="wb-moe-m-drop_rate">{g.drop_rate:.2%}<' in table

    source = view.source
    dropped_before = r.n_dropped
    view.capacity_factor = 0.5  # lowering the capacity factor drops slots
    r = view.routing
    assert view.source is source
    assert view.capacity_line.location == r.capacity == capacity_for(TOKENS, EXPERTS, 2, 0.5)
    assert int(np.sum(view.source.data["drops"])) == r.n_dropped > dropped_before
    assert int(np.sum(view.source.data["load"])) == int(r.kept.sum()) <= EXPERTS * r.capacity
    assert max(view.source.data["load"]) <= r.capacity
    assert f'<b class="wb-moe-capacity">{r.capacity}</b>' in view._summary.object
    assert view.metrics["drop_rate"] == pytest.approx(r.drop_rate) and r.drop_rate > 0.3

    view.router = "expert_choice"  # every expert takes exactly its capacity
    r = view.routing
    assert list(view.source.data["load"]) == [r.capacity] * EXPERTS and view.metrics["load_cv"] == 0
    view.router = "topk_softmax"  # no capacity: no line, no drops
    assert not view.capacity_line.visible and view.routing.capacity == -1
    assert int(np.sum(view.source.data["drops"])) == 0 and view.metrics["drop_rate"] == 0
    assert '<b class="wb-moe-capacity">none</b>' in view._summary.object


def test_every_router_renders_in_every_view(trace):
    views = [cls(trace=trace) for cls in (RoutingHeatmap, ExpertLoad, DropByPosition, LayerFlow, RouterCompare)]
    for name in ROUTER_NAMES:
        for view in views:
            view.router = name
            assert view.error == "", (name, type(view).__name__, view.error)
            assert view.routing.router == name
            if isinstance(view, ExpertLoad):
                assert int(np.sum(view.source.data["load"])) == int(view.routing.kept.sum())


def test_bad_settings_show_the_core_message_and_keep_the_last_drawing(trace):
    view = ExpertLoad(trace=trace, router="capacity_topk")
    loads = list(view.source.data["load"])
    view.k = EXPERTS + 1
    assert "k=9 is out of range" in view.error and "wb-moe-error" in view._error.object
    assert list(view.source.data["load"]) == loads
    view.k = 2
    view.capacity_factor = 0.0
    assert "capacity_factor must be a finite number > 0" in view.error
    view.capacity_factor = 1.0
    assert view.error == "" and view._error.object == ""
    view.router, view.k = "grouped_topk", 1  # k must be a multiple of the 2 groups
    assert "n_groups=2 must divide" in view.error
    view.k = 4
    assert view.error == "" and view.routing.k == 4
    view.layer = LAYERS
    assert f"layer {LAYERS} is out of range" in view.error


def test_drop_rate_by_position(trace):
    view = DropByPosition(trace=trace, router="capacity_topk", capacity_factor=0.75, bins=4)
    ref = drop_rate_by_position(view.routing, trace.positions, bins=4)
    np.testing.assert_allclose(view.source.data["rate"], ref.rate)
    assert int(np.sum(view.source.data["dropped"])) == view.routing.n_dropped > 0
    assert list(view.source.data["left"]) == list(ref.edges[:-1])
    view.bins = 8
    assert len(view.source.data["rate"]) == 8
    view.router = "topk_softmax"
    assert not np.any(view.source.data["rate"]) and int(np.sum(view.source.data["slots"])) == 2 * TOKENS


def test_layer_flow_counts_first_expert_transitions(trace):
    view = LayerFlow(trace=trace, router="topk_softmax", k=2, layer=1)
    assert view.layers == (1, 2)
    a = route(trace.layer(1), "topk_softmax", k=2).assignments[:, 0]
    b = route(trace.layer(2), "topk_softmax", k=2).assignments[:, 0]
    expected = np.zeros((EXPERTS + 1, EXPERTS + 1), np.int64)
    np.add.at(expected, (a, b), 1)
    np.testing.assert_array_equal(view.matrix, expected)
    assert int(view.matrix.sum()) == TOKENS and len(view.source.data["count"]) == (EXPERTS + 1) ** 2
    cell = view.source.data["src"].index("2") + 5  # rows are "from" experts, 9 cells each
    assert view.source.data["dst"][cell] == "5" and view.source.data["count"][cell] == expected[2, 5]
    assert view.source.data["share"][cell] == pytest.approx(expected[2, 5] / max(expected[2].sum(), 1))
    assert view._plot.x_range.factors[-1] == "none"
    view.router, view.capacity_factor = "capacity_topk", 0.5  # drops: tokens without an expert go to "none"
    assert view.matrix[:, EXPERTS].sum() + view.matrix[EXPERTS].sum() > 0 and int(view.matrix.sum()) == TOKENS
    view.layer = LAYERS - 1  # the last layer has no next one: the last two are shown
    assert view.layers == (LAYERS - 2, LAYERS - 1) and "showing the last two" in view._summary.object
    one = LayerFlow(trace=synthetic_trace(n_layers=1, n_tokens=32))
    assert "needs at least two" in one.error


def test_router_compare_counts_the_tokens_whose_experts_differ(trace):
    view = RouterCompare(trace=trace, router="topk_softmax", router_b="capacity_topk", k=2, capacity_factor=1.0)
    ra = route(trace.layer(0), "topk_softmax", k=2)
    rb = route(trace.layer(0), "capacity_topk", k=2, capacity_factor=1.0, drop_policy="position")
    differ = [x != y for x, y in zip(_served_sets(ra), _served_sets(rb))]
    assert view.n_differ == sum(differ) > 0
    assert _spans(view.text_html, "wb-moe-diff") == view.n_differ
    assert _spans(view.text_html, "wb-moe-same") == TOKENS - view.n_differ
    assert f'<b class="wb-moe-ndiff">{view.n_differ}</b>' in view._summary.object
    assert list(view.source_a.data["load"]) == ra.loads.tolist()
    assert list(view.source_b.data["load"]) == rb.loads.tolist()
    assert not view.capacity_a.visible and view.capacity_b.visible and view.capacity_b.location == rb.capacity
    assert view._plot_a.y_range is view._plot_b.y_range  # the same scale side by side
    source_b = view.source_b
    view.router_b = "topk_softmax"
    assert view.n_differ == 0 and view.source_b is source_b
    view.router_b = "expert_choice"
    re_ = route(trace.layer(0), "expert_choice", k=2, capacity_factor=1.0)
    assert view.n_differ == sum(x != y for x, y in zip(_served_sets(ra), _served_sets(re_)))
    view.router_b_select.value = "deepseek_v3"  # the view's own select drives router B
    assert view.router_b == "deepseek_v3" and view.routing_b.router == "deepseek_v3"


def test_lab_controls_drive_the_visible_views_within_the_budget(trace):
    from widgets.dashboard import TABS
    from widgets.moe_lab.lab import MoERoutingLab

    assert ("MoE routing", MoERoutingLab) in TABS
    lab = MoERoutingLab(trace=trace)
    # rendered into a Bokeh document, as in a served session: model updates (and any model made on an update,
    # which makes the document re-collect its references) count in the timings below
    doc = Document()
    doc.add_root(lab.__panel__().get_root(doc))
    assert "576 tokens in 6 sequences" in lab.status and "domain0" in lab.status
    assert lab.heatmap.routing is not None and lab.load.routing is None  # the others follow once shown
    c = lab.controls
    assert list(c.router.options) == list(ROUTER_NAMES) and c.layer.options == list(range(LAYERS))
    assert not c.capacity_factor.disabled and c.overflow.disabled  # capacity_topk: no overflow mode

    timings: dict[str, list[float]] = {}
    for tab, name in enumerate(("tokens", "load", "flow", "compare")):
        lab._views.active = tab
        lab.param.update(router="capacity_topk", capacity_factor=1.25, layer=0)
        timings[name] = _timed(lab, [("capacity_factor", 0.5), ("router", "switch_top1"),
                                     ("capacity_factor", 1.0), ("layer", 2), ("router", "expert_choice"),
                                     ("k", 1), ("router", "capacity_aware"), ("overflow", "reroute"),
                                     ("k", 2), ("layer", 1), ("router", "topk_softmax")])
        for view in lab.visible_views():
            assert view.error == ""
            assert (view.router, view.k, view.layer, view.overflow) == ("topk_softmax", 2, 1, "reroute")
    # the load view followed the lab's last settings
    assert lab.load.routing.router == "topk_softmax" and lab.load.capacity_line.visible is False
    # a control widget drives the lab and the visible view
    lab._views.active = 1
    c.router.value = "capacity_topk"
    c.capacity_factor.value = 0.5
    assert lab.router == "capacity_topk" and lab.capacity_factor == 0.5
    assert lab.load.routing.capacity == capacity_for(TOKENS, EXPERTS, 2, 0.5) == lab.load.capacity_line.location
    assert lab.drops.routing.n_dropped > 0
    c.layer.value = 3
    assert lab.layer == 3 and lab.load.routing is not None and lab.load.layer == 3
    c.router.value = "switch_top1"
    assert c.k.disabled and not c.drop_policy.disabled and lab.load.routing.k == 1
    # hidden views catch up when shown
    assert lab.compare.router != "switch_top1"
    lab._views.active = 3
    assert lab.compare.router == "switch_top1" and lab.compare.routing.router == "switch_top1"

    for name, ms in timings.items():
        print(f"\nMoE lab control change with the {name} tab shown ({TOKENS} tokens, {EXPERTS} experts), served "
              f"document, server side: median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms")
        assert statistics.median(ms) < 100, (name, ms)  # the max can include a full garbage collection


def test_lab_follows_a_new_trace(trace):
    from widgets.moe_lab.lab import MoERoutingLab

    lab = MoERoutingLab(trace=trace, layer=3)
    small = synthetic_trace(n_layers=2, n_tokens=40, n_experts=4, n_sequences=2)
    lab.trace = small
    assert lab.layer == 0 and lab.controls.layer.options == [0, 1] and lab.controls.k.end == 4
    assert lab.heatmap.routing.n_tokens == 40 and lab.heatmap.source.data["dh"] == [4]
    assert "40 tokens in 2 sequences" in lab.status


def test_lab_says_the_tiny_moe_is_missing(monkeypatch):
    import workbench.routing
    from widgets.moe_lab import lab as lab_module

    monkeypatch.setattr(lab_module, "_DEFAULT", {})
    monkeypatch.delattr(workbench.routing, "tiny_moe", raising=False)
    monkeypatch.setitem(sys.modules, "workbench.routing.tiny_moe", None)  # as if not installed
    from workbench.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="tiny MoE model is not installed"):
        lab_module.default_trace()
    lab = lab_module.MoERoutingLab()
    assert lab.trace is None and lab.status.startswith("⚠") and "tiny MoE model is not installed" in lab.status
    assert "wb-moe-warning" in lab._status_pane.object
    assert lab.heatmap.routing is None and "no routing trace" in lab.heatmap._summary.object
    lab.capacity_factor = 0.5  # controls do nothing harmful without a trace
    assert lab.heatmap.error == ""


def test_default_trace_routes_the_shipped_excerpts_with_the_tiny_moe():
    from widgets.moe_lab.lab import EXCERPT_TOKENS, default_texts, default_trace
    from workbench.errors import ModelNotFoundError

    texts = default_texts()
    assert [tag for tag, _ in texts[:2]] == ["English prose", "Python code"] and len(texts) == 6
    assert texts[1][1].startswith("def heappush") and all(text.strip() for _, text in texts)
    try:
        tr = default_trace()
    except ModelNotFoundError as exc:
        pytest.skip(f"the tiny MoE model is not installed yet: {exc}")
    assert tr is default_trace()  # once per process
    assert tr.meta["model"].startswith("tiny-moe") and tr.n_layers >= 2
    assert list(dict.fromkeys(tr.tags)) == [tag for tag, _ in texts]
    assert tr.n_tokens <= EXCERPT_TOKENS * len(texts) and tr.tokens is not None


def test_a_standalone_view_has_its_own_controls(trace):
    view = ExpertLoad(trace=trace, router="capacity_topk", capacity_factor=1.25)
    c = view.controls
    assert c is not None and c.capacity_factor.value == 1.25 and c.layer.options == list(range(LAYERS))
    c.capacity_factor.value = 0.5
    assert view.capacity_factor == 0.5 and view.routing.capacity == capacity_for(TOKENS, EXPERTS, 2, 0.5)
    c.router.value = "topk_softmax"
    assert view.routing.router == "topk_softmax" and c.capacity_factor.disabled and c.drop_policy.disabled
    view.capacity_factor = 0.0  # a value the slider cannot show: the parameter takes it, the core says why
    assert "capacity_factor" not in view.error  # topk_softmax takes no capacity factor
    view.router = "capacity_topk"
    assert "capacity_factor must be a finite number > 0" in view.error and c.capacity_factor.value == 0.5
    assert RoutingHeatmap(trace=trace, show_controls=False).controls is None  # the lab's views share its own


def test_deepseek_v3_uses_the_bias_a_tiny_moe_trace_carries(trace):
    bias = np.zeros((LAYERS, EXPERTS))
    bias[2, 5] = 10.0  # expert 5 always selected at layer 2
    tr = RoutingTrace(logits=trace.logits, token_ids=trace.token_ids, positions=trace.positions,
                      sequence_ids=trace.sequence_ids, tags=trace.tags, meta={"bias": bias.tolist()})
    view = ExpertLoad(trace=tr, router="deepseek_v3", k=2, layer=2)
    assert view.source.data["load"][5] == TOKENS
    np.testing.assert_array_equal(view.routing.assignments,
                                  route(tr.layer(2), "deepseek_v3", k=2, bias=bias[2]).assignments)
    view.layer = 1
    assert view.source.data["load"][5] < TOKENS


def test_the_shared_view_pieces_stay_importable_from_the_heatmap_module():
    # RoutedView and what every view shares moved from heatmap.py to routed_view.py; the old imports still work
    from widgets.moe_lab import heatmap, routed_view

    shared = ("CAPACITY_ROUTERS", "DROP_POLICY_ROUTERS", "OVERFLOW_ROUTERS", "ROUTER_HELP", "STYLE", "TOP1_ROUTERS",
              "RoutedView", "SettingsControls", "error_html", "expert_colours", "layer_label", "router_params",
              "served_lists", "token_text", "tokens_html")
    assert all(getattr(heatmap, n) is getattr(routed_view, n) for n in shared)
    assert issubclass(RoutingHeatmap, routed_view.RoutedView)
    assert heatmap.legend_html(3).count('class="wb-moe-swatch"') == 3  # the heatmap's own legend
