"""Counting a corpus's words on a Dask cluster, for `train_bpe(..., client=...)`.

Files are grouped into units of a few MB (`plan_units`), and large files cut into byte ranges at the same safe points
the local trainer cuts its stream at (`trainer._safe_cut`: a space after a printable ASCII character; a newline for
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
from pathlib import Path

import numpy as np

from workbench.errors import DistributedError
from workbench.tokenization import trainer as T

RANGE_BYTES = 64 << 20


def _register_sizeof() -> None:
    """Tell Dask a `WordTable`'s real size (its arrays), for its transfer and memory decisions and `Client.nbytes`."""
    from dask.sizeof import sizeof

    sizeof.register(T.WordTable)(lambda table: table.nbytes + 64)


try:
    _register_sizeof()
except ImportError:  # pragma: no cover - dask is optional; this module is only used with it
    pass


def _is_cut(data: bytes, i: int, pretokenizer: str) -> bool:
    """Whether ``data[i]`` starts a place the stream may be cut (see `trainer._safe_cut` / `_line_cut`)."""
    mark = 0x0A if pretokenizer == "superword" else 0x20
    return data[i] == mark and 0x21 <= data[i - 1] <= 0x7E


def first_cut(handle, pos: int, size: int, pretokenizer: str, block: int = 1 << 20) -> int:
    """The first safe cut at or after byte ``pos`` of the open file (``size`` bytes): its offset, or ``size``."""
    if pos <= 0:
        return 0
    while pos < size:
        handle.seek(pos - 1)
        data = handle.read(block + 1)
        for i in range(1, len(data)):
            if _is_cut(data, i, pretokenizer):
                return pos - 1 + i
        pos += block
    return size


def plan_units(paths, pretokenizer: str, n_workers: int, range_bytes: int | None = None) -> list[list[tuple]]:
    """Work units of about ``range_bytes`` each (default: the corpus over 4 units per worker, between 1 and 64 MB):
    runs of whole small files, or one byte range of a large file (the worker moves both ends to the next safe cut;
    ``"none"`` keeps files whole). Each unit is a list of (path, start, end)."""
    sizes = [(str(p), Path(p).stat().st_size) for p in paths]
    total = sum(size for _, size in sizes)
    if range_bytes is None:
        range_bytes = int(min(RANGE_BYTES, max(1 << 20, total // max(1, 4 * n_workers))))
    units, run, run_bytes = [], [], 0
    for path, size in sizes:
        if pretokenizer != "none" and size > range_bytes:
            units += [[(path, a, min(size, a + range_bytes))] for a in range(0, size, range_bytes)]
            continue
        if run and run_bytes + size > range_bytes:  # close the run rather than overshoot the unit size
            units.append(run)
            run, run_bytes = [], 0
        run.append((path, 0, size))
        run_bytes += size
    if run:
        units.append(run)
    return units


def count_unit(unit: list[tuple], pretokenizer: str) -> T.WordTable:
    """The merged `WordTable` of a unit's ranges (`count_range` each); runs on a worker."""
    counter = T._WordCounter()
    counted = 0
    for path, a, b in unit:
        table = count_range(path, a, b, pretokenizer)
        counter.add_table(table)
        counted += table.bytes_counted
    out = counter.table()
    out.bytes_counted = counted
    return out


def count_range(path: str, start: int, end: int, pretokenizer: str) -> T.WordTable:
    """Count the words of the bytes of ``path`` from the first safe cut at or after ``start`` to the first at or
    after ``end`` (whole file for ``"none"``), streamed in chunks as the local trainer streams a file. Runs on a
    worker; returns its `WordTable` (``pieces`` and ``bytes_counted`` included)."""
    counter = T._WordCounter()
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise DistributedError(f"a worker cannot read {path!r}: {exc.strerror or exc}; the workers must see the "
                               "corpus files at the same paths as the client") from None
    with handle:
        size = handle.seek(0, 2)
        if pretokenizer == "none":
            a, b = 0, size
        else:
            a = first_cut(handle, start, size, pretokenizer)
            b = size if end >= size else first_cut(handle, end, size, pretokenizer)
        handle.seek(a)
        remaining = b - a
        carry = b""
        cut_at = T._CUTS.get(pretokenizer, T._safe_cut)
        if pretokenizer == "none":  # the whole file is one piece, as the local trainer reads it
            whole = handle.read()
            if whole:
                data = np.frombuffer(whole, dtype=np.uint8)
                counter.add(data, T.split_bytes(data, pretokenizer))
            remaining = 0
        while remaining > 0 or carry:
            block = handle.read(min(T.CHUNK_BYTES, remaining)) if remaining > 0 else b""
            remaining -= len(block)
            chunk = carry + block
            if not chunk:
                break
            cut = len(chunk) if remaining <= 0 else cut_at(chunk)
            if cut == 0:
                carry = chunk
                continue
            data = np.frombuffer(chunk[:cut], dtype=np.uint8)
            counter.add(data, T.split_bytes(data, pretokenizer))
            carry = chunk[cut:]
    table = counter.table()
    table.bytes_counted = b - a
    return table


def merge_tables(a: T.WordTable, b: T.WordTable) -> T.WordTable:
    """One table with the words of both and their summed counts (runs on a worker)."""
    counter = T._WordCounter()
    counter.add_table(a)
    counter.add_table(b)
    out = counter.table()
    out.bytes_counted = a.bytes_counted + b.bytes_counted
    return out


def count_on_cluster(client, paths, pretokenizer: str, *, range_bytes: int | None = None,
                     progress=None) -> tuple[T.WordTable, dict]:
    """Count the files ``paths`` on the workers of ``client``: returns the merged `WordTable` and figures (``units``
    counted, ``merges_on_workers``, ``count_table_bytes``: the word tables the ranges produced (all that can travel),
    ``worker_bytes_sent``: what Dask counted as sent between workers, ``final_table_bytes``: what the client fetched,
    ``seconds``). ``progress(units_done, units, bytes_done)`` is called as ranges
    finish. Paths the workers cannot read are a `DistributedError` before anything runs."""
    from distributed import as_completed

    from workbench.distributed import missing_on_workers

    missing = missing_on_workers(client, paths)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DistributedError(f"the Dask workers cannot read {shown}: a cluster's workers must see the corpus "
                               "files at the same paths as the client (a shared file system)")
    start = time.perf_counter()
    sent_before = sum(client.run(_bytes_sent).values())
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    units = plan_units(paths, pretokenizer, n_workers, range_bytes)
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
                if progress is not None:
                    progress(done, len(units), done_bytes)
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
        return T._WordCounter().table(), {"units": 0, "merges_on_workers": 0, "worker_bytes_sent": 0,
                                          "count_table_bytes": 0, "final_table_bytes": 0, "seconds": 0.0}
    table = waiting.result()
    return table, {"units": len(units), "merges_on_workers": merges, "count_table_bytes": table_bytes,
                   "worker_bytes_sent": sum(client.run(_bytes_sent).values()) - sent_before,
                   "final_table_bytes": table.nbytes, "seconds": time.perf_counter() - start}


def _bytes_sent(dask_worker) -> int:
    """Bytes this worker has sent to other workers and to clients (Dask's own counter)."""
    return int(getattr(dask_worker, "transfer_outgoing_bytes_total", 0))
