"""The notebooks in a real JupyterLab, offline: Debian's Chromium (driven by Playwright) with every request that does
not go to the loopback JupyterLab aborted, so a widget that needs a CDN stays empty and fails the test.

For each notebook: open it, Run All, wait for the kernel, check that every Panel output rendered and that the console
shows no Panel/Bokeh loading error, then change one control of a live widget and check that the view follows (a round
trip through the comm to the running kernel). ``00_welcome`` runs in CI; the heavier notebooks are ``slow``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.ui, pytest.mark.model]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PANEL_MIME = "application/vnd.holoviews_exec.v0+json"
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
# console lines that mean BokehJS or Panel's JavaScript did not load or a view failed to render
LOADING_ERRORS = ("panel: error", "bokeh or panel library is missing", "bokehjs is not loaded", "error rendering bokeh",
                  "bokeh: error", "failed to load", "unable to run panel")

# JupyterLab user settings for the run: every cell attached to the DOM (so the test sees all outputs), no news or
# update checks (they would ask the internet)
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


def _expected_views(path: Path) -> int:
    """How many cells of the repository's notebook end by displaying a Panel view, from its saved outputs."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return sum(1 for cell in nb["cells"] if cell["cell_type"] == "code" and any(
        out.get("output_type") == "execute_result" and PANEL_MIME in out.get("data", {})
        for out in cell.get("outputs", [])))


def _copy_without_outputs(src: Path, dst: Path) -> None:
    """The notebook as a user would run it, minus saved outputs (they are not the code under test)."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    dst.write_text(json.dumps(nb, indent=1), encoding="utf-8")


@contextlib.contextmanager
def _jupyterlab(notebooks: list[Path], disabled_extensions: tuple[str, ...] = (), env: dict[str, str] | None = None):
    """A JupyterLab on 127.0.0.1 with a token, private config/runtime/settings dirs and copies of ``notebooks``
    (``disabled_extensions``: JupyterLab extensions switched off in that config; ``env``: more environment for the
    server and its kernels); yields ``(base_url, token)``."""
    with tempfile.TemporaryDirectory(prefix="wb-jlab-") as tmp:
        tmp = Path(tmp)
        work = tmp / "notebooks"
        work.mkdir()
        for nb in notebooks:
            _copy_without_outputs(nb, work / nb.name)
        settings = tmp / "lab-settings"
        for rel, value in LAB_SETTINGS.items():
            (settings / rel).parent.mkdir(parents=True, exist_ok=True)
            (settings / rel).write_text(json.dumps(value), encoding="utf-8")
        if disabled_extensions:
            (tmp / "config" / "labconfig").mkdir(parents=True)
            (tmp / "config" / "labconfig" / "page_config.json").write_text(
                json.dumps({"disabledExtensions": {name: True for name in disabled_extensions}}), encoding="utf-8")
        port, token = free_port(), secrets.token_hex(16)
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
               "IPYTHONDIR": str(tmp / "ipython"), "BOKEH_PY_LOG_LEVEL": "warning", **(env or {})}
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={work}", "--LabApp.news_url=",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly", "--allow-root"]
        log = (tmp / "jupyter.log").open("w+")
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 120
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise AssertionError(f"jupyter lab exited early:\n{log.read()}")
                try:
                    with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    if time.time() > deadline:
                        raise AssertionError("jupyter lab did not answer within 120 s") from None
                    time.sleep(0.5)
            yield base, token
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


class Interaction:
    """One control of a live widget: in the code cell whose source contains ``cell``, fill ``control`` with ``value``
    (then press ``key``) and expect the text of ``watch`` to change (and to contain ``expect``, if given).
    ``nudge`` is another valid value, set before ``value`` again if the first try shows nothing (see
    :func:`_change_control`)."""

    def __init__(self, cell: str, control: str, value: str, nudge: str, key: str, watch: str,
                 expect: str | None = None):
        self.cell, self.control, self.value, self.nudge = cell, control, value, nudge
        self.key, self.watch, self.expect = key, watch, expect


NOTEBOOKS = {
    # the Overview's text box: SmolLM2's top-10 table follows the text
    "00_welcome.ipynb": Interaction("overview = Overview(", ".wb-prompt textarea", "Once upon a", "Once upon", "End",
                                    "table.wb-topk tbody tr td:nth-child(2)", "␣time"),
    # the merge tree of another word
    "01_tokenization.ipynb": Interaction("tree = MergeTree(", "input[type=text]", " prejudice", " pride", "Enter",
                                         ".wb-stats", "prejudice"),
    # ExpertLoad's capacity factor: the capacity line moves. Tab, not Enter: in JupyterLab's command mode Enter on a
    # numeric input inside a view does not commit it (the value goes to the kernel when the input loses focus)
    "02_moe_routing.ipynb": Interaction("load = ExpertLoad(", ".wb-moe-cf input", "0.5", "0.75", "Tab",
                                        ".wb-moe-capacity"),
    # BuilderCompare's budget box (beside its slider): both trees are re-planned for 32 draft nodes
    "03_speculative_decoding.ipynb": Interaction("BuilderCompare(acceptance=", ".wb-spec-budget input", "32", "24",
                                                 "Tab", ".wb-spec-compare", "Budget 32"),
    # RetentionMap's budget: the policy is replayed with 16 tokens per KV head
    "04_kv_cache.ipynb": Interaction("RetentionMap(trace=trace", ".wb-kv-budget input", "16", "32", "Tab",
                                     ".wb-kv-summary", "budget 16"),
}
CI_NOTEBOOKS = {"00_welcome.ipynb"}  # the others take minutes each on 2 cores: `slow`


def _params():
    for name in sorted(NOTEBOOKS):
        marks = [] if name in CI_NOTEBOOKS else [pytest.mark.slow]
        yield pytest.param(name, marks=marks, id=name.removesuffix(".ipynb"))


def test_every_notebook_has_a_browser_check(root):
    assert {p.name for p in (root / "notebooks").glob("*.ipynb")} == set(NOTEBOOKS)


def test_a_cjk_font_is_installed_for_the_browser():
    """Chinese and Japanese text (the parallel corpus, the multilingual views) renders as boxes without one."""
    try:
        out = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        pytest.fail("fontconfig's fc-list is missing; scripts/setup.sh --tests installs Chromium and its fonts")
    assert out.strip(), "no CJK font for Chromium: apt-get install fonts-noto-cjk (scripts/setup.sh --tests does)"


_STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
_RUN_STATE = """() => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim());
  if (!prompts.length || prompts.some(t => t.includes('*'))) return false;
  if (document.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
      && [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
         .some(e => e.textContent.includes('Traceback'))) return 'error';
  return prompts.every(t => /^\\[\\d+\\]:$/.test(t)) ? 'done' : false;
}"""

# every Panel view a cell ends with: its Bokeh root, and how much of it was drawn
_VIEWS = """() => [...document.querySelectorAll('.jp-OutputArea-executeResult [data-root-id]')].map(root => {
  const box = root.getBoundingClientRect();
  const first = root.firstElementChild;
  const drawn = first ? first.getBoundingClientRect() : {height: 0, width: 0};
  return {id: root.dataset.rootId, children: root.childElementCount, height: Math.max(box.height, drawn.height),
          width: Math.max(box.width, drawn.width), shadow: !!(first && first.shadowRoot)};
})"""


def _offline_page(browser):
    """A page whose requests to anything but loopback are aborted (and listed), and whose console is recorded."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    blocked: list[str] = []
    console: list[str] = []

    def offline(route):
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urllib.parse.urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    page.route("**/*", offline)
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    return page, blocked, console


def _raise_on_error(page, name: str, state: str) -> None:
    if state == "error":
        tracebacks = page.locator(_STDERR)
        raise AssertionError(f"{name} raised:\n" + "\n".join(tracebacks.all_inner_texts())[-4000:])
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)


def _loading_errors(console: list[str]) -> list[str]:
    return [line for line in console if any(e in line.lower() for e in LOADING_ERRORS)]


def _run_all(page, timeout_ms: int) -> str:
    """Run All from the menu once the kernel is idle (a click before it is ready runs nothing, so retry)."""
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    page.wait_for_function(
        "() => /\\| Idle/.test(document.querySelector('.jp-StatusBar-Widget')?.parentElement?.textContent || '')",
        timeout=120_000)
    for _ in range(5):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            page.wait_for_function("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
                                   ".some(e => /\\[[*0-9]/.test(e.textContent))", timeout=10_000)
            break
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: nothing started, click again
            continue
    else:
        raise AssertionError("Run All Cells started nothing")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return page.wait_for_function(_RUN_STATE, timeout=timeout_ms, polling=1000).json_value()
    except PlaywrightTimeout:
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        raise AssertionError(f"the notebook did not finish within {timeout_ms / 1000:.0f} s; prompts: {prompts}; "
                             f"stderr: {page.locator(_STDERR).all_inner_texts()[-3:]}") from None


def _change_control(control, watched, before: str, interaction: Interaction) -> None:
    """Set the control and wait for the view to change.

    Panel's notebook comm (``panel/models/comm_manager.ts``) sends a view's changes one message at a time and holds
    later ones until the kernel acknowledges the last, or for 5 s; a view's very first message can go out before its
    comm is open and is never acknowledged, so a single change made in the first seconds after Run All can sit in
    that queue. A second change after the 5 s let it through, as a user's next keystroke would."""
    from playwright.sync_api import expect

    control.scroll_into_view_if_needed()
    for attempt in range(3):
        if attempt:
            control.fill(interaction.nudge)
            control.press(interaction.key)
        control.fill(interaction.value)
        control.press(interaction.key)
        try:
            expect(watched).not_to_have_text(before, timeout=15_000)
            return
        except AssertionError:
            continue
    raise AssertionError(f"{interaction.watch} still reads {before!r} after setting {interaction.control} to "
                         f"{interaction.value!r} three times: the kernel did not answer")


@pytest.mark.parametrize("name", list(_params()))
def test_notebook_renders_offline_and_its_widgets_talk_to_the_kernel(name, root, chromium_path, default_model):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    source = root / "notebooks" / name
    interaction = NOTEBOOKS[name]
    expected_views = _expected_views(source)  # 0 if the repository's copy was saved without outputs
    with _jupyterlab([source]) as (base, token), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            page, blocked, console = _offline_page(browser)
            page.goto(f"{base}/lab/tree/{name}?token={token}", timeout=120_000)
            _raise_on_error(page, name, _run_all(page, timeout_ms=1_800_000))

            # every view a cell ends with is drawn by BokehJS: a root element with a rendered, non-empty child
            try:
                page.wait_for_function(
                    f"() => ({_VIEWS})().filter(v => v.height > 20).length >= {max(expected_views, 1)}",
                    timeout=60_000)
            except PlaywrightTimeout:
                raise AssertionError(
                    f"{name}: {expected_views} Panel views expected, drawn: {page.evaluate(_VIEWS)}; requests that "
                    f"left the machine: {sorted(set(blocked))}; console: {_loading_errors(console)}") from None
            views = page.evaluate(_VIEWS)
            assert not expected_views or len(views) == expected_views, views
            empty = [v for v in views if not (v["children"] and v["height"] > 20 and v["width"] > 20)]
            assert not empty, f"views that did not render: {empty}"

            # a live widget: change one control, the kernel recomputes, the view follows
            cell = page.locator(".jp-CodeCell").filter(has=page.locator(".cm-content", has_text=interaction.cell))
            expect(cell).to_have_count(1)
            watched = cell.locator(interaction.watch).first
            expect(watched).to_be_visible(timeout=30_000)
            before = watched.inner_text()
            _change_control(cell.locator(interaction.control).first, watched, before, interaction)
            if interaction.expect:
                expect(watched).to_contain_text(interaction.expect, timeout=30_000)

            assert not _loading_errors(console), _loading_errors(console)
            assert not blocked, f"the notebook asked the internet for: {sorted(set(blocked))}"
        finally:
            browser.close()


IPYWIDGETS_NOTEBOOK = """import panel as pn

from widgets.overview import Overview

pn.extension(inline=True)
Overview()"""


def test_without_the_pyviz_extension_views_render_through_ipywidgets(tmp_path, chromium_path, default_model):
    """VS Code, Colab and other ipywidgets-only front ends: Panel sees VS Code's environment (``VSCODE_PID``) and
    renders through jupyter_bokeh's ipywidget. JupyterLab with its pyviz extension switched off stands in for such a
    front end: the view still renders offline and still talks to the kernel."""
    import nbformat
    from playwright.sync_api import expect, sync_playwright

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(IPYWIDGETS_NOTEBOOK)]
    source = tmp_path / "ipywidgets.ipynb"
    nbformat.write(nb, source)
    with _jupyterlab([source], disabled_extensions=("@pyviz/jupyterlab_pyviz",), env={"VSCODE_PID": "1"}) as (
            base, token), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            page, blocked, console = _offline_page(browser)
            page.goto(f"{base}/lab/tree/{source.name}?token={token}", timeout=120_000)
            _raise_on_error(page, source.name, _run_all(page, timeout_ms=300_000))
            # the view lives in the output that the ipywidgets manager rendered (a Lumino panel), not in HTML
            rows = page.locator(".jp-OutputArea-output.lm-Panel table.wb-topk tbody tr")
            expect(rows).to_have_count(10, timeout=60_000)
            assert rows.first.locator("td").nth(1).inner_text() == "␣Paris"
            first_token = rows.first.locator("td").nth(1)
            _change_control(page.locator(".wb-prompt textarea").first, first_token, "␣Paris",
                            NOTEBOOKS["00_welcome.ipynb"])
            expect(first_token).to_have_text("␣time", timeout=30_000)
            assert not _loading_errors(console), _loading_errors(console)
            assert not blocked, f"the notebook asked the internet for: {sorted(set(blocked))}"
        finally:
            browser.close()
