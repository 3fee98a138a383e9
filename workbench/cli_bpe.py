"""``workbench bpe train`` and ``workbench bpe encode``.

    workbench bpe train CORPUS... --vocab-size 32000 [--pretokenizer gpt2] [-o tokenizer.json] [--format hf|tiktoken]
                        [--workers N | --scheduler ADDRESS]     # count the corpus on a Dask cluster
    workbench bpe encode --tokenizer gpt2 FILE [--show ids|color|both] [--whitespace]

CORPUS is a shipped corpus name (prose_en, code, parallel, stdlib ...) or a file/folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from workbench.errors import WorkbenchError


def _corpus_paths(items: list[str]) -> list[Path]:
    from workbench.data import load_corpus, shipped_corpora

    paths: list[Path] = []
    for item in items:
        if item in shipped_corpora():
            paths.extend(shipped_corpora()[item].paths)
        else:
            paths.extend(load_corpus(item).paths)
    return paths


def cmd_train(args: argparse.Namespace) -> int:
    from workbench.tokenization import train_bpe

    paths = _corpus_paths(args.corpus)
    output = Path(args.output)
    if output.exists() and not args.force:
        raise WorkbenchError(f"{str(output)!r} exists; pass --force to overwrite it or choose another -o path.")
    client = None
    if args.scheduler or args.workers:
        from workbench.distributed import connect, dashboard_link

        client = connect(args.scheduler, workers=args.workers)
        print(f"Dask cluster: {len(client.scheduler_info()['workers'])} workers; dashboard {dashboard_link(client)}")
    start = time.perf_counter()
    try:
        tok = train_bpe(paths, args.vocab_size, pretokenizer=args.pretokenizer, special_tokens=args.special_token,
                        min_frequency=args.min_frequency, show_progress=not args.quiet, name=output.stem,
                        client=client)
    finally:
        if client is not None:
            client.close()
    wall = time.perf_counter() - start
    written = tok.save(output, format=args.format) or output
    s = tok.training_stats
    print(f"trained {tok.n_vocab} tokens ({s.merges} merges) on {s.corpus_bytes / 1e6:.1f} MB, {s.documents} files, "
          f"{s.pieces:,} pieces, {s.unique_words:,} unique words in {wall:.2f} s "
          f"(counting {s.seconds_count:.2f} s, merging {s.seconds_merge:.2f} s); stopped: {s.stopped_because}")
    if s.merges:
        first = ", ".join(f"{a!r}+{b!r}" for a, b in tok.merges[:5])
        print(f"first merges: {first}; last merge count {int(tok.merge_counts[-1])}")
    print(f"wrote {written}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from workbench.tokenization import load_tokenizer
    from workbench.tokenization.render import ansi_boundaries

    tok = load_tokenizer(args.tokenizer)
    if args.file == "-":
        text = sys.stdin.read()
    else:
        path = Path(args.file)
        if not path.is_file():
            raise WorkbenchError(f"No such file: {str(path)!r}.")
        text = path.read_bytes().decode("utf-8", "replace")
    ids = tok.encode(text)
    show = args.show or ("color" if sys.stdout.isatty() else "ids")
    if show in ("color", "both"):
        print(ansi_boundaries(tok, text, show_whitespace=args.whitespace))
    if show in ("ids", "both"):
        print(" ".join(map(str, ids)))
    n_bytes = len(text.encode())
    print(f"{len(ids)} tokens, {n_bytes} bytes, {n_bytes / max(len(ids), 1):.2f} bytes/token ({tok.name})",
          file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    from workbench.tokenization.pretokenize import PRETOKENIZERS

    bpe = sub.add_parser("bpe", help="train byte-level BPE and encode with it")
    bsub = bpe.add_subparsers(dest="bpe_command", required=True)
    train = bsub.add_parser("train", help="train a tokenizer on corpora or files")
    train.add_argument("corpus", nargs="+", help="shipped corpus names (prose_en, code, parallel, stdlib) or paths")
    train.add_argument("--vocab-size", type=int, required=True, help="vocabulary size, 256 bytes + specials included")
    train.add_argument("--pretokenizer", default="gpt2", choices=PRETOKENIZERS)
    train.add_argument("--special-token", action="append", default=[], help="a special token; repeatable")
    train.add_argument("--min-frequency", type=int, default=0)
    train.add_argument("-o", "--output", default="tokenizer.json", help="where to write (default tokenizer.json)")
    train.add_argument("--format", default="hf", choices=("hf", "tiktoken"))
    train.add_argument("--force", action="store_true", help="overwrite the output file")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    where = train.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="count the corpus on this Dask scheduler's workers "
                       "(the distributed extra; the workers must see the corpus files)")
    where.add_argument("--workers", type=int, metavar="N", help="count the corpus on a local Dask cluster of N "
                       "worker processes")
    train.set_defaults(func=cmd_train)
    encode = bsub.add_parser("encode", help="encode a file (- for standard input)")
    encode.add_argument("file")
    encode.add_argument("--tokenizer", "-t", default="gpt2", help="gpt2, smollm2, or a tokenizer file/folder")
    encode.add_argument("--show", choices=("ids", "color", "both"), default=None,
                        help="ids, coloured boundaries, or both (default: colour on a terminal, else ids)")
    encode.add_argument("--whitespace", action="store_true", help="make spaces, tabs and newlines visible")
    encode.set_defaults(func=cmd_encode)
