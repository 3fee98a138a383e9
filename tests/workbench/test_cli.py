import importlib.metadata
import json
import shutil
import socket
import subprocess
import sys

import pytest

from workbench.cli import main


def run_cli(*args, timeout=300):
    exe = shutil.which("workbench") or sys.executable
    cmd = [exe, *args] if exe.endswith("workbench") else [exe, "-m", "workbench.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_console_script_is_installed():
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("workbench") == "workbench.cli:main"


def test_info_json_is_truthful(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    proc = run_cli("info", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["cache"] == str(tmp_path / "cache")
    assert report["versions"]["numba"] == importlib.metadata.version("numba")
    assert report["versions"]["torch"] == importlib.metadata.version("torch")
    import torch

    assert report["cuda"]["torch"] == torch.cuda.is_available()
    assert report["numba_threading_layer"] in {"tbb", "omp", "workqueue"}
    model = report["model"]
    assert model["installed"] is True and model["gguf"].endswith(".gguf")
    assert model["converted"] is False  # the fresh cache directory holds no conversion
    assert model["converted_path"].startswith(str(tmp_path / "cache"))


def test_info_text_mentions_every_section():
    proc = run_cli("info")
    assert proc.returncode == 0, proc.stderr
    for needle in ("numba threading layer:", "CUDA:", "default model:", "cache directory:", "torch 2."):
        assert needle in proc.stdout


def test_serve_on_a_port_in_use_is_a_clear_error(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = main(["serve", "--port", str(port), "--address", "127.0.0.1"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"Port {port}" in err and "already in use" in err and "--port" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("args, needle", [
    (["serve", "--port", "70000"], "out of range"),
    (["serve", "--address", "no-such-host.invalid"], "Cannot listen on address"),
])
def test_serve_bad_arguments(args, needle, capsys):
    assert main(args) == 2
    assert needle in capsys.readouterr().err


def test_unknown_command_is_an_argparse_error():
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
