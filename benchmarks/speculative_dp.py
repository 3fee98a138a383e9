"""Sequoia's tree-search DP: the Numba kernels (`workbench.speculative.sequoia`) vs pure-Python transcriptions
of the same recurrence (`tests/workbench/speculative/sequoia_reference.py`), side by side in one process.

Size: Sequoia's ``demo-config.json`` -- width W = 32 (acceptance vector p[1..32]), M = 128 nodes and D = 10
levels, both counting the root as Sequoia's ``tree_search.py`` does (in the workbench's terms: a budget of 127
draft nodes and at most 9 levels below the root). The acceptance vector is a fixed, Sequoia-like decreasing one:
p[i] = 0.9 * 0.4 * 0.6^(i-1) (sum 0.9, no zeros, so all transcriptions fill identical tables).

Rows:

* ``dp literal``: Sequoia's loop exactly as ``tree_search.py`` writes it (the inner loop recomputes
  ``max(T[m - y][l - 1])`` for every y), in plain Python lists -- the anchor of issue 13 ("about 1.3 s");
* ``dp reference``: the readable reference the tests use (the maxima precomputed, infeasible terms skipped);
* ``plan``: the whole `sequoia_plan` (validation, DP, tree read-back) vs the reference's DP + read-back;

each against the Numba kernel `sequoia_dp` (or `sequoia_plan`), with tables and trees checked equal.
The target: Numba >= 100x faster than the pure-Python transcription (ratio = python / numba).
Timing: the median of ``--repeats`` runs after one warm-up run (Numba: the first call compiles or loads its
cache, reported as ``numba_first_call_s``); the Python side runs ``--py-repeats`` times.

    python benchmarks/speculative_dp.py [--quick] [--json] [--threads N] [--repeats R] [--py-repeats P]
    # the JSON object is the last line printed

``--quick``: one Python run per row and fewer Numba repeats (same sizes). ``--threads`` (default 1) sizes the
thread pools (the kernels are single-threaded anyway). Results also go to
benchmarks/results/speculative_dp.json (speculative_dp_quick.json with --quick).
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

W, M, D = 32, 128, 10


def acceptance_vector() -> list[float]:
    return [0.9 * 0.4 * 0.6 ** i for i in range(W)]


def _time(fn, repeats: int) -> tuple[float, float, object]:
    """(median s, best s, last result) of `repeats` calls."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), out


def bench(repeats: int, py_repeats: int) -> tuple[list[dict], float, dict]:
    import numpy as np

    from tests.workbench.speculative import sequoia_reference as R
    from workbench.speculative.sequoia import sequoia_dp, sequoia_plan

    acc = acceptance_vector()
    p = [0.0] + acc
    p_arr = np.array(p)
    t = time.perf_counter()
    sequoia_dp(p_arr, M, D)
    first_call = time.perf_counter() - t
    sequoia_plan(acc, M - 1, D - 1)  # warm the read-back kernel too

    def numba_dp():
        return sequoia_dp(p_arr, M, D)

    def numba_plan():
        return sequoia_plan(acc, M - 1, D - 1)

    def ref_plan():
        return R.sequoia_plan_reference(acc, M - 1, D - 1)

    nb_dp = _time(numba_dp, repeats)
    nb_plan = _time(numba_plan, repeats)
    table = np.ascontiguousarray(nb_dp[2][0].transpose(2, 0, 1))  # Sequoia's [m, l, b] layout
    rows = []
    print(f"{'case':14s} {'python ms':>10s} {'numba ms':>9s} {'python/numba':>12s}  same", flush=True)
    cases = [("dp literal", lambda: R.sequoia_table_literal(p, M, D), nb_dp,
              lambda out: np.array_equal(np.array(out), table)),
             ("dp reference", lambda: R.sequoia_table_reference(p, M, D), nb_dp,
              lambda out: np.array_equal(np.array(out[0]), table)),
             ("plan", ref_plan, nb_plan,
              lambda out: (list(out[0]) == nb_plan[2].parents.tolist() and list(out[1]) == nb_plan[2].ranks.tolist()
                           and out[2] == nb_plan[2].expected))]
    for label, py_fn, nb, check in cases:
        py = _time(py_fn, py_repeats)
        row = {"case": label, "python_ms": round(py[0] * 1e3, 1), "numba_ms": round(nb[0] * 1e3, 3),
               "ratio": round(py[0] / nb[0], 1), "python_best_ms": round(py[1] * 1e3, 1),
               "numba_best_ms": round(nb[1] * 1e3, 3), "same_output": bool(check(py[2]))}
        rows.append(row)
        print(f"{label:14s} {row['python_ms']:10.1f} {row['numba_ms']:9.3f} {row['ratio']:11.1f}x  "
              f"{'yes' if row['same_output'] else 'NO'}", flush=True)
    plan = nb_plan[2]
    print(f"plan: {plan.size} nodes, depth {int(plan.depth.max())}, {plan.summary()['root_children']} root "
          f"children, expected {plan.expected:.4f} tokens per step", flush=True)
    return rows, first_call, plan.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description="Sequoia DP: Numba vs pure Python (W=32, M=128, D=10)")
    parser.add_argument("--quick", action="store_true", help="one Python run per row, fewer Numba repeats")
    parser.add_argument("--json", action="store_true", help="only print the JSON line")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of every pool (default 1; 0 leaves the libraries' defaults)")
    parser.add_argument("--repeats", type=int, default=None, help="Numba runs per row (default 50; 20 quick)")
    parser.add_argument("--py-repeats", type=int, default=None,
                        help="Python runs per row (default 3; 1 with --quick)")
    args = parser.parse_args()
    limit_threads(args.threads)
    quiet_if(args.json)
    import numba
    import numpy as np

    repeats = args.repeats or (20 if args.quick else 50)
    py_repeats = args.py_repeats or (1 if args.quick else 3)
    t0 = time.perf_counter()
    rows, first_call, plan = bench(max(1, repeats), max(1, py_repeats))
    literal = next(r for r in rows if r["case"] == "dp literal")
    summary = {"ratio_vs_literal": literal["ratio"], "min_ratio": min(r["ratio"] for r in rows),
               "min_ratio_case": min(rows, key=lambda r: r["ratio"])["case"],
               "numba_dp_ms": literal["numba_ms"], "python_literal_ms": literal["python_ms"],
               "all_outputs_same": all(r["same_output"] for r in rows)}
    summary["target_numba_100x_faster"] = summary["min_ratio"] >= 100
    print(f"python/numba: {summary['ratio_vs_literal']:.0f}x against the literal transcription, min "
          f"{summary['min_ratio']:.0f}x ({summary['min_ratio_case']}); outputs identical: "
          f"{summary['all_outputs_same']}; numba >= 100x faster everywhere: "
          f"{summary['target_numba_100x_faster']}", flush=True)
    result = {
        "benchmark": "speculative_dp",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "numba": numba.__version__, "numpy": np.__version__,
                    "numba_threads": numba.get_num_threads(), "threads_flag": args.threads},
        "quick": args.quick,
        "setup": {"W": W, "M_nodes_with_root": M, "D_levels_with_root": D, "budget": M - 1, "max_depth": D - 1,
                  "acceptance": "p[i] = 0.9 * 0.4 * 0.6^(i-1), i = 1..32", "numba_repeats": repeats,
                  "python_repeats": py_repeats,
                  "timing": "median of the repeats after one warm-up; numba first call reported separately"},
        "numba_first_call_s": round(first_call, 3),
        "plan": plan,
        "rows": rows,
        "summary": summary,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    emit(result, "speculative_dp", quick=args.quick)


if __name__ == "__main__":
    main()
