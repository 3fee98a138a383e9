"""WorkbenchView: every widget can save itself as one offline HTML file (the browser check is in tests/ui)."""

import html
import importlib
import inspect
import pkgutil
import re

import panel as pn
import param
import pytest

import widgets
from widgets.base import WorkbenchView
from workbench.errors import ConfigurationError


class _Tiny(WorkbenchView):
    word = param.Selector(default="a", objects=["a", "b", "c"])

    def __init__(self, **params):
        super().__init__(**params)
        self._select = pn.widgets.Select(options=["a", "b", "c"], value=self.word)
        self._select.param.watch(lambda e: setattr(self, "word", e.new), "value")
        self._html = pn.pane.HTML("")
        self._show()

    @param.depends("word", watch=True)
    def _show(self):
        self._html.object = f'<p class="shown">{self.word}</p>'

    def __panel__(self):
        return pn.Column(self._select, self._html)


def test_save_writes_one_self_contained_file(tmp_path):
    out = _Tiny().save(tmp_path / "tiny.html")
    text = out.read_text(encoding="utf-8")
    assert out.name == "tiny.html" and [p.name for p in tmp_path.iterdir()] == ["tiny.html"]
    assert "<script" in text
    assert not re.search(r"<(script|link)\b[^>]*\b(src|href)=[\"']https?://", text)  # nothing from a CDN
    assert "data:image/png;base64," in text  # the page icon too
    shown = html.unescape(html.unescape(text))  # the document's JSON sits HTML-escaped in the page
    for word in "abc":  # the saved state and the embedded states of the select
        assert f'class="shown">{word}' in shown


def test_save_never_overwrites_without_asking(tmp_path):
    target = tmp_path / "mine.html"
    target.write_text("keep me", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="overwrite=True"):
        _Tiny().save(target)
    assert target.read_text(encoding="utf-8") == "keep me"
    _Tiny().save(target, overwrite=True, embed=False)
    assert "keep me" not in target.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["view.png", "view"])
def test_save_wants_an_html_name(tmp_path, name):
    with pytest.raises(ConfigurationError, match=r"\.html"):
        _Tiny().save(tmp_path / name)


def test_save_wants_an_existing_folder(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        _Tiny().save(tmp_path / "missing" / "view.html")


def test_every_widget_is_a_workbench_view():
    """So ``widget.save(...)`` works for each of them."""
    viewers = []
    for info in pkgutil.walk_packages(widgets.__path__, "widgets."):
        if info.name == "widgets.dashboard":
            continue
        module = importlib.import_module(info.name)
        viewers += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                    if issubclass(cls, pn.viewable.Viewer) and cls.__module__ == info.name]
    assert len(viewers) >= 15
    plain = [f"{cls.__module__}.{cls.__name__}" for cls in viewers if not issubclass(cls, WorkbenchView)]
    assert not plain, f"derive these from widgets.base.WorkbenchView (it adds .save): {plain}"
