"""Speculative decoding end to end on SmolLM2-135M-Instruct (CPU, greedy): tokens/s side by side in one run with
plain greedy decoding and with Hugging Face ``generate(prompt_lookup_num_tokens=...)``, outputs checked identical.

Rows (``workbench.speculative.prompts``):

* ``grounded``: 10 input-grounded tasks (rewrite / annotate / proofread a shipped code file or passage): the answer
  reuses the input. Target: our best configuration >= 2.0x plain greedy and faster than HF's prompt lookup;
* ``open``: 6 open-ended prose prompts: nothing to copy. Target: never slower than plain greedy with an adaptive
  schedule (``thompson``: Thompson sampling over the draft length against the runner's measured verify-cost
  curve, 0 = a plain step when drafting does not pay; the figure is reported whatever it is).

Baselines, all with the same SDPA attention on the same model: ``plain`` = our cached greedy loop
(`ModelRunner.greedy_cached`), ``hf_greedy`` = ``model.generate(do_sample=False)``, ``hf_prompt_lookup`` =
``model.generate(prompt_lookup_num_tokens=10)`` (HF's default n-gram size 2... its ``max_matching_ngram_size``
default). Speedups are against the faster plain baseline. Each output is compared token for token with ``plain``;
a difference is reported with the plain run's top-2 logit gap at that position (a near-tie is < 1e-4).

Also measured: the verify-cost curve (seconds of one verification pass against the number of draft nodes, on a
256-token context, `workbench.speculative.costs`), the acceptance figures of every drafter and builder (vLLM's definitions), and Sequoia's
hardware-aware budget chosen from the measured curve and the measured positional acceptance. With ``--workers N``
(or ``--scheduler ADDRESS``) the acceptance sweep also runs on a Dask cluster, each worker loading the model once,
and every run is checked to decide the same as the local one.

    python benchmarks/speculative.py [--quick] [--json] [--threads N] [--new-tokens N] [--workers N | --scheduler A]
    # the JSON object is the last line printed; results also go to benchmarks/results/speculative[_quick].json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (label, generate kwargs) of what is compared on each prompt set
GROUNDED = [
    ("prompt_lookup+heuristic", {"drafter": "prompt_lookup", "schedule": "heuristic"}),
    ("prompt_lookup+thompson", {"drafter": "prompt_lookup", "schedule": "thompson"}),
    ("prompt_lookup+fixed10", {"drafter": "prompt_lookup", "schedule": "fixed", "schedule_params": {"gamma": 10}}),
    ("prompt_lookup+fixed4", {"drafter": "prompt_lookup", "schedule": "fixed", "schedule_params": {"gamma": 4}}),
    ("suffix", {"drafter": "suffix", "schedule": "fixed", "schedule_params": {"gamma": 16}}),
    ("suffix+thompson", {"drafter": "suffix", "schedule": "thompson"}),
]
OPEN = [
    ("prompt_lookup+heuristic", {"drafter": "prompt_lookup", "schedule": "heuristic"}),
    ("prompt_lookup+thompson", {"drafter": "prompt_lookup", "schedule": "thompson"}),
    ("suffix+thompson", {"drafter": "suffix", "schedule": "thompson"}),
    ("suffix", {"drafter": "suffix", "schedule": "fixed", "schedule_params": {"gamma": 16}}),
    ("recycling", {"drafter": "recycling", "schedule": "fixed", "schedule_params": {"gamma": 80}}),
]
# the acceptance table: every drafter natively and every builder
ACCEPTANCE = [
    ("prompt_lookup", {"drafter": "prompt_lookup"}),
    ("suffix", {"drafter": "suffix"}),
    ("recycling", {"drafter": "recycling", "schedule_params": {"gamma": 80}}),
    ("corpus_ngram", {"drafter": "corpus_ngram"}),
    ("early_exit L=8", {"drafter": "early_exit", "drafter_params": {"layers": 8, "max_draft": 4}}),
    ("corpus_ngram/chain4", {"drafter": "corpus_ngram", "builder": "chain", "builder_params": {"gamma": 4}}),
    ("corpus_ngram/kary2x3", {"drafter": "corpus_ngram", "builder": "kary",
                              "builder_params": {"k": 2, "depth": 3}}),
    ("recycling/sequoia", {"drafter": "recycling", "builder": "sequoia",
                           "builder_params": {"acceptance": [0.5, 0.15, 0.08, 0.05], "max_depth": 6},
                           "schedule_params": {"gamma": 24}}),
    ("early_exit/eagle2", {"drafter": "early_exit", "drafter_params": {"layers": 8}, "builder": "eagle2",
                           "builder_params": {"topk": 4, "depth": 4}, "schedule_params": {"gamma": 16}}),
    ("corpus_ngram/dyspec", {"drafter": "corpus_ngram", "builder": "dyspec", "schedule_params": {"gamma": 16}}),
    ("prompt_lookup+corpus_ngram/goose", {"drafter": "prompt_lookup", "builder": "goose",
                                          "builder_params": {"branch": "corpus_ngram"},
                                          "schedule_params": {"gamma": 16}}),
]


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


@contextlib.contextmanager
def _hf_sdpa(runner):
    """Hugging Face's own "sdpa" attention for its ``generate`` baselines (the runner registers its own variant)."""
    import torch

    from workbench.models.runner import MODEL_LOCK

    cfg = runner.model.config
    with MODEL_LOCK, torch.no_grad():
        previous, cfg._attn_implementation = cfg._attn_implementation, "sdpa"
        try:
            yield
        finally:
            cfg._attn_implementation = previous


def _gaps(runner, ids, out):
    import numpy as np

    s = runner.session()
    first = s.prefill(ids)
    rows = np.vstack([first[None], s.extend(out[:-1])]) if len(out) > 1 else first[None]
    top2 = np.sort(rows, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _compare(out, ref, gaps) -> str:
    import numpy as np

    n = min(len(out), len(ref))
    diff = np.flatnonzero(np.asarray(out[:n]) != np.asarray(ref[:n]))
    if diff.size:
        j = int(diff[0])
        return f"differs at {j} (plain top-2 gap {gaps[j]:.1e}{', near-tie' if gaps[j] < 1e-4 else ''})"
    return "identical" if len(out) == len(ref) else f"length {len(out)} vs {len(ref)}"


def bench_set(runner, prompts, configs, n_new: int, hf: bool) -> dict:
    import numpy as np
    import torch

    from workbench.speculative import generate

    rows = {"plain": [], "hf_greedy": [], "hf_prompt_lookup": []} | {label: [] for label, _ in configs}
    checks = {label: [] for label, _ in configs} | {"hf_prompt_lookup": []}
    summaries = {label: [] for label, _ in configs}
    for p in prompts:
        ids = runner.encode_chat(p.text) if p.chat else runner.encode(p.text)
        ref, dt = _timed(runner.greedy_cached, ids, n_new, eos=True)
        ref = ref[len(ids):]
        gaps = _gaps(runner, ids, ref)
        rows["plain"].append((len(ref), dt))
        if hf:
            x = torch.as_tensor(ids[None])
            eos = runner.tokenizer.eos_token_id
            with _hf_sdpa(runner):
                g, dt = _timed(runner.model.generate, x, max_new_tokens=n_new, do_sample=False, pad_token_id=eos)
                rows["hf_greedy"].append((g.shape[1] - len(ids), dt))
                g, dt = _timed(runner.model.generate, x, max_new_tokens=n_new, do_sample=False,
                               prompt_lookup_num_tokens=10, pad_token_id=eos)
            g = g[0, len(ids):].numpy()
            rows["hf_prompt_lookup"].append((len(g), dt))
            checks["hf_prompt_lookup"].append(_compare(g, ref, gaps))
        for label, kw in configs:
            run, dt = _timed(generate, ids, max_new_tokens=n_new, runner=runner, **kw)
            rows[label].append((len(run.output_ids), dt))
            checks[label].append(_compare(run.output_ids, ref, gaps))
            summaries[label].append(run.summary())
    result = {}
    for label, r in rows.items():
        if not r:
            continue
        toks, secs = sum(a for a, _ in r), sum(b for _, b in r)
        result[label] = {"tokens": toks, "seconds": round(secs, 3), "tokens_per_s": round(toks / secs, 2)}
    base = max(result["plain"]["tokens_per_s"], result.get("hf_greedy", {"tokens_per_s": 0})["tokens_per_s"])
    for label, r in result.items():
        r["speedup_vs_plain"] = round(r["tokens_per_s"] / base, 3)
        if label in checks:
            r["outputs"] = {k: checks[label].count(k) for k in set(checks[label])}
        if label in summaries and summaries[label]:
            ss = summaries[label]
            r["mean_acceptance_length"] = round(float(np.mean([s["mean_acceptance_length"] for s in ss])), 3)
            r["tokens_per_step"] = round(sum(s["new_tokens"] for s in ss) / sum(s["steps"] for s in ss), 3)
            r["draft_acceptance_rate"] = round(sum(s["accepted"] for s in ss)
                                               / max(1, sum(s["drafted_nodes"] for s in ss)), 3)
    return result


def acceptance_table(runner, prompts, n_new: int, client=None) -> dict:
    """Every drafter and builder on ``prompts`` (`workbench.speculative.sweep`, here or on a Dask cluster)."""
    from workbench.speculative.sweep import acceptance_sweep

    sweep = acceptance_sweep(prompts, dict(ACCEPTANCE), max_new_tokens=n_new, client=client,
                             runner=None if client is not None else runner)
    table = {}
    pooled = sweep.by_config()
    for label, row in pooled.iterrows():
        g = sweep.table[sweep.table["config"] == label]
        table[label] = {"mean_acceptance_length": round(float(row["mean_acceptance_length"]), 3),
                        "draft_acceptance_rate": round(float(row["draft_acceptance_rate"]), 3),
                        "tokens_per_step": round(float(row["tokens_per_step"]), 3),
                        "mean_nodes": round(float(g["drafted_nodes"].sum() / max(g["drafts"].sum(), 1)), 1),
                        "tokens_per_s": round(float(row["tokens_per_s"]), 2)}
    return table, sweep


def acceptance_on_dask(args, runner, prompts, n_new: int, local) -> dict:
    """The acceptance sweep again on a Dask cluster (each worker loads the model once): wall time against the local
    sweep, and whether every run decided the same (tokens out, steps, drafts, accepted nodes, output ids)."""
    from workbench.distributed import connect

    client = connect(args.scheduler, workers=args.workers or None)
    try:
        t = time.perf_counter()
        table, sweep = acceptance_table(runner, prompts, n_new, client=client)
        wall = time.perf_counter() - t
        workers = len(client.scheduler_info()["workers"])
    finally:
        client.close()
    differ = (local.decided() != sweep.decided()).any(axis=1)
    return {"workers": workers, "runs": len(sweep.table), "local_s": round(float(local.table["seconds"].sum()), 2),
            "dask_wall_s": round(wall, 2), "identical": bool(not differ.any()),
            "differing_runs": local.table.loc[differ, ["config", "prompt"]].values.tolist(), "table": table}


def hardware_aware(runner, curve: dict, prompts, n_new: int) -> dict:
    """Sequoia's hardware-aware choice from the measured verify curve and a measured acceptance vector."""
    import numpy as np

    from workbench.speculative import generate
    from workbench.speculative.sequoia import choose_budget

    runs = []
    for p in prompts:
        ids = runner.encode_chat(p.text) if p.chat else runner.encode(p.text)
        runs.append(generate(ids, drafter="recycling", max_new_tokens=n_new, runner=runner,
                             schedule_params={"gamma": 80}))
    acc = np.mean([r.rank_acceptance(8) for r in runs], axis=0)
    draft = sum(s.draft_seconds for r in runs for s in r.steps) / max(1, sum(r.n_steps for r in runs)) / 6
    budget, depth, speedup = choose_budget(acc, curve, draft, max(curve), 8)
    return {"acceptance": [round(float(a), 4) for a in acc], "draft_seconds_per_level": draft,
            "budget": budget, "depth": depth, "predicted_speedup": round(speedup, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Speculative decoding end to end on SmolLM2 (CPU, greedy)")
    parser.add_argument("--quick", action="store_true", help="fewer prompts, 32 new tokens, fewer repeats")
    parser.add_argument("--json", action="store_true", help="only print the JSON line")
    parser.add_argument("--threads", type=int, default=0, help="thread pools (default: the libraries' own)")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens generated per prompt (default 96)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=0, help="also run the acceptance sweep on a local Dask "
                       "cluster of N workers and check it against the local one")
    where.add_argument("--scheduler", default=None, help="... or on this Dask scheduler's workers")
    args = parser.parse_args()
    from _threads import limit_threads  # here, not at the top: Dask's spawned workers re-run this file's top

    limit_threads(args.threads)
    # this folder holds benchmarks/distributed.py, which would hide Dask's "distributed" package (--workers)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(ROOT))
    if args.json:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence library chatter; restored below
    import torch

    from workbench.models import ModelRunner
    from workbench.speculative.costs import runner_verify_costs, verify_cost_curve
    from workbench.speculative.prompts import task_prompts

    n_new = args.new_tokens or (32 if args.quick else 96)
    runner = ModelRunner()
    grounded, open_ = task_prompts("grounded"), task_prompts("open")
    if args.quick:
        grounded, open_ = grounded[:3], open_[:2]
    runner.greedy_cached(runner.encode("warm up"), 4)               # load, compile, warm caches
    runner_verify_costs(runner)              # what the Thompson schedule reads: measured once per process
    sizes = [0, 1, 2, 4, 8, 16, 32, 64] if args.quick else [0, 1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128]
    curve = verify_cost_curve(runner, sizes, repeats=3 if args.quick else 7)
    acc_prompts, acc_new = grounded[:4] + open_[:2], min(n_new, 64)
    acc_table, acc_sweep = acceptance_table(runner, acc_prompts, acc_new)
    result = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "threads": torch.get_num_threads(), "device": runner.device_name()},
        "new_tokens": n_new,
        "verify_curve_s": {str(k): round(v, 5) for k, v in curve.items()},
        "grounded": bench_set(runner, grounded, GROUNDED, n_new, hf=True),
        "open": bench_set(runner, open_, OPEN, n_new, hf=True),
        "acceptance": acc_table,
        "hardware_aware_sequoia": hardware_aware(runner, curve, grounded[:2] + open_[:1], min(n_new, 48)),
    }
    if args.workers or args.scheduler:
        result["acceptance_on_dask"] = acceptance_on_dask(args, runner, acc_prompts, acc_new, acc_sweep)
    g, o = result["grounded"], result["open"]
    best_g = max((k for k in g if k not in ("plain", "hf_greedy", "hf_prompt_lookup")),
                 key=lambda k: g[k]["tokens_per_s"])
    result["targets"] = {
        "grounded_best": best_g, "grounded_speedup": g[best_g]["speedup_vs_plain"],
        "grounded_vs_hf_prompt_lookup": round(g[best_g]["tokens_per_s"] / g["hf_prompt_lookup"]["tokens_per_s"], 3),
        "open_adaptive_speedup": o["prompt_lookup+thompson"]["speedup_vs_plain"],
    }
    out = ROOT / "benchmarks" / "results" / ("speculative_quick.json" if args.quick else "speculative.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        sys.stdout = sys.__stdout__
    else:
        for name in ("grounded", "open"):
            print(f"== {name} ({n_new} new tokens per prompt)")
            for label, r in result[name].items():
                print(f"  {label:28s} {r['tokens_per_s']:7.2f} tok/s  x{r['speedup_vs_plain']:.2f}  "
                      f"{r.get('outputs', '')}")
        print("== acceptance (vLLM definitions)")
        for label, r in result["acceptance"].items():
            print(f"  {label:34s} {r}")
        print("== verify curve", result["verify_curve_s"])
        print("== hardware-aware Sequoia", result["hardware_aware_sequoia"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
