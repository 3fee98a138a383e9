"""Dashboard start-up: how long until ``workbench serve`` answers, until the Overview shows its first prediction,
and until every tab is live; on a first run (empty model cache, empty Numba cache) and on a warm start, next to
``panel serve`` of a trivial app as the reference.

* time to HTTP 200: from starting the process to the first 200 on ``/``;
* time to the Overview's first prediction: a headless Chromium (Debian's, driven by Playwright, launched before
  the clock starts) opens the page as soon as the server answers; the clock stops when the top-10 table has rows;
* time until every tab is live: until the server's ``/warmup.json`` says every warm-up job has finished (each tab
  then builds itself within its 250 ms poll).

The first run points ``WORKBENCH_CACHE`` (the converted model) and ``NUMBA_CACHE_DIR`` (compiled kernels) at an
empty temporary directory; the warm start reuses it.

    python benchmarks/startup.py [--quick] [--json]     # --quick: the warm start and the reference only
    # the JSON object is the last line printed; results also go to benchmarks/results/startup[_quick].json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TRIVIAL_APP = 'import panel as pn\npn.pane.Markdown("# hello").servable()\n'


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read() if r.status == 200 else None
    except OSError:
        return None


def _wait_http(url: str, proc, t0: float, limit: float) -> float:
    while time.perf_counter() - t0 < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        if _get(url) is not None:
            return time.perf_counter() - t0
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {limit} s")


def measure(cmd: list[str], url: str, env: dict, browser=None, status_url: str | None = None,
            limit: float = 900.0) -> dict:
    """Start ``cmd``, time the first HTTP 200 on ``url``, then (with ``browser``) the Overview's first prediction
    and (with ``status_url``) the end of the warm-up; stop the server."""
    out: dict = {}
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            out["http_200_s"] = _wait_http(url, proc, t0, limit)
            if browser is not None:
                page = browser.new_page()
                page.goto(url, timeout=limit * 1000)
                page.wait_for_selector("table.wb-topk tbody tr", timeout=limit * 1000)
                out["overview_prediction_s"] = time.perf_counter() - t0
                page.close()
            if status_url is not None:
                while time.perf_counter() - t0 < limit:
                    body = _get(status_url)
                    state = json.loads(body) if body else {}
                    if state.get("all_ready"):
                        out["all_tabs_live_s"] = time.perf_counter() - t0
                        out["jobs_s"] = {k: j["seconds"] for k, j in state["jobs"].items()}
                        out["failed"] = [k for k, j in state["jobs"].items() if j["state"] == "failed"]
                        break
                    time.sleep(0.2)
        except Exception:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-3000:])
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the warm start and the reference only (no first run)")
    ap.add_argument("--json", action="store_true", help="only print the JSON line")
    args = ap.parse_args()
    say = (lambda *a: None) if args.json else print

    browser = pw = None
    if CHROMIUM.exists():
        from playwright.sync_api import sync_playwright

        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    else:
        say("Debian's Chromium is not installed: the Overview's first prediction is not measured")

    results: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                 "platform": platform.platform()}}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        trivial = Path(tmp) / "trivial.py"
        trivial.write_text(TRIVIAL_APP)
        port = _port()
        results["panel_serve_trivial"] = measure(
            [sys.executable, "-m", "panel", "serve", str(trivial), "--port", str(port), "--address", "127.0.0.1"],
            f"http://127.0.0.1:{port}/trivial", env)
        say(f"panel serve of a trivial app: HTTP 200 after {results['panel_serve_trivial']['http_200_s']:.2f} s")

        runs = [("warm", env)]
        if not args.quick:
            cold = dict(env, WORKBENCH_CACHE=str(Path(tmp) / "cache"), NUMBA_CACHE_DIR=str(Path(tmp) / "numba"))
            runs = [("first_run", cold), ("warm_after_first_run", cold)]
        else:
            subprocess.run([sys.executable, "-m", "workbench.cli", "prepare"], cwd=ROOT, env=env, check=True,
                           stdout=subprocess.DEVNULL)   # make sure "warm" is warm
        for label, run_env in runs:
            port = _port()
            url = f"http://127.0.0.1:{port}/"
            r = measure([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--address", "127.0.0.1"],
                        url, run_env, browser, f"{url}warmup.json")
            results[label] = r
            say(f"workbench serve, {label}: HTTP 200 after {r['http_200_s']:.2f} s, Overview's first prediction "
                f"after {r.get('overview_prediction_s', float('nan')):.1f} s, every tab live after "
                f"{r.get('all_tabs_live_s', float('nan')):.1f} s; jobs {r.get('jobs_s')}")
    if browser is not None:
        browser.close()
        pw.stop()
    out = ROOT / "benchmarks" / "results" / ("startup_quick.json" if args.quick else "startup.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
