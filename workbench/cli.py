"""The ``workbench`` command.

    workbench serve [--port 5006] [--address localhost] [--show] [--workers N | --scheduler ADDRESS]   the dashboard
    workbench info [--json]                                         versions, threading, CUDA, model, cache
    workbench prepare                                               model cache and compiled kernels, now
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


def _status_handler(warmup):
    """A tornado handler for ``/warmup.json``: the background warm-up's state (`WarmUp.snapshot`)."""
    from tornado.web import RequestHandler

    class WarmUpStatus(RequestHandler):
        def get(self):
            self.set_header("Content-Type", "application/json")
            self.write(json.dumps(warmup.snapshot()))

    return WarmUpStatus


def cmd_serve(args: argparse.Namespace) -> int:
    _check_port_free(args.address, args.port)
    import panel as pn

    from widgets.dashboard import create_app, shared_warmup

    # the slow one-time work (model, kernels, default traces) runs in the background: the server answers at once,
    # each tab shows what it waits for and goes live when its part is ready (the tab opened first goes first)
    if args.scheduler or args.workers:
        from workbench.distributed import cluster_summary, connect

        client = connect(args.scheduler, workers=args.workers)  # the process's default client: the labs use it
        print(f"[workbench] {cluster_summary(client)}", file=sys.stderr, flush=True)
    warmup = shared_warmup().start()
    origins = {f"{args.address}:{args.port}", f"localhost:{args.port}", f"127.0.0.1:{args.port}", *args.allow_origin}
    url = f"http://{args.address}:{args.port}{args.prefix.rstrip('/')}/"
    print(f"[workbench] Token Workbench dashboard at {url}  (Ctrl+C stops it); the labs warm up in the background "
          f"(state at {url}warmup.json)", file=sys.stderr, flush=True)
    pn.serve(
        {"/": lambda: create_app(background=True)},
        port=args.port,
        address=args.address,
        show=args.show,
        title="Token Workbench",
        websocket_origin=sorted(origins),
        prefix=args.prefix,
        print=False,
        extra_patterns=[(r"/warmup.json", _status_handler(warmup))],
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
    """Convert and cache the default model, then compile (or load from Numba's cache) every kernel the labs use, by
    running each lab's start-up work once (the dashboard's warm-up jobs; the default traces themselves are kept per
    process, a second or two each): what ``workbench serve`` otherwise does in the background on a first start."""
    import time

    from widgets.dashboard import warm_up
    from workbench.models import converted_cache_path

    start = time.perf_counter()

    def report(job, done, total):
        mark = "ok" if job.state == "done" else f"FAILED ({job.error})"
        print(f"[{done}/{total}] {job.label}: {mark}, {job.seconds:.1f} s", flush=True)

    jobs = warm_up(report)
    failed = [j for j in jobs if j.state == "failed"]
    print(f"prepared in {time.perf_counter() - start:.1f} s; model cache at {converted_cache_path()}; Numba's "
          f"compiled kernels cached beside their modules (__pycache__)" + (f"; {len(failed)} step(s) failed" if failed
                                                                            else ""))
    return 1 if failed else 0


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
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="use this Dask scheduler's workers for KV quality "
                       "sweeps (the distributed extra); the header links its dashboard")
    where.add_argument("--workers", type=int, metavar="N", help="start a local Dask cluster of N worker processes")
    serve.set_defaults(func=cmd_serve)

    info = sub.add_parser("info", help="versions, numba threading layer, CUDA, default model and cache")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=cmd_info)

    prepare = sub.add_parser("prepare",
                             help="convert and cache the default model and compile every Numba kernel (one time)")
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
