"""Headless tests of the Tokenizers lab's widgets: set parameters, assert on what they render."""

import pytest

from widgets.tokenizers_lab import MergeReplay, MergeTree, TokenBoundaries, TokenDiff
from workbench.tokenization import load_tokenizer, train_bpe


@pytest.fixture(scope="module")
def prose():
    from workbench.data import load_corpus

    return load_corpus("prose_en").read_text()


@pytest.fixture(scope="module")
def gpt2():
    return load_tokenizer("gpt2")


@pytest.fixture(scope="module")
def trained(prose):
    return train_bpe(prose[:200000], 3000, name="austen-3k")


def test_boundaries_count_hover_and_whitespace(gpt2):
    view = TokenBoundaries(tokenizer=gpt2, text="Hello world")
    assert view.segmentation.n_tokens == 2
    assert '<b class="wb-count">2</b>' in view._stats.object
    assert 'title="id 15496' in view._body.object and "merge #" in view._body.object
    view.text = "Hello  world\n"
    assert view.segmentation.n_tokens == len(gpt2.encode("Hello  world\n"))
    assert "·" not in view._body.object
    view.show_whitespace = True
    assert "·" in view._body.object and "↵" in view._body.object


def test_boundaries_group_split_characters(gpt2):
    view = TokenBoundaries(tokenizer=gpt2, text="ok 👍🏽 fine")
    html = view._body.object
    assert "\ufffd" not in html and "👍" in html and "🏽" in html
    assert view.segmentation.n_tokens > len(view.segmentation.spans)  # some spans hold several tokens
    grouped = [s for s in view.segmentation.spans if len(s.ids) > 1]
    assert grouped and all(s.text.strip() for s in grouped)


def test_diff_counts_disagreements(gpt2, trained):
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune"
    view = TokenDiff(tokenizer_a=gpt2, tokenizer_b=trained, text=text)
    d = view.diff
    assert d.n_disagreements > 0 and 0 < d.agreement < 1
    assert f'<b class="wb-disagreements">{d.n_disagreements}</b>' in view._summary.object
    assert "wb-diff" in view._a.object
    view.tokenizer_b = gpt2
    assert view.diff.n_disagreements == 0 and view.diff.agreement == 1.0


def test_merge_tree_draws_the_merges_of_a_token(trained):
    view = MergeTree(tokenizer=trained, word=" acknowledged")
    tree = view.tree
    assert tree.root.token == b"".join(trained.id_to_token(i) for i in trained.encode(" acknowledged")
                                       if i == tree.root.id)
    n = len(view.nodes.data["x"])
    assert n == 2 * len(tree.root.token) - 1  # a binary tree over its bytes
    assert len(view.edges.data["x0"]) == n - 1
    assert all(c > 0 for c, r in zip(view.nodes.data["count"], view.nodes.data["rank"]) if r >= 0)
    view.word = "the"
    assert view.tree.root.token == b"the"


def test_replay_slider_resegments(trained, prose):
    text = prose[300000:305000]
    view = MergeReplay(tokenizer=trained, text=text)
    full = view.current.segmentation.n_tokens
    assert view.current.step == len(trained.merges)
    view.step = 0
    assert view.current.segmentation.n_tokens == len(text.encode())
    view.step = 500
    mid = view.current.segmentation.n_tokens
    assert full < mid < len(text.encode())
    assert "merge #499" in view._merge.object and "seen" in view._merge.object
    assert view._marker.location == 500
    assert len(view.timeline.data["count"]) == len(trained.merges)


def test_replay_of_a_loaded_tokenizer_has_no_timeline(gpt2):
    view = MergeReplay(tokenizer=gpt2, text="Hello world")
    assert view.timeline.data["count"] == [] and "No training counts" in view._plot.title.text
    view.step = 10
    assert view.current.merge_count is None and view.current.merge is not None


def test_lab_trains_and_switches_tokenizers():
    from widgets.tokenizers_lab.lab import TokenizersLab

    lab = TokenizersLab()
    before = lab.boundaries.segmentation.n_tokens
    lab.text = "Tokenizers split text into tokens."
    assert lab.boundaries.segmentation.n_tokens == len(load_tokenizer("gpt2").encode(lab.text))
    assert lab.boundaries.segmentation.n_tokens != before
    lab.corpus, lab.vocab_size = "code", 600
    name = lab.train(blocking=True)
    assert name and lab.tokenizer == name and name in lab.param.tokenizer.objects
    assert lab.boundaries.tokenizer.n_vocab == 600
    assert "trained" in lab.status
    lab.compare = "gpt2"
    assert lab.diff.tokenizer_b.name == "gpt2"
    # metrics follow the chosen tokenizers: premium per language, English = 1
    assert set(lab.metrics.tokenizers) == {name, "gpt2"}
    premium = {(r["tokenizer"], r["text"]): r["premium"] for r in lab.parity.rows}
    assert premium[("gpt2", "en")] == 1.0 and premium[("gpt2", "hi")] > 3
    assert "bytes_per_token" in lab._metrics_table.object


def test_metric_charts_render_core_results(prose):
    from widgets.tokenizers_lab.charts import CompressionCurveView, MixtureView, ParityBars
    from workbench.tokenization.compare import compression_curve

    curve = compression_curve({"BPE": train_bpe}, prose[:100000], prose[150000:160000], [300, 600, 1200])
    view = CompressionCurveView(curve=curve)
    assert view.source.data["ys"][0] == curve.bytes_per_token["BPE"]
    assert curve.bytes_per_token["BPE"] == sorted(curve.bytes_per_token["BPE"])  # more merges, more bytes/token
    assert len(view.points.data["x"]) == 3
    rows = [{"tokenizer": t, "language": lang, "premium": p} for t, lang, p in
            [("gpt2", "en", 1.0), ("gpt2", "ru", 3.1), ("smollm2", "en", 1.0), ("smollm2", "ru", 2.2)]]
    bars = ParityBars(rows=rows)
    assert bars.source.data["x"] == [("en", "gpt2"), ("en", "smollm2"), ("ru", "gpt2"), ("ru", "smollm2")]
    assert bars.source.data["value"] == [1.0, 1.0, 3.1, 2.2]
    mix = MixtureView(estimate={"prose": 0.6, "code": 0.4}, truth={"prose": 0.58, "code": 0.42})
    assert mix.source.data["share"] == [0.6, 0.58, 0.4, 0.42]
    mix.truth = None
    assert mix.source.data["kind"] == ["inferred", "inferred"]


def test_lab_measures_both_tokenizers_on_the_corpus_files():
    from pathlib import Path

    from widgets.tokenizers_lab.lab import TokenizersLab
    from workbench.data import load_corpus

    lab = TokenizersLab()
    lab.corpus = "code"
    table = lab.measure_corpus(blocking=True)
    gpt2 = load_tokenizer("gpt2")
    files = [Path(p) for p in load_corpus("code").paths]
    assert table.get("gpt2", "code")["n_tokens"] == sum(len(gpt2.encode_bytes(f.read_bytes())) for f in files)
    assert set(table.tokenizers) == {"gpt2", "smollm2"} and "measured here" in lab._corpus_table.object
    assert "11 files" in lab._corpus_table.object and "measured code" in lab.status
