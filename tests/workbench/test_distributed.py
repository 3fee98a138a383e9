"""`workbench.distributed`: a clear message without the extra, one line for an unreachable scheduler, and the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workbench.errors import DistributedError


def test_without_the_extra_the_message_names_it(monkeypatch):
    from workbench.distributed import connect
    from workbench.tokenization import train_bpe

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(DistributedError, match=r"token-workbench\[distributed\]"):
        connect("tcp://127.0.0.1:8786")
    with pytest.raises(DistributedError, match=r"token-workbench\[distributed\]"):
        train_bpe(["some text"], 260, client=object())
    # and nothing single-machine needs it
    assert train_bpe(["some text, some more text"], 260).merges


def test_an_unreachable_scheduler_is_one_line():
    pytest.importorskip("distributed")
    from workbench.distributed import connect

    with pytest.raises(DistributedError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9") as err:
        connect("tcp://127.0.0.1:9", timeout=1)
    assert "\n" not in str(err.value)
    with pytest.raises(DistributedError, match="either"):
        connect()


def test_cli_scheduler_flag_fails_in_one_line(tmp_path):
    pytest.importorskip("distributed")
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "bpe", "train", "code", "--vocab-size", "300",
                          "--scheduler", "tcp://127.0.0.1:9", "-o", str(tmp_path / "t.json"), "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "cannot reach the Dask scheduler" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_dashboard_header_links_the_connected_clusters_dashboard():
    pytest.importorskip("distributed")
    from widgets.dashboard import _cluster_line
    from workbench.distributed import cluster_summary, connect, current_client

    assert current_client() is None and _cluster_line() == ""
    client = connect(workers=1)
    try:
        assert current_client() is client
        line = _cluster_line()
        assert "Dask cluster of 1 workers" in line and f"[Dask dashboard]({client.dashboard_link})" in line
        assert cluster_summary(client) == f"Dask cluster: 1 worker, dashboard {client.dashboard_link}"
    finally:
        client.close()
    assert current_client() is None
