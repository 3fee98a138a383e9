"""The GPU benchmark script runs end to end (on the CPU here: torch without CUDA) and reports identical masks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.model
def test_kvcache_gpu_benchmark_runs_on_a_saved_trace(kv_trace, tmp_path, root):
    path = tmp_path / "trace.safetensors"
    kv_trace.save(path)
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "kvcache_gpu.py"), "--trace", str(path),
                          "--tile", "1", "--repeats", "1"], capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["rows"]) == 32 and result["trace"]["layers"] == kv_trace.n_layers
    assert result["differing_cells"] == 0
    assert all(r["numba_cpu_s"] > 0 and r["torch_s"] > 0 for r in result["rows"])
