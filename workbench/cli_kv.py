"""``workbench kv capture | replay | eval``: KV-cache studies from the shell.

    workbench kv capture FILE -o trace.safetensors [--decode-steps 64] [--layers 0,15,29] [--gqa mean|max] [--attn-dtype float16|float32]
    workbench kv replay TRACE [--policy h2o --policy snapkv ...] [--budget 64 --budget 0.25 ...] [--json]
    workbench kv eval FILE [--policy ...] [--budget ...] [--decode-steps 64] [--json]

FILE is a text file (- for standard input) or a shipped corpus name (its first 3,000 characters).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from workbench.errors import WorkbenchError

DEFAULT_POLICIES = ("window", "streaming_llm", "h2o", "tova", "snapkv", "quest", "tokenselect", "oracle")


def _budget(value: str):
    try:
        return float(value) if "." in value else int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a budget is a number of tokens or a ratio, not {value!r}") from exc


def _read_text(source: str) -> str:
    from workbench.data import shipped_corpora

    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    if path.is_file():
        return path.read_bytes().decode("utf-8", "replace")
    if source in shipped_corpora():
        return shipped_corpora()[source].paths[0].read_text(encoding="utf-8")[:3000]
    raise WorkbenchError(f"No such file or shipped corpus: {source!r}.")


def _table(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows))
        return
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.4g}"))


def cmd_capture(args: argparse.Namespace) -> int:
    from workbench.kvcache import capture

    out = Path(args.output)
    if out.exists():
        raise WorkbenchError(f"{str(out)!r} exists; choose another -o path or delete it first.")
    layers = [int(x) for x in args.layers.split(",")] if args.layers else None
    start = time.perf_counter()
    trace = capture(_read_text(args.file), decode_steps=args.decode_steps, layers=layers, gqa=args.gqa,
                    attn_dtype=args.attn_dtype)
    trace.save(out)
    print(f"{trace} captured in {time.perf_counter() - start:.1f} s; wrote {out}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from workbench.kvcache import KVTrace, replay

    trace = KVTrace.load(args.trace)
    rows = [replay(trace, p, b).summary() for p in args.policy or DEFAULT_POLICIES for b in args.budget or [64]]
    _table(rows, args.json)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from workbench.kvcache import quality_sweep

    sweep = quality_sweep(_read_text(args.file), list(args.policy or DEFAULT_POLICIES), list(args.budget or [64]),
                          decode_steps=args.decode_steps)
    _table(sweep.table.drop(columns=["passkey"]).to_dict("records"), args.json)
    return 0


def add_parser(sub) -> None:
    from workbench.kvcache import POLICY_NAMES

    kv = sub.add_parser("kv", help="capture attention, replay KV-cache policies, measure quality")
    ksub = kv.add_subparsers(dest="kv_command", required=True)
    cap = ksub.add_parser("capture", help="capture a KV trace of a text with the default model")
    cap.add_argument("file", help="a text file, - for standard input, or a shipped corpus name")
    cap.add_argument("-o", "--output", required=True, help="where to write the .safetensors trace")
    cap.add_argument("--decode-steps", type=int, default=32)
    cap.add_argument("--layers", default="", help="comma-separated model layers (default: all)")
    cap.add_argument("--gqa", choices=("mean", "max"), default="mean")
    cap.add_argument("--attn-dtype", choices=("float16", "float32"), default="float16",
                     help="storage of the attention arrays (float32: exact comparisons, twice their memory)")
    cap.set_defaults(func=cmd_capture)
    for name, func, helptext in (("replay", cmd_replay, "replay policies over a saved trace"),
                                 ("eval", cmd_eval, "quality of policies with the real model on a text")):
        p = ksub.add_parser(name, help=helptext)
        p.add_argument("trace" if name == "replay" else "file")
        p.add_argument("--policy", action="append", choices=POLICY_NAMES, help="repeatable (default: 8 policies)")
        p.add_argument("--budget", action="append", type=_budget, help="tokens (int) or ratio (float); repeatable")
        p.add_argument("--json", action="store_true", help="print JSON rows")
        if name == "eval":
            p.add_argument("--decode-steps", type=int, default=32)
        p.set_defaults(func=func)
