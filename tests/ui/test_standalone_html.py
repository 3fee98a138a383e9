"""``widget.save("view.html")``: one self-contained file that Debian's Chromium opens from disk, with no server and
every request that would leave the file aborted, and that still answers its embedded controls."""

from __future__ import annotations

import pytest

from tests.ui.test_jupyterlab_browser import CHROMIUM_ARGS, LOADING_ERRORS

pytestmark = [pytest.mark.ui, pytest.mark.model]


def test_a_saved_overview_renders_from_disk_offline_and_answers_its_corpus_select(tmp_path, chromium_path,
                                                                                   default_model):
    from playwright.sync_api import expect, sync_playwright

    from widgets.overview import Overview

    model, tokenizer = default_model
    view = Overview(model, tokenizer)
    path = view.save(tmp_path / "overview.html")
    assert path == tmp_path / "overview.html"
    assert [p.name for p in tmp_path.iterdir()] == ["overview.html"]  # no temporary file left behind

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            blocked: list[str] = []
            console: list[str] = []

            def offline(route):
                if route.request.url.startswith(("file:", "data:", "blob:")):
                    route.continue_()
                else:
                    blocked.append(route.request.url)
                    route.abort()

            page.route("**/*", offline)
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
            page.goto(path.as_uri())

            rows = page.locator("table.wb-topk tbody tr")
            expect(rows).to_have_count(10, timeout=60_000)
            assert rows.first.locator("td").nth(1).inner_text() == "␣Paris"  # the state it was saved in
            assert page.locator("canvas").first.is_visible()  # the probability chart is drawn

            # the corpus select was embedded: another corpus shows its own sample, without Python
            sample = page.locator("pre.wb-sample").first
            before = sample.inner_text()
            page.locator("select").first.select_option("code")
            expect(sample).not_to_have_text(before, timeout=10_000)

            loading = [line for line in console if any(e in line.lower() for e in LOADING_ERRORS)]
            assert not loading, loading
            assert not blocked, f"the saved file asked the network for: {sorted(set(blocked))}"
        finally:
            browser.close()
