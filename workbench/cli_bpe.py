"""``workbench bpe train`` and ``workbench bpe encode``.

    workbench bpe train CORPUS... --vocab-size 32000 [--pretokenizer gpt2] [-o tokenizer.json] [--format hf|tiktoken]
                        [--workers N | --scheduler ADDRESS]     # count the corpus on a Dask cluster
    workbench bpe encode --tokenizer gpt2 FILE [--show ids|color|both] [--whitespace]
    workbench bpe encode-corpus CORPUS... --tokenizer gpt2 --out DIR [--overwrite] [--workers N | --scheduler ADDRESS]
    workbench bpe metrics CORPUS... [-t gpt2 -t smollm2] [--invalid error|skip] [--workers N | --scheduler ADDRESS]

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


def _client(args: argparse.Namespace):
    """The Dask client asked for by ``--scheduler`` / ``--workers``, or None."""
    if not (args.scheduler or args.workers):
        return None
    from workbench.distributed import cluster_summary, connect

    client = connect(args.scheduler, workers=args.workers)
    print(cluster_summary(client))
    return client


def _progress_bar(label: str):
    """A progress callback (`workbench.progress.Progress`) that redraws one line on standard error."""
    def show(p) -> None:
        print(f"\r{label}: {p.done}/{p.total} units, {p.detail['bytes'] / 1e6:,.1f} MB, {p.seconds:.1f} s",
              end="\n" if p.done == p.total else "", file=sys.stderr, flush=True)
    return show


def cmd_encode_corpus(args: argparse.Namespace) -> int:
    from workbench.tokenization import load_tokenizer
    from workbench.tokenization.corpus_files import encode_files

    tok = load_tokenizer(args.tokenizer)
    paths = _corpus_paths(args.corpus)
    client = _client(args)
    start = time.perf_counter()
    try:
        files = encode_files(tok, paths, out_dir=args.out, overwrite=args.overwrite, client=client,
                             progress=None if args.quiet else _progress_bar("encoding"))
    finally:
        if client is not None:
            client.close()
    wall = time.perf_counter() - start
    n_bytes, n_tokens = sum(f.n_bytes for f in files), sum(f.n_tokens for f in files)
    print(f"encoded {len(files)} files, {n_bytes / 1e6:.1f} MB -> {n_tokens:,} tokens ({tok.name}, "
          f"{n_bytes / max(n_tokens, 1):.2f} bytes/token) in {wall:.2f} s ({n_bytes / 1e6 / wall:.1f} MB/s); "
          f"wrote {Path(args.out) / 'manifest.json'} and one .npy per file")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from workbench.tokenization import load_tokenizer
    from workbench.tokenization.metrics import metric_table

    names = args.tokenizer or ["gpt2"]
    tokenizers = {name: load_tokenizer(name) for name in names}
    texts = {item: _corpus_paths([item]) for item in args.corpus}
    client = _client(args)
    start = time.perf_counter()
    try:
        table = metric_table(tokenizers, texts, reference=None, client=client, invalid=args.invalid,
                             progress=None if args.quiet else _progress_bar("measuring"))
    finally:
        if client is not None:
            client.close()
    columns = ["n_bytes", "n_tokens", "bytes_per_token", "fertility", "renyi_efficiency", "vocab_utilisation",
               "char_split_rate", "continuation_rate"]
    frame = table.to_pandas().set_index(["tokenizer", "text"])[columns]
    print(frame.to_string(float_format=lambda v: f"{v:.4f}"))
    if table.skipped_bytes.any():
        print(f"left out (not UTF-8): {int(table.skipped_bytes.max()):,} bytes per tokenizer")
    print(f"({time.perf_counter() - start:.2f} s)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from workbench.tokenization import train_bpe

    paths = _corpus_paths(args.corpus)
    output = Path(args.output)
    if output.exists() and not args.force:
        raise WorkbenchError(f"{str(output)!r} exists; pass --force to overwrite it or choose another -o path.")
    client = _client(args)
    start = time.perf_counter()
    try:
        tok = train_bpe(paths, args.vocab_size, pretokenizer=args.pretokenizer, special_tokens=args.special_token,
                        min_frequency=args.min_frequency, show_progress=not args.quiet, name=output.stem,
                        client=client)
    finally:
        if client is not None:
            client.close()
    wall = time.perf_counter() - start
    written = tok.save(output, format=args.format, overwrite=args.force)
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


def _cluster_options(parser, what: str) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help=f"{what} on this Dask scheduler's workers "
                       "(the distributed extra; the workers must see the corpus files)")
    where.add_argument("--workers", type=int, metavar="N", help=f"{what} on a local Dask cluster of N "
                       "worker processes")


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
    _cluster_options(train, "count the corpus")
    train.set_defaults(func=cmd_train)
    encode = bsub.add_parser("encode", help="encode a file (- for standard input)")
    encode.add_argument("file")
    encode.add_argument("--tokenizer", "-t", default="gpt2", help="gpt2, smollm2, or a tokenizer file/folder")
    encode.add_argument("--show", choices=("ids", "color", "both"), default=None,
                        help="ids, coloured boundaries, or both (default: colour on a terminal, else ids)")
    encode.add_argument("--whitespace", action="store_true", help="make spaces, tabs and newlines visible")
    encode.set_defaults(func=cmd_encode)
    corpus = bsub.add_parser("encode-corpus", help="encode corpus files to one .npy of ids per file (+ manifest.json)")
    corpus.add_argument("corpus", nargs="+", help="shipped corpus names (prose_en, code, parallel, stdlib) or paths")
    corpus.add_argument("--tokenizer", "-t", default="gpt2", help="gpt2, smollm2, or a tokenizer file/folder")
    corpus.add_argument("--out", required=True, help="folder for the .npy files and manifest.json")
    corpus.add_argument("--overwrite", action="store_true", help="replace ids written before")
    corpus.add_argument("--quiet", action="store_true", help="no progress line")
    _cluster_options(corpus, "encode")
    corpus.set_defaults(func=cmd_encode_corpus)
    metrics = bsub.add_parser("metrics", help="tokenizer metrics (compression, fertility, Renyi efficiency ...) of "
                              "corpora, measured file by file")
    metrics.add_argument("corpus", nargs="+", help="shipped corpus names or paths; one table row each")
    metrics.add_argument("--tokenizer", "-t", action="append", help="gpt2, smollm2, or a file; repeatable "
                         "(default gpt2)")
    metrics.add_argument("--quiet", action="store_true", help="no progress line")
    metrics.add_argument("--invalid", choices=("error", "skip"), default="error",
                         help="text that is not UTF-8: stop with an error, or leave it out and say how much")
    _cluster_options(metrics, "measure")
    metrics.set_defaults(func=cmd_metrics)
