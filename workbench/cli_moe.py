"""``workbench moe train`` and ``workbench moe info``: the tiny MoE language model of the routing lab.

    workbench moe train [--variant micro|global|bias|all] [--steps N] [--out DIR] [--seed S] [--threads N]
                        [--micro-batch N] [--eval-windows N] [--tokenizer PATH] [--overwrite] [--json]
    workbench moe info [--dir DIR] [--json]

``train`` trains the BPE tokenizer and the chosen variants on the shipped corpora (workbench.routing.train)
and writes the checkpoints, ``tokenizer.json`` and ``tiny_moe.json`` (config, timings, held-out figures) to
``--out``. ``info`` prints those figures for the shipped checkpoints (or ``--dir``) and times loading them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from workbench.errors import WorkbenchError


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from workbench.routing.tiny_moe import VARIANTS, load_tiny_moe_tokenizer
    from workbench.routing.train.report import format_report
    from workbench.routing.train.variants import train_variants

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = {"steps": args.steps, "micro_batch": args.micro_batch, "eval_windows": args.eval_windows}
    for name, value in sizes.items():
        if value is not None and value < 1:
            raise WorkbenchError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    overrides = {k: v for k, v in sizes.items() if v is not None and k != "steps"}
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    tokenizer = load_tiny_moe_tokenizer(args.tokenizer) if args.tokenizer else None

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    start = time.perf_counter()
    report = train_variants(variants, out=args.out, steps=args.steps, seed=args.seed, tokenizer=tokenizer,
                            overwrite=args.overwrite, show_progress=not args.quiet, log=log, **overrides)
    if args.json:
        print(json.dumps(report))
        return 0
    print(format_report(report))
    print(f"wrote {', '.join(report['variants'][v]['checkpoint'] for v in variants)}, tokenizer.json and "
          f"tiny_moe.json to {args.out} in {time.perf_counter() - start:.1f} s "
          f"({torch.get_num_threads()} torch threads)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from workbench.routing.tiny_moe import ASSETS_DIR, load_tiny_moe
    from workbench.routing.train.report import format_report, read_report

    folder = Path(args.dir) if args.dir else ASSETS_DIR
    report = read_report(folder)
    load_ms = {}
    for variant, entry in report["variants"].items():
        start = time.perf_counter()
        model = load_tiny_moe(variant, path=folder / entry["checkpoint"])
        load_ms[variant] = round(1000 * (time.perf_counter() - start), 1)
    if args.json:
        print(json.dumps({**report, "load_ms": load_ms}))
        return 0
    tok = report["tokenizer"]
    print(f"tiny MoE checkpoints in {folder}")
    print(f"model: {model!r}")
    print(f"tokenizer: byte-level BPE, {tok['vocab_size']} tokens; training tokens by domain: "
          + ", ".join(f"{d} {n:,}" for d, n in tok.get("train_tokens_by_domain", {}).items()))
    for variant, entry in report["variants"].items():
        size = f"{entry['bytes'] / 1e6:.2f} MB, " if "bytes" in entry else ""
        t = entry["train"]
        print(f"{variant:>6}: {entry['checkpoint']} ({size}loads in {load_ms[variant]:.0f} ms); "
              f"{t['steps']} steps x {t['micro_batch']} windows x {len(report['domains'])} domains, "
              f"lr {t['lr']}, balance {t['balance_coef']}, "
              f"bias rate {t['bias_rate'] if variant == 'bias' else '-'}")
    print(format_report(report))
    domains = list(next(iter(report["variants"].values()))["metrics"]["perplexity_by_domain"])
    print("held-out perplexity by domain:")
    print("        " + " ".join(f"{d[:14]:>14}" for d in domains))
    for variant, entry in report["variants"].items():
        ppl = entry["metrics"]["perplexity_by_domain"]
        print(f"{variant:>6}  " + " ".join(f"{ppl[d]:14.1f}" for d in domains))
    return 0


def add_parser(sub) -> None:
    moe = sub.add_parser("moe", help="train / inspect the tiny MoE language model of the routing lab")
    msub = moe.add_subparsers(dest="moe_command", required=True)
    train = msub.add_parser("train", help="train the tokenizer and tiny MoE variants on the shipped corpora")
    train.add_argument("--variant", choices=("micro", "global", "bias", "all"), default="all",
                       help="balancing: micro-batch loss, global-batch loss, aux-loss-free bias, "
                            "or all (default)")
    train.add_argument("--steps", type=int, default=None, help="training steps per variant (default 160)")
    train.add_argument("--out", default="tiny_moe", help="output folder (default ./tiny_moe)")
    train.add_argument("--seed", type=int, default=0, help="seed for initial weights and batches (default 0)")
    train.add_argument("--micro-batch", type=int, default=None,
                       help="windows of 128 tokens per domain micro-batch (default 4; 7 domains per step)")
    train.add_argument("--eval-windows", type=int, default=None,
                       help="held-out windows per source for the figures (default 8)")
    train.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    train.add_argument("--tokenizer", default=None,
                       help="use this tokenizer.json (or folder) instead of training one (~3 s)")
    train.add_argument("--overwrite", action="store_true", help="replace checkpoints already in --out")
    train.add_argument("--json", action="store_true", help="print the report as JSON")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_train)
    info = msub.add_parser("info", help="figures of the shipped (or --dir) tiny MoE checkpoints")
    info.add_argument("--dir", default=None,
                      help="a folder written by `workbench moe train` (default: the shipped checkpoints)")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=cmd_info)
