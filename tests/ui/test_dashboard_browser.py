"""The served dashboard in a real browser: Debian's Chromium driven by Playwright (never a downloaded browser)."""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.ui, pytest.mark.model]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _wait_for_http(url: str, proc: subprocess.Popen, log, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"server exited early:\n{log.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"server at {url} did not answer within {timeout} s")


@contextlib.contextmanager
def _serving(cmd: list[str], url: str, cwd):
    """Run a dashboard server until the block ends; yields ``url`` once it answers."""
    # the server's output goes to a file: an undrained pipe could fill up and stall the server
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "BOKEH_PY_LOG_LEVEL": "warning"})
    try:
        _wait_for_http(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _workbench_serve(port: int) -> list[str]:
    return [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--address", "127.0.0.1"]


@pytest.fixture(params=["workbench-serve", "panel-serve"])
def served_dashboard(request, root, default_model):
    port = free_port()
    if request.param == "workbench-serve":
        cmd, path = _workbench_serve(port), "/"
    else:
        cmd = [sys.executable, "-m", "panel", "serve", str(root / "widgets" / "dashboard.py"), "--port", str(port),
               "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}"]
        path = "/dashboard"
    with _serving(cmd, f"http://127.0.0.1:{port}{path}", root) as url:
        yield url


def _first_token(page) -> str:
    return page.locator("table.wb-topk tbody tr").first.locator("td").nth(1).inner_text()


def test_typing_into_the_overview_changes_the_probability_table(served_dashboard, chromium_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(served_dashboard, timeout=120_000)
            page.wait_for_selector("table.wb-topk tbody tr", timeout=120_000)
            assert page.locator("table.wb-topk tbody tr").count() == 10
            assert _first_token(page) == "␣Paris"
            assert page.get_by_text("Overview").first.is_visible()
            box = page.locator("textarea").first
            box.fill("Once upon a")
            box.press("End")  # value_input fires on input events
            # Panel renders into shadow roots; Playwright locators pierce them (document.querySelector does not).
            first_cell = page.locator("table.wb-topk tbody tr").first.locator("td").nth(1)
            expect(first_cell).not_to_have_text("␣Paris", timeout=60_000)
            assert _first_token(page) == "␣time"
        finally:
            browser.close()


@pytest.fixture(scope="module")
def workbench_server(root):
    port = free_port()
    with _serving(_workbench_serve(port), f"http://127.0.0.1:{port}/", root) as url:
        yield url


def test_tokenizers_tab_counts_tokens_as_you_type(workbench_server, chromium_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(workbench_server, timeout=120_000)
            page.get_by_text("Tokenizers", exact=True).first.click()
            count = page.locator(".wb-count").first
            expect(count).to_be_visible(timeout=60_000)
            before = count.inner_text()
            box = page.locator(".wb-tok-text textarea").first
            box.fill("Hello world")
            box.press("End")
            expect(count).to_have_text("2", timeout=30_000)  # GPT-2: 'Hello', ' world'
            assert before != "2"
            box.fill("Hello world, hello tokens")
            box.press("End")
            expect(count).to_have_text("5", timeout=30_000)  # Hello, world, ",", hello, tokens
            page.get_by_text("Merge tree", exact=True).first.click()
            expect(page.get_by_text("merge #", exact=False).first).to_be_visible(timeout=30_000)
            page.get_by_text("Metrics", exact=True).first.click()   # both tokenizers on the trainer's corpus files
            page.locator(".wb-tok-measure button").first.click()
            expect(page.locator(".wb-tok-corpus-metrics").first).to_contain_text("measured here", timeout=60_000)
            expect(page.locator(".wb-tok-corpus-metrics").first).to_contain_text("bytes_per_token")
        finally:
            browser.close()


def test_kv_cache_tab_replays_when_the_budget_changes(workbench_server, chromium_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(workbench_server, timeout=120_000)
            page.get_by_text("KV cache", exact=True).first.click()
            kept = page.locator(".wb-kv-kept").first
            expect(kept).to_have_text("64.0", timeout=60_000)  # H2O keeps the default budget of 64 tokens
            expect(page.locator(".wb-kv-summary").first).to_contain_text("budget 64")
            assert page.locator("canvas").first.is_visible()  # the retention map is drawn
            mass_before = page.locator(".wb-kv-mass").first.inner_text()
            budget = page.locator(".wb-kv-budget input").first
            budget.fill("16")
            budget.press("Enter")
            expect(kept).to_have_text("16.0", timeout=30_000)
            expect(page.locator(".wb-kv-summary").first).to_contain_text("budget 16")
            assert page.locator(".wb-kv-mass").first.inner_text() != mass_before  # less attention kept
            page.get_by_text("Evicted text", exact=True).first.click()
            expect(page.locator(".wb-kv-nkept").first).to_have_text("16", timeout=30_000)
            heavy = page.locator(".wb-kv-heavy")  # H2O's ten highest-scored positions, by its own scores
            expect(heavy).to_have_count(10)
            assert "H2O score" in heavy.first.get_attribute("title")
        finally:
            browser.close()


def check_moe_tab(page, trace) -> None:
    """Open the "MoE routing" tab on ``page`` (the dashboard, showing ``trace``) and check that the load view follows
    the capacity factor and the router."""
    from playwright.sync_api import expect

    from workbench.routing import capacity_for

    k = trace.meta.get("top_k") if isinstance(trace.meta.get("top_k"), int) else 2  # the lab starts at the model's k

    def capacity(cf: float) -> str:
        return str(capacity_for(trace.n_tokens, trace.n_experts, k, cf))

    page.get_by_text("MoE routing", exact=True).first.click()
    expect(page.locator(".wb-moe-heat-summary").first).to_contain_text("capacity_topk", timeout=60_000)
    assert page.locator(".wb-moe-tok").count() == trace.n_tokens  # the coloured text
    page.get_by_text("Load & balance", exact=True).first.click()
    cap = page.locator(".wb-moe-capacity").first
    expect(cap).to_have_text(capacity(1.25), timeout=30_000)  # the default capacity factor
    dropped = page.locator(".wb-moe-dropped-slots").first
    before = int(dropped.inner_text())
    assert page.locator(".wb-moe-metrics").first.is_visible()
    cf = page.locator(".wb-moe-cf input").first
    cf.fill("0.5")
    cf.press("Enter")
    expect(cap).to_have_text(capacity(0.5), timeout=30_000)
    assert int(dropped.inner_text()) > before  # half the capacity drops more slots
    expect(page.locator(".wb-moe-m-drop_rate").first).not_to_have_text("0.00%")
    page.locator(".wb-moe-router select").first.select_option("topk_softmax")
    expect(cap).to_have_text("none", timeout=30_000)  # no capacity, nothing dropped
    expect(dropped).to_have_text("0")
    expect(page.locator(".wb-moe-m-drop_rate").first).to_have_text("0.00%")


@pytest.fixture(scope="module")
def moe_trace():
    """What the server's MoE tab shows: the tiny MoE model over the shipped excerpts (before the server starts, so a
    missing model fails at once with the message that says so)."""
    from widgets.moe_lab.lab import default_trace

    return default_trace()


def test_moe_routing_tab_follows_the_capacity_factor_and_the_router(moe_trace, workbench_server, chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(workbench_server, timeout=120_000)
            check_moe_tab(page, moe_trace)
        finally:
            browser.close()


# the (state, token) columns of every drawn tree in the page's Bokeh document
TREE_DATA_JS = """() => {
  const out = [];
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      const d = m.data;
      if (d && d.state !== undefined && d.label !== undefined) {
        out.push(JSON.stringify([Array.from(d.state), Array.from(d.token)]));
      }
    }
  }
  return out.sort();
}"""


def test_speculative_tab_draws_the_first_step_and_the_slider_moves_the_path(workbench_server, chromium_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(workbench_server, timeout=120_000)
            page.get_by_text("Speculative decoding", exact=True).first.click()
            summary = page.locator(".wb-spec-summary").filter(has_text="step 1 of").first
            expect(summary).to_be_visible(timeout=120_000)          # the default decode landed, step 1 drawn
            assert page.locator(".wb-spec-run").first.inner_text().count("tokens in") == 1
            assert page.locator("canvas").first.is_visible()           # the tree is drawn
            drawn = page.evaluate(TREE_DATA_JS)
            assert any("accepted" in d or "rejected" in d for d in drawn)
            handle = page.locator(".wb-spec-step .noUi-handle").first
            handle.focus()
            handle.press("ArrowRight")                                 # step 2
            moved = page.locator(".wb-spec-summary").filter(has_text="step 2 of").first
            expect(moved).to_be_visible(timeout=30_000)
            page.wait_for_function(f"() => ({TREE_DATA_JS})().join() !== {json.dumps(','.join(drawn))}",
                                   timeout=30_000)                     # the drawn tree and its path changed
            page.get_by_text("Builders side by side", exact=True).first.click()
            expect(page.locator(".wb-spec-compare").first).to_contain_text("Budget", timeout=30_000)
            page.get_by_text("Drafters across prompts", exact=True).first.click()
            expect(page.locator(".wb-spec-sweep button").first).to_be_visible(timeout=30_000)
        finally:
            browser.close()
