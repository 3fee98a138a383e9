"""KV-cache policy replay: the numba kernels (`workbench.kvcache.kernels`) vs the straightforward torch
implementation (`workbench.kvcache.torch_replay`, the CUDA path), on the CPU.

a) Replay of every policy (defaults) over a real SmolLM2 trace of 4096 tokens = 3968 context + 128 decode steps,
   all 30 layers x 3 KV heads (prose: Pride and Prejudice), at a budget of 25% of the context and at 256 tokens:
   `replay(trace, policy, budget, metrics=False, backend=...)`, median of 3 after one warm-up, per policy and in
   total (the target: numba >= 5x faster than torch over all policies). The masks of both backends are compared
   cell by cell. Both backends call the same numpy helpers (`workbench.kvcache.scores`) for the eviction
   policies' prefill scores and FASA's calibration; their time is measured on its own ("shared scores") so that
   the totals can also be read without it. The q . k products, softmaxes, aggregation and top-k are each
   backend's own (numba: a BLAS product for TokenSelect, register-tiled in-order FMA kernels for FASA and HISA,
   fused softmax/top-k kernels; torch: ``torch.matmul`` and tensor ops). Numba with the
   per-step metrics (`metrics=True`) is timed once per policy. The trace is captured once and cached as safetensors under
   ``<cache_dir>/kvcache_bench/`` (capturing 4k tokens takes about a minute on a 2-core CPU).
b) One decode step at 32,768 positions for one layer (3 KV heads), synthetic float32 scores: selection
   (`kernels.select_heads` with S = 1 vs `torch_replay.valid_top_mask`, and bare `torch.topk` as a floor) and eviction
   (`kernels.evict_heads` for one step vs `torch_replay.evict_lowest` + `update_scores`), in microseconds.

    python benchmarks/kvcache.py [--quick] [--json] [--threads N]   # the JSON object is the last line printed

``--quick``: a 1024-token trace (32 decode steps), budgets 25% and 64, fewer step repetitions. ``--threads``
(default 1) sizes every thread pool (torch's OpenMP, numba, OpenBLAS, MKL): on the shared 2-core reference machine
two-thread pools oversubscribe the cores (a small batched numpy matmul then takes ~100x longer), so the default
compares single-threaded numba with single-threaded torch; ``--threads 0`` keeps the libraries' defaults.
Results also go to benchmarks/results/kvcache.json (kvcache_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from _output import emit, quiet_if
from _threads import limit_threads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _text_with_tokens(runner, text: str, n_tokens: int) -> str:
    """The shortest prefix of ``text`` that the model's tokenizer splits into exactly ``n_tokens`` tokens."""

    def count(c: int) -> int:
        return len(runner.tokenizer(text[:c], add_special_tokens=False)["input_ids"])

    lo, hi = n_tokens, len(text)
    if count(hi) < n_tokens:
        raise SystemExit(f"the prose corpus has fewer than {n_tokens} tokens")
    while lo < hi:
        mid = (lo + hi) // 2
        if count(mid) < n_tokens:
            lo = mid + 1
        else:
            hi = mid
    for c in range(lo, lo + 64):
        if count(c) == n_tokens:
            return text[:c]
    raise SystemExit(f"no prefix of the prose corpus has exactly {n_tokens} tokens")


def bench_trace(n_tokens: int, steps: int):
    """The cached benchmark trace (captured and saved on first use); returns (trace, capture seconds or None)."""
    from workbench.data import load_corpus
    from workbench.kvcache import KVTrace, capture, default_capture_runner
    from workbench.paths import cache_dir

    folder = cache_dir() / "kvcache_bench"
    path = folder / f"smollm2_prose_en_{n_tokens}tok_{steps}steps.safetensors"
    if path.is_file():
        trace = KVTrace.load(path)
        if trace.attn_heads is not None:
            return trace, None
        path.unlink()  # saved before traces carried attn_heads (the layer-wide TOVA needs them): capture again
    folder.mkdir(parents=True, exist_ok=True)
    runner = default_capture_runner()
    text = _text_with_tokens(runner, load_corpus("prose_en").paths[0].read_text(encoding="utf-8"), n_tokens)
    t = time.perf_counter()
    trace = capture(text, runner, prefill=n_tokens - steps)
    seconds = time.perf_counter() - t
    trace.save(path)
    return trace, seconds


def _median_time(fn, repeats: int) -> tuple[float, float]:
    """(median, best) seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def _score_helpers(trace, name: str, budget: int):
    """The `scores` helpers (numpy) that both backends call in a replay of policy ``name`` (defaults): the prefill
    scores of the eviction policies (SnapKV's pooled votes, H2O's and TOVA's starting scores, KVCrush's head
    signatures) and FASA's dominant-chunk calibration (its keys' scatter matrix cached on the trace). The
    query-aware selection policies' q . k products are not shared: numba takes them from numpy's BLAS
    (TokenSelect) or its own register-tiled kernels (FASA, HISA: `workbench.kvcache.dots`), torch from
    ``torch.matmul`` on its device."""
    from workbench.kvcache import make_policy
    from workbench.kvcache import scores as SC
    from workbench.kvcache.policy_base import check_window

    prm = make_policy(name).params
    lis = range(trace.n_layers)
    if name in ("snapkv", "pyramidkv", "adakv", "kvcrush"):
        window = check_window(trace, make_policy(name), budget)
        for li in lis:
            SC.snapkv_scores(trace, li, window, int(prm["kernel"]), prm["pooling"])
            if name == "kvcrush":
                SC.head_signatures(trace, li)
    elif name in ("h2o", "tova", "fasa"):
        for li in lis:
            if name == "h2o":
                SC.h2o_scores(trace, li)
            elif name == "tova":
                SC.tova_layer_scores(trace, li)
            else:
                SC.fasa_dominant_chunks(trace, li, int(prm["chunks"]), int(prm["calibration"]))


def _time_policy(trace, name, budget, repeats: int) -> dict:
    """Median and best seconds of both backends (after a warm-up that compiles and fills the trace's caches), the
    masks, the time of the shared score helpers, and one numba replay with metrics."""
    from workbench.kvcache import replay

    out = {}
    for backend in ("numba", "torch"):
        out[backend] = replay(trace, name, budget, metrics=False, backend=backend).kept
        out[backend + "_s"], out[backend + "_best_s"] = _median_time(
            lambda b=backend: replay(trace, name, budget, metrics=False, backend=b), repeats)
    r = replay(trace, name, budget, metrics=False, backend="numba")
    out["scores_s"], _ = _median_time(lambda: _score_helpers(trace, name, r.budget), repeats)
    t = time.perf_counter()
    out["tokens"] = replay(trace, name, budget, metrics=True, backend="numba").budget
    out["metrics_s"] = time.perf_counter() - t
    return out


def bench_replay(trace, budgets, repeats: int = 3) -> dict:
    import numpy as np

    from workbench.kvcache import POLICY_NAMES

    rows = []
    for budget in budgets:
        for name in POLICY_NAMES:
            runs = _time_policy(trace, name, budget, repeats)
            row = {"policy": name, "budget": budget, "tokens": runs["tokens"],
                   "numba_s": round(runs["numba_s"], 4), "torch_s": round(runs["torch_s"], 4),
                   "ratio": round(runs["torch_s"] / runs["numba_s"], 2),
                   "numba_best_s": round(runs["numba_best_s"], 4), "torch_best_s": round(runs["torch_best_s"], 4),
                   "shared_scores_s": round(runs["scores_s"], 4),
                   "numba_metrics_s": round(runs["metrics_s"], 4),
                   "masks_identical": bool(np.array_equal(runs["numba"], runs["torch"])),
                   "differing_cells": int(np.count_nonzero(runs["numba"] != runs["torch"]))}
            rows.append(row)
            print(f"replay {name:14s} budget {budget!s:>5} ({row['tokens']:4d} tok): numba "
                  f"{row['numba_s'] * 1e3:8.1f} ms  torch {row['torch_s'] * 1e3:8.1f} ms  torch/numba "
                  f"{row['ratio']:6.2f}x  (shared scores {row['shared_scores_s'] * 1e3:7.1f} ms)  numba+metrics "
                  f"{row['numba_metrics_s'] * 1e3:7.1f} ms  differing mask cells: {row['differing_cells']}", flush=True)
    totals = {}
    for budget in [*budgets, "all"]:
        sel = [r for r in rows if budget == "all" or r["budget"] == budget]
        nb, tb = sum(r["numba_s"] for r in sel), sum(r["torch_s"] for r in sel)
        sc = sum(r["shared_scores_s"] for r in sel)
        totals[str(budget)] = {"numba_s": round(nb, 3), "torch_s": round(tb, 3), "ratio": round(tb / nb, 2),
                               "shared_scores_s": round(sc, 3),
                               "ratio_without_shared_scores": round((tb - sc) / max(nb - sc, 1e-9), 2),
                               "numba_metrics_s": round(sum(r["numba_metrics_s"] for r in sel), 3)}
        print(f"total budget {budget!s:>5}: numba {nb:.2f} s  torch {tb:.2f} s  torch/numba {tb / nb:.2f}x  "
              f"(shared scores {sc:.2f} s; without them {totals[str(budget)]['ratio_without_shared_scores']:.2f}x)",
              flush=True)
    return {"rows": rows, "totals": totals, "all_masks_identical": all(r["masks_identical"] for r in rows),
            "differing_cells": sum(r["differing_cells"] for r in rows),
            "mask_cells": len(rows) * trace.n_layers * trace.n_kv_heads * trace.n_steps * trace.n_tokens}


def _per_call_us(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def _step_selection(scores, budget: int, repeats: int) -> dict:
    """Keep the current position + the best budget - 1 of the t - 1 earlier ones, for 3 heads at once."""
    import numpy as np
    import torch

    from workbench.kvcache import kernels as K
    from workbench.kvcache.torch_replay import valid_top_mask

    h, _, t = scores.shape
    kept = np.zeros((h, 1, t), bool)
    numba_us = _per_call_us(lambda: K.select_heads(scores, t - 1, budget, kept), repeats)
    ts = torch.from_numpy(scores[:, 0, : t - 1])
    valid = torch.ones_like(ts, dtype=torch.bool)
    torch_us = _per_call_us(lambda: valid_top_mask(ts, valid, budget - 1), repeats)
    topk_us = _per_call_us(lambda: torch.topk(ts, budget - 1, dim=-1), repeats)
    same = np.array_equal(valid_top_mask(ts, valid, budget - 1).numpy(), kept[:, 0, :-1])
    return {"op": "selection", "positions": t, "budget": budget, "numba_us": round(numba_us, 1),
            "torch_us": round(torch_us, 1), "torch_topk_only_us": round(topk_us, 1),
            "ratio": round(torch_us / numba_us, 2), "same": bool(same)}


def _step_eviction(scores0, attn, mode: str | None, repeats: int) -> dict:
    """Steady state: t - 1 cached positions = the budget; the new position pushes the lowest score out (and H2O
    then adds the step's renormalised attention)."""
    import numpy as np
    import torch

    from workbench.kvcache import kernels as K
    from workbench.kvcache.torch_replay import evict_lowest, update_scores

    h, t = scores0.shape
    kept = np.zeros((h, 1, t), bool)
    budgets = np.full(h, t - 1, np.int64)
    kmode = K.MODE_ACCUMULATE if mode == "accumulate" else K.MODE_STATIC
    numba_us = _per_call_us(lambda: K.evict_heads(scores0, attn, t - 1, budgets, 0, 1, kmode, True, kept), repeats)
    score_t = torch.from_numpy(scores0)
    attn_t = torch.from_numpy(attn[:, 0])
    kept_t = torch.zeros((h, 1, t), dtype=torch.bool)

    def torch_step():
        in_cache = torch.ones((h, t), dtype=torch.bool)  # the kernel, too, starts from a full cache
        evict_lowest(score_t, in_cache, 1, 0, t - 1)
        kept_t[:, 0] = in_cache
        if mode:
            update_scores(score_t, in_cache, attn_t, mode)

    torch_us = _per_call_us(torch_step, repeats)
    return {"op": f"eviction ({mode or 'static'})", "positions": t, "budget": t - 1,
            "numba_us": round(numba_us, 1), "torch_us": round(torch_us, 1), "ratio": round(torch_us / numba_us, 2),
            "same": bool(np.array_equal(kept_t.numpy(), kept))}


def bench_step(n_positions: int, budgets, repeats: int) -> list[dict]:
    """One decode step of one layer (3 KV heads) at ``n_positions`` positions, synthetic scores."""
    import numpy as np

    h, t = 3, n_positions
    rng = np.random.default_rng(0)
    scores = rng.random((h, 1, t), dtype=np.float32)
    attn = rng.random((h, 1, t), dtype=np.float32)
    attn /= attn.sum(-1, keepdims=True)
    scores0 = rng.random((h, t))
    rows = [_step_selection(scores, b, repeats) for b in budgets]
    rows += [_step_eviction(scores0, attn, mode, repeats) for mode in (None, "accumulate")]
    for r in rows:
        print(f"step {r['op']:22s} {r['positions']} positions, budget {r['budget']:5d}: numba {r['numba_us']:8.1f} us"
              f"  torch {r['torch_us']:8.1f} us  torch/numba {r['ratio']:5.2f}x"
              + (f"  (bare torch.topk {r['torch_topk_only_us']:.1f} us)" if "torch_topk_only_us" in r else "")
              + f"  same: {r['same']}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="KV-cache replay: numba kernels vs the torch implementation")
    parser.add_argument("--quick", action="store_true", help="1024-token trace (32 decode steps), fewer repeats")
    parser.add_argument("--json", action="store_true", help="only print the JSON line")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of every pool: torch/OpenMP, numba, OpenBLAS, MKL (default 1: on a shared 2-core "
                             "machine, 2-thread pools oversubscribe the cores; 0 leaves the libraries' defaults)")
    args = parser.parse_args()
    limit_threads(args.threads)  # before numpy / torch / numba start their pools
    quiet_if(args.json)
    import numba
    import torch

    n_tokens, steps = (1024, 32) if args.quick else (4096, 128)
    budgets = [0.25, 64] if args.quick else [0.25, 256]
    trace, capture_s = bench_trace(n_tokens, steps)
    print(f"trace: {trace!r}" + (f" (captured in {capture_s:.1f} s)" if capture_s else " (from the cache)"))
    result = {
        "benchmark": "kvcache",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "numba": numba.__version__, "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads(),
                    "cuda": torch.cuda.is_available(), "threads_flag": args.threads},
        "quick": args.quick,
        "trace": {"tokens": trace.n_tokens, "prefill": trace.n_prefill, "decode_steps": trace.n_steps,
                  "layers": trace.n_layers, "kv_heads": trace.n_kv_heads,
                  "capture_s": None if capture_s is None else round(capture_s, 1)},
    }
    result["replay"] = bench_replay(trace, budgets)
    result["step"] = bench_step(32768, [1024, 8192], 50 if args.quick else 200)
    total = result["replay"]["totals"]["all"]
    result["target_numba_5x_faster"] = total["ratio"] >= 5.0
    emit(result, "kvcache", quick=args.quick)


if __name__ == "__main__":
    main()
