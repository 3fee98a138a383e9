"""`workbench kv capture | replay | eval` end to end, and its errors."""

from __future__ import annotations

import json

import pytest

from workbench.cli import main

pytestmark = pytest.mark.model


def test_capture_replay_eval(tmp_path, capsys, kv_text):
    src = tmp_path / "text.txt"
    src.write_text(kv_text[:800], encoding="utf-8")
    out = tmp_path / "t.safetensors"
    assert main(["kv", "capture", str(src), "-o", str(out), "--decode-steps", "8", "--layers", "0,29"]) == 0
    assert out.exists() and "2 layers" in capsys.readouterr().out
    assert main(["kv", "replay", str(out), "--policy", "h2o", "--policy", "oracle", "--budget", "16", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["policy"] for r in rows] == ["h2o", "oracle"] and rows[1]["oracle_iou"] == 1.0
    assert main(["kv", "eval", str(src), "--policy", "window", "--budget", "8", "--decode-steps", "6", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rows[0]["kl"] > 0 and rows[0]["budget"] == 8
    # errors: one line, exit 2, nothing overwritten
    assert main(["kv", "capture", str(src), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["kv", "replay", str(out), "--budget", "0"]) == 2
    assert "at least 1 token" in capsys.readouterr().err
    assert main(["kv", "eval", str(tmp_path / "missing.txt")]) == 2
