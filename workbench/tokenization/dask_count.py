"""Counting a corpus's words on a Dask cluster, for `train_bpe(..., client=...)`.

Files are grouped into units of a few MB (`ranges.plan_units`), and large files cut into byte ranges at the same safe
points the local trainer cuts its stream at (`ranges.safe_cut`: a space after a printable ASCII character; a newline for
``"superword"``; whole files for ``"none"``), so every unit is counted on a worker with the same Numba kernels and no
piece crosses a range.
Each worker sends back a `WordTable` (its unique words and their counts), never the text; tables are merged pairwise
in a tree on the workers as they arrive, and only the final table travels to the client, where the merges are
computed once, as HF tokenizers does across threads. The merge list is the same as counting in one process: the
merged counts are the same, and the merges depend on the counts only (not on the order words were seen in).

A worker that dies mid-count loses only its running tasks; Dask runs them again elsewhere (they are pure).
"""

from __future__ import annotations

import time

import numpy as np

from workbench.errors import DistributedError
from workbench.progress import Reporter
from workbench.tokenization.pretokenize import split_bytes
from workbench.tokenization.ranges import ON_WORKERS, plan_units, range_chunks
from workbench.tokenization.word_tables import WordCounter, WordTable


def _register_sizeof() -> None:
    """Tell Dask a `WordTable`'s real size (its arrays), for its transfer and memory decisions and `Client.nbytes`."""
    from dask.sizeof import sizeof

    sizeof.register(WordTable)(lambda table: table.nbytes + 64)


try:
    _register_sizeof()
except ImportError:  # pragma: no cover - dask is optional; this module is only used with it
    pass


def count_unit(unit: list[tuple], pretokenizer: str) -> WordTable:
    """The merged `WordTable` of a unit's ranges (`count_range` each); runs on a worker."""
    counter = WordCounter()
    counted = 0
    for path, a, b in unit:
        table = count_range(path, a, b, pretokenizer)
        counter.add_table(table)
        counted += table.bytes_counted
    out = counter.table()
    out.bytes_counted = counted
    return out


def count_range(path: str, start: int, end: int, pretokenizer: str) -> WordTable:
    """Count the words of the bytes of ``path`` from the first safe cut at or after ``start`` to the first at or
    after ``end`` (whole file for ``"none"``; see `ranges.range_chunks`), streamed in chunks as the local trainer
    streams a file. Runs on a worker; returns its `WordTable` (``pieces`` and ``bytes_counted`` included)."""
    counter = WordCounter()
    counted = 0
    for chunk in range_chunks(path, start, end, pretokenizer, error=DistributedError, hint=ON_WORKERS):
        data = np.frombuffer(chunk, dtype=np.uint8)
        counter.add(data, split_bytes(data, pretokenizer))
        counted += len(chunk)
    table = counter.table()
    table.bytes_counted = counted
    return table


def merge_tables(a: WordTable, b: WordTable) -> WordTable:
    """One table with the words of both and their summed counts (runs on a worker)."""
    counter = WordCounter()
    counter.add_table(a)
    counter.add_table(b)
    out = counter.table()
    out.bytes_counted = a.bytes_counted + b.bytes_counted
    return out


def count_on_cluster(client, paths, pretokenizer: str, *, range_bytes: int | None = None,
                     progress=None) -> tuple[WordTable, dict]:
    """Count the files ``paths`` on the workers of ``client``: returns the merged `WordTable` and figures (``units``
    counted, ``merges_on_workers``, ``count_table_bytes``: the word tables the ranges produced (all that can travel),
    ``worker_bytes_sent``: what Dask counted as sent between workers, ``final_table_bytes``: what the client fetched,
    ``seconds``). ``progress`` gets a `Progress` (stage ``"count"``, ``detail["bytes"]``) as ranges
    finish. Paths the workers cannot read are a `DistributedError` before anything runs."""
    from distributed import as_completed

    from workbench.distributed import check_readable

    check_readable(client, paths)
    start = time.perf_counter()
    sent_before = sum(client.run(_bytes_sent).values())
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    units = plan_units(paths, pretokenizer, n_workers, range_bytes)
    report = Reporter(progress, "count", total=len(units))
    counts = [client.submit(count_unit, unit, pretokenizer, pure=False) for unit in units]
    unit_bytes = {f.key: sum(b - a for _, a, b in unit) for f, unit in zip(counts, units)}
    ready = as_completed(counts)
    del counts  # only `ready` and the merge tree hold the futures: a merged table is freed on the workers
    waiting, done, done_bytes, merges, table_bytes = None, 0, 0, 0, 0
    try:
        for fut in ready:                   # a tree of pairwise merges, on the workers, as results arrive
            if fut.status == "error":
                fut.result()                # the worker's exception, raised here
            if fut.key in unit_bytes:
                done += 1
                done_bytes += unit_bytes[fut.key]
                table_bytes += int(client.nbytes(keys=[fut.key], summary=False).get(fut.key, 0))
                report(done, bytes=done_bytes)
            if waiting is None:
                waiting = fut
                continue
            ready.add(client.submit(merge_tables, waiting, fut, pure=False))
            merges += 1
            waiting = None
    except BaseException:
        client.cancel(list(ready.futures) + ([waiting] if waiting is not None else []))  # stop the rest
        raise
    if waiting is None:
        return WordCounter().table(), {"units": 0, "merges_on_workers": 0, "worker_bytes_sent": 0,
                                          "count_table_bytes": 0, "final_table_bytes": 0, "seconds": 0.0}
    table = waiting.result()
    return table, {"units": len(units), "merges_on_workers": merges, "count_table_bytes": table_bytes,
                   "worker_bytes_sent": sum(client.run(_bytes_sent).values()) - sent_before,
                   "final_table_bytes": table.nbytes, "seconds": time.perf_counter() - start}


def _bytes_sent(dask_worker) -> int:
    """Bytes this worker has sent to other workers and to clients (Dask's own counter)."""
    return int(getattr(dask_worker, "transfer_outgoing_bytes_total", 0))
