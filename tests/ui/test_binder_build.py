"""The Binder environment built the way repo2docker builds it, without Docker: a fresh virtual environment from
``binder/requirements.txt``, then ``binder/postBuild`` with a temporary ``HOME``; JupyterLab started from it, and the
launcher entry's URL (jupyter-server-proxy) opens the dashboard.

Outside CI (``slow``: the environment takes minutes to build). One deliberate difference from mybinder.org: the
requirements' ``--extra-index-url https://download.pytorch.org/whl/cpu`` line is dropped, since this machine reaches
PyPI only; pip's configured local wheel directory supplies the same ``torch==2.13.0+cpu``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.ui, pytest.mark.slow, pytest.mark.model]


def _run(cmd, env, cwd, timeout):
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _get(url: str, timeout: float = 30.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def test_binder_environment_serves_the_dashboard_through_the_launcher(root, tmp_path):
    home, venv = tmp_path / "home", tmp_path / "venv"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(HOME=str(home), PATH=f"{venv / 'bin'}:{env['PATH']}", PIP_DISABLE_PIP_VERSION_CHECK="1")
    # keep the model cache of this machine out of it: postBuild must convert the model itself
    env["WORKBENCH_CACHE"] = str(home / ".cache" / "token-workbench")
    _run([sys.executable, "-m", "venv", str(venv)], env, root, 120)
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("".join(line for line in (root / "binder" / "requirements.txt").read_text().splitlines(True)
                            if not line.startswith("--extra-index-url")))
    _run([str(venv / "bin" / "pip"), "install", "-q", "-r", str(reqs)], env, root, 1800)
    _run(["bash", str(root / "binder" / "postBuild")], env, root, 1800)
    config = json.loads((home / ".jupyter" / "jupyter_server_config.json").read_text())
    assert config["ServerProxy"]["servers"]["workbench"]["launcher_entry"]["title"] == "Token Workbench"

    port, token = free_port(), secrets.token_hex(16)
    log = (tmp_path / "lab.log").open("w")
    # --allow-root: repo2docker runs JupyterLab as a user; this test may run as root
    lab = subprocess.Popen([str(venv / "bin" / "jupyter"), "lab", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
                            "--port", str(port), f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
                           env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline and _get(f"{base}/api/status?token={token}")[0] != 200:
            assert lab.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            time.sleep(0.5)
        # the launcher lists the entry (jupyter-server-proxy's API) ...
        status, body = _get(f"{base}/server-proxy/servers-info?token={token}")
        assert status == 200 and "Token Workbench" in body, body[:500]
        # ... and its URL starts `workbench serve` behind the proxy and shows the dashboard
        page, deadline = (0, ""), time.time() + 300
        while time.time() < deadline:
            page = _get(f"{base}/workbench/?token={token}", timeout=200)
            if page[0] == 200:
                break
            time.sleep(1)
        assert page[0] == 200, (tmp_path / "lab.log").read_text()[-3000:]
        assert "Token Workbench" in page[1]
    finally:
        lab.terminate()
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            lab.kill()
        log.close()
