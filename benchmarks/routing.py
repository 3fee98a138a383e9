"""MoE routing: the numba kernels (`workbench.routing.kernels`, the CPU path of `route`) vs the
straightforward vectorised torch implementation (`workbench.routing.torch_routers`, the CUDA path), both on
the CPU, side by side.

Routing of 65,536 tokens x 64 experts (random float32 logits, normal(0, 1), fixed seed) at k = 1, 2 and 8,
with capacity factor 1.0 for the capacity routers:

* capacity_topk with drop policies "position" (GShard) and "probability" (BPR),
* capacity_aware with overflow "drop" and "reroute" (default drop policy "score"),
* expert_choice (k = mean experts per token), switch_top1 (k = 1 only),
* and, without capacity: topk_softmax, deepseek_v3 (8 groups, the best 4 eligible, a small random bias) and
  null_experts (4 null experts, null logit 0).

Each case: ``route(logits, router, backend=...)`` end to end (input validation, routing, numpy `Routing` out),
one warm-up call per backend (numba compiles or loads its cache), then the median of ``--repeats`` calls per
backend, numba and torch interleaved so that a noisy machine slows both alike. The outputs are compared
(requested, assignments, kept, dropped, loads exactly; weights and probabilities to 1e-6). The target: numba
>= 2x faster than torch (ratio = torch / numba) for every case.

Both backends share the numpy steps of `routers` (input validation and float64 conversion, packing the
`Routing`); the numba path also computes deepseek_v3's sigmoid with scipy's ``expit`` and the "score" drop
order with ``np.lexsort`` there. These shared steps bound the ratio from above, most visibly for deepseek_v3
at k = 1 (no softmax, a cheap selection) and capacity_aware at k = 8 (the lexsort of 524,288 slots).

    python benchmarks/routing.py [--quick] [--json] [--threads N] [--repeats R] [--only TEXT]
    # the JSON object is the last line printed

``--quick``: 8,192 tokens (15 repeats instead of 7). ``--only TEXT``: just the cases whose label contains
TEXT (nothing saved). ``--threads`` (default 1) sizes every thread pool (torch's OpenMP, numba, OpenBLAS,
MKL): on the shared 2-core reference machine two-thread pools oversubscribe the cores, so the default
compares single-threaded numba with single-threaded torch; ``--threads 0`` keeps the libraries' defaults.
Results also go to benchmarks/results/routing.json (routing_quick.json with --quick).
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

N_EXPERTS = 64
KS = (1, 2, 8)
CF = 1.0
CASES = [  # (label, router, params without k, the ks it runs at)
    ("capacity_topk position", "capacity_topk", {"capacity_factor": CF, "drop_policy": "position"}, KS),
    ("capacity_topk probability", "capacity_topk", {"capacity_factor": CF, "drop_policy": "probability"}, KS),
    ("capacity_aware drop", "capacity_aware", {"capacity_factor": CF, "overflow": "drop"}, KS),
    ("capacity_aware reroute", "capacity_aware", {"capacity_factor": CF, "overflow": "reroute"}, KS),
    ("expert_choice", "expert_choice", {"capacity_factor": CF}, KS),
    ("switch_top1", "switch_top1", {"capacity_factor": CF}, (1,)),
    ("topk_softmax", "topk_softmax", {}, KS),
    ("deepseek_v3 8 groups top-4", "deepseek_v3", {"n_groups": 8, "topk_groups": 4}, KS),
    ("null_experts 4 nulls", "null_experts", {"n_null": 4, "null_logit": 0.0}, KS),
]


def _params(router: str, params: dict, k: int, n_experts: int) -> dict:
    import numpy as np

    out = dict(params)
    if router != "switch_top1":
        out["k"] = k
    if router == "deepseek_v3":
        out["bias"] = np.random.default_rng(1).normal(scale=0.01, size=n_experts)
    return out


def same_routing(a, b) -> bool:
    """Identical decisions (requested, assignments, kept, dropped, loads, capacity), weights and probabilities
    to 1e-6."""
    import numpy as np

    exact = all(np.array_equal(getattr(a, f), getattr(b, f))
                for f in ("requested", "assignments", "kept", "dropped", "loads"))
    close = (np.allclose(a.weights, b.weights, rtol=0, atol=1e-6)
             and np.allclose(a.probs, b.probs, rtol=0, atol=1e-6))
    return bool(exact and close and a.capacity == b.capacity)


def time_case(logits, router: str, params: dict, repeats: int) -> dict:
    """Median/best seconds of both backends (one warm-up each, then interleaved calls), and the output
    check."""
    from workbench.routing import route

    runs = {b: route(logits, router, backend=b, **params) for b in ("numba", "torch")}
    times = {"numba": [], "torch": []}
    for _ in range(repeats):
        for backend in ("numba", "torch"):
            t = time.perf_counter()
            route(logits, router, backend=backend, **params)
            times[backend].append(time.perf_counter() - t)
    r = runs["numba"]
    return {"numba_s": statistics.median(times["numba"]), "torch_s": statistics.median(times["torch"]),
            "numba_best_s": min(times["numba"]), "torch_best_s": min(times["torch"]),
            "same": same_routing(r, runs["torch"]), "capacity": r.capacity, "drop_rate": r.drop_rate,
            "rerouted": r.extra.get("rerouted")}


def bench(n_tokens: int, repeats: int, only: str | None = None) -> list[dict]:
    import numpy as np

    logits = np.random.default_rng(0).normal(size=(n_tokens, N_EXPERTS)).astype(np.float32)
    rows = []
    print(f"{'router':28s} {'k':>2s} {'numba ms':>9s} {'torch ms':>9s} {'torch/numba':>11s}  same  capacity"
          "  drops", flush=True)
    for label, router, params, ks in CASES:
        if only and only not in label:
            continue
        for k in ks:
            res = time_case(logits, router, _params(router, params, k, N_EXPERTS), repeats)
            row = {"case": label, "router": router, "k": k, "params": {**params},
                   "numba_ms": round(res["numba_s"] * 1e3, 2), "torch_ms": round(res["torch_s"] * 1e3, 2),
                   "ratio": round(res["torch_s"] / res["numba_s"], 2),
                   "numba_best_ms": round(res["numba_best_s"] * 1e3, 2),
                   "torch_best_ms": round(res["torch_best_s"] * 1e3, 2),
                   "same_output": res["same"], "capacity": res["capacity"],
                   "drop_rate": round(res["drop_rate"], 4)}
            if res["rerouted"] is not None:
                row["rerouted"] = res["rerouted"]
            rows.append(row)
            cap = "-" if row["capacity"] < 0 else str(row["capacity"])
            print(f"{label:28s} {k:2d} {row['numba_ms']:9.1f} {row['torch_ms']:9.1f} {row['ratio']:10.2f}x  "
                  f"{'yes' if row['same_output'] else 'NO':4s}  {cap:>8s}  {100 * row['drop_rate']:5.1f}%",
                  flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description="MoE routing: numba kernels vs the torch implementation (CPU)")
    parser.add_argument("--quick", action="store_true", help="8,192 tokens instead of 65,536")
    parser.add_argument("--json", action="store_true", help="only print the JSON line")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of every pool: torch/OpenMP, numba, OpenBLAS, MKL (default 1: on a "
                             "shared 2-core machine, 2-thread pools oversubscribe the cores; 0 leaves the "
                             "libraries' defaults)")
    parser.add_argument("--only", default=None, metavar="TEXT",
                        help="only the cases whose label contains TEXT (e.g. deepseek); results are then "
                             "not saved")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per backend and case (default 7; 15 with --quick)")
    args = parser.parse_args()
    limit_threads(args.threads)  # before numpy / torch / numba start their pools
    quiet_if(args.json)
    import numba
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    n_tokens = 8192 if args.quick else 65536
    if args.repeats is None:
        args.repeats = 15 if args.quick else 7
    t0 = time.perf_counter()
    rows = bench(n_tokens, max(1, args.repeats), args.only)
    ratios = [r["ratio"] for r in rows]
    slowest = min(rows, key=lambda r: r["ratio"])
    summary = {"min_ratio": slowest["ratio"], "min_ratio_case": f"{slowest['case']} k={slowest['k']}",
               "geomean_ratio": round(statistics.geometric_mean(ratios), 2),
               "total_numba_ms": round(sum(r["numba_ms"] for r in rows), 1),
               "total_torch_ms": round(sum(r["torch_ms"] for r in rows), 1),
               "all_outputs_same": all(r["same_output"] for r in rows)}
    summary["target_numba_2x_faster"] = summary["min_ratio"] >= 2.0
    print(f"torch/numba: min {summary['min_ratio']:.2f}x ({summary['min_ratio_case']}), geometric mean "
          f"{summary['geomean_ratio']:.2f}x; totals numba {summary['total_numba_ms']:.0f} ms, torch "
          f"{summary['total_torch_ms']:.0f} ms; outputs identical: {summary['all_outputs_same']}; "
          f"numba >= 2x faster everywhere: {summary['target_numba_2x_faster']}", flush=True)
    result = {
        "benchmark": "routing",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "numba": numba.__version__,
                    "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads(),
                    "cuda": torch.cuda.is_available(), "threads_flag": args.threads},
        "quick": args.quick,
        "only": args.only,
        "setup": {"tokens": n_tokens, "experts": N_EXPERTS, "ks": list(KS), "capacity_factor": CF,
                  "logits": "float32 normal(0, 1), numpy default_rng(0)", "repeats": args.repeats,
                  "timing": "median of the repeats after one warm-up per backend, backends interleaved; "
                            "route(..., backend='numba'|'torch') end to end on the CPU"},
        "rows": rows,
        "summary": summary,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    emit(result, "routing", quick=args.quick, save=not args.only)  # a partial run does not replace the results


if __name__ == "__main__":
    main()
