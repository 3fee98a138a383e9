"""BPE counting and training on a Dask cluster against one process, on this machine.

A `LocalCluster` of 2 single-threaded worker processes (loopback) against `train_bpe` in one process, on the
standard-library corpus (31.5 MB, 1,790 files) and on it repeated to >= 300 MB (10 files of the whole corpus laid end
to end, each cut into byte ranges). For each: wall time of counting and of the whole training, speedup, and the bytes
that travelled (the word tables the workers produced, what Dask counted as sent between workers, what the client
fetched) against the corpus size. Merges are checked identical.
Then corpus-scale encoding (`encode_files`, ids written to one .npy per file by whoever encodes) and the metric table
(`corpus_metrics`) with GPT-2 on the stdlib corpus and on 1 (--quick) or 3 copies laid end to end: one process
against the cluster, ids and metrics checked identical.

    python benchmarks/distributed.py [--quick] [--json]   # --quick: the 31.5 MB corpus and 3 copies (~95 MB)
    # the JSON object is the last line printed; results also go to benchmarks/results/distributed[_quick].json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this file is named like Dask's module: keep its folder off the path so that "import distributed" finds Dask's
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))


def _load_output():
    """benchmarks/_output.py, loaded from its file (its folder is off the path, also in Dask's spawned workers)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_output", Path(__file__).resolve().with_name("_output.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_output = _load_output()
emit, quiet_if = _output.emit, _output.quiet_if

VOCAB = 32000


def _train(paths, client=None) -> tuple[object, float]:
    from workbench.tokenization import train_bpe

    t = time.perf_counter()
    tok = train_bpe(paths, VOCAB, client=client)
    return tok, time.perf_counter() - t


def _row(name: str, paths, client) -> dict:
    size = sum(Path(p).stat().st_size for p in paths)
    local, local_s = _train(paths)
    dist, dist_s = _train(paths, client)
    ls, ds = local.training_stats, dist.training_stats
    fig = ds.extra["distributed"]
    row = {
        "corpus": name, "mb": round(size / 1e6, 1), "files": len(paths), "vocab": VOCAB,
        "one_process_s": round(local_s, 2), "one_process_count_s": round(ls.seconds_count, 2),
        "dask_s": round(dist_s, 2), "dask_count_s": round(ds.seconds_count, 2),
        "merge_s": round(ds.seconds_merge, 2),
        "count_speedup": round(ls.seconds_count / ds.seconds_count, 2), "speedup": round(local_s / dist_s, 2),
        "units": fig["units"], "count_table_mb": round(fig["count_table_bytes"] / 1e6, 2),
        "worker_sent_mb": round(fig["worker_bytes_sent"] / 1e6, 2),
        "final_table_mb": round(fig["final_table_bytes"] / 1e6, 2),
        "unique_words": ds.unique_words, "merges_identical": dist.merges == local.merges,
        "count_mb_per_s_per_worker": round(size / 1e6 / ds.seconds_count / 2, 1),
    }
    row["travelled_fraction"] = round((fig["count_table_bytes"] + fig["final_table_bytes"]) / size, 4)
    print(f"{name:28s} {row['mb']:7.1f} MB: one process {local_s:6.2f} s (count {ls.seconds_count:5.2f}), "
          f"Dask 2 workers {dist_s:6.2f} s (count {ds.seconds_count:5.2f}, merge {ds.seconds_merge:5.2f}); "
          f"count speed-up {row['count_speedup']:.2f}x, total {row['speedup']:.2f}x; {fig['units']} units; tables "
          f"{row['count_table_mb']:.1f} MB produced, {row['worker_sent_mb']:.1f} MB sent between workers, "
          f"{row['final_table_mb']:.1f} MB to the client; merges identical: {row['merges_identical']}", flush=True)
    return row


def _encode_row(name: str, paths, client, tok, work: Path) -> dict:
    """encode_files (ids written to .npy by whoever encodes) and corpus_metrics, one process against the cluster."""
    import numpy as np

    from workbench.tokenization.corpus_files import encode_files
    from workbench.tokenization.metrics import corpus_metrics

    size = sum(Path(p).stat().st_size for p in paths)
    timed = {}
    for where, c in (("one_process", None), ("dask", client)):
        t = time.perf_counter()
        files = encode_files(tok, paths, out_dir=work / f"{where}-{len(paths)}", client=c)
        timed[f"{where}_encode_s"] = time.perf_counter() - t
        t = time.perf_counter()
        metrics = corpus_metrics(tok, paths, client=c, invalid="skip")  # 3 stdlib files are Latin-1
        timed[f"{where}_metrics_s"] = time.perf_counter() - t
        timed[where] = (files, metrics)
    (lf, lm), (df, dm) = timed["one_process"], timed["dask"]
    same_ids = all(np.array_equal(a.load(), b.load()) for a, b in zip(lf, df))
    same_metrics = {k: v for k, v in lm.as_dict().items() if v == v} == {k: v for k, v in dm.as_dict().items() if v == v}
    n_units = len(__import__("workbench.tokenization.ranges", fromlist=["plan_units"]).plan_units(
        [str(p) for p in paths], tok.pretokenizer, 2))
    row = {"corpus": name, "mb": round(size / 1e6, 1), "files": len(paths), "tokenizer": tok.name,
           "tokens": sum(f.n_tokens for f in lf),
           **{k: round(v, 2) for k, v in timed.items() if k.endswith("_s")},
           "encode_speedup": round(timed["one_process_encode_s"] / timed["dask_encode_s"], 2),
           "metrics_speedup": round(timed["one_process_metrics_s"] / timed["dask_metrics_s"], 2),
           "units": n_units, "counts_to_client_mb": round(n_units * tok.n_vocab * 8 / 1e6, 1),
           "ids_written_mb": round(sum(f.n_tokens for f in lf) * 2 / 1e6, 1),
           "ids_identical": same_ids, "metrics_identical": same_metrics}
    print(f"{name:28s} {row['mb']:7.1f} MB, {tok.name}: encode one process {row['one_process_encode_s']:.2f} s, "
          f"Dask {row['dask_encode_s']:.2f} s ({row['encode_speedup']:.2f}x); metrics one process "
          f"{row['one_process_metrics_s']:.2f} s, Dask {row['dask_metrics_s']:.2f} s ({row['metrics_speedup']:.2f}x); "
          f"ids identical: {same_ids}, metrics identical: {same_metrics}; {row['counts_to_client_mb']} MB of counts "
          f"to the client, {row['ids_written_mb']} MB of ids written by the workers", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 31.5 MB corpus and 3 copies (~95 MB)")
    parser.add_argument("--json", action="store_true", help="only print the JSON line")
    args = parser.parse_args()
    quiet_if(args.json)
    import dask
    import distributed

    from workbench.data import stdlib_paths
    from workbench.distributed import connect
    from workbench.tokenization import load_tokenizer, train_bpe

    train_bpe(["warm up the kernels", "once"], 300)  # compile outside the clock (workers compile from the cache)
    client = connect(workers=2)
    copies = 3 if args.quick else 10
    result = {"benchmark": "distributed", "quick": args.quick,
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version(), "dask": dask.__version__,
                          "distributed": distributed.__version__},
              "cluster": "LocalCluster(n_workers=2, threads_per_worker=1, processes=True), loopback", "rows": []}
    try:
        paths = stdlib_paths()
        client.run(lambda: train_bpe(["warm up the kernels", "once"], 300))
        result["rows"].append(_row("stdlib (1,790 files)", paths, client))
        tok = load_tokenizer("gpt2")
        with tempfile.TemporaryDirectory() as work:
            whole = b"".join(p.read_bytes() for p in paths)
            big = []
            for i in range(copies):
                path = Path(work) / f"stdlib_copy_{i}.txt"
                path.write_bytes(whole)
                big.append(path)
            result["rows"].append(_row(f"stdlib x {copies} ({copies} files)", big, client))
            encode_copies = big[:1 if args.quick else 3]
            client.run(lambda: load_tokenizer("gpt2").encode("warm up the encoder"))
            result["encode_rows"] = [_encode_row("stdlib (1,790 files)", paths, client, tok, Path(work)),
                                     _encode_row(f"stdlib x {len(encode_copies)} ({len(encode_copies)} files)",
                                                 encode_copies, client, tok, Path(work))]
    finally:
        client.close()
    emit(result, "distributed", quick=args.quick)


if __name__ == "__main__":
    main()
