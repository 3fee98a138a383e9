"""KV-cache replay on a GPU: the torch path on CUDA vs the numba kernels on one CPU core, every policy at budgets
25% and 256, with the masks compared cell by cell.

A GPU machine usually cannot capture the trace (no model files there), so this takes a saved `KVTrace`
(``--trace``, e.g. two layers of the 4096-token benchmark trace, small enough to copy over) and can stack its
layers ``--tile`` times to reach the benchmark's 30 layers. Times are medians of 3 after a warm-up; the torch
times include moving the trace's float32 layers to the GPU and the kept mask back (that is what `replay` returns).

    python benchmarks/kvcache_gpu.py --trace bench_2layers.safetensors --tile 15   # JSON is the last line

Without CUDA it still runs (torch on the CPU), which is how it is tested.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from _threads import limit_threads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tiled(trace, times: int):
    """``trace`` with its layers stacked ``times`` times (layer ids 0..L*times-1): the same data, more layers."""
    import numpy as np

    def tile(a):
        return np.concatenate([a] * times)

    return replace(trace, layers=np.arange(trace.n_layers * times), keys=tile(trace.keys),
                   values=tile(trace.values), queries=tile(trace.queries), attn=tile(trace.attn),
                   prefill_colsum=tile(trace.prefill_colsum), obs_attn=tile(trace.obs_attn),
                   obs_votes_heads=tile(trace.obs_votes_heads),
                   attn_heads=None if trace.attn_heads is None else tile(trace.attn_heads), _cache={})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trace", required=True, help="a KVTrace saved with KVTrace.save")
    parser.add_argument("--tile", type=int, default=1, help="stack the trace's layers this many times")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    limit_threads(1)
    import numpy as np
    import torch

    from workbench.kvcache import POLICY_NAMES, KVTrace, replay

    trace = tiled(KVTrace.load(args.trace), args.tile)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (no CUDA)"
    print(f"{trace!r} on {device}", flush=True)

    def timed(backend, name, budget):
        times = []
        for _ in range(args.repeats):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t = time.perf_counter()
            replay(trace, name, budget, metrics=False, backend=backend)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    rows = []
    for budget in (0.25, 256):
        for name in POLICY_NAMES:
            a = replay(trace, name, budget, metrics=False, backend="numba").kept
            b = replay(trace, name, budget, metrics=False, backend="torch").kept
            row = {"policy": name, "budget": budget, "numba_cpu_s": round(timed("numba", name, budget), 4),
                   "torch_s": round(timed("torch", name, budget), 4), "differing_cells": int(np.count_nonzero(a != b))}
            rows.append(row)
            print(row, flush=True)
    total = {k: round(sum(r[k] for r in rows), 3) for k in ("numba_cpu_s", "torch_s")}
    print(json.dumps({"benchmark": "kvcache_gpu", "device": device, "torch": torch.__version__,
                      "trace": {"tokens": trace.n_tokens, "layers": trace.n_layers, "tile": args.tile},
                      "rows": rows, "total": total, "differing_cells": sum(r["differing_cells"] for r in rows)}))


if __name__ == "__main__":
    main()
