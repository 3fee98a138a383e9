"""Cutting corpus files into byte ranges that can be processed apart, with the same result as processing them whole.

A range's ends move forward to the first *safe cut* (`safe_cut`: a space after a printable ASCII character;
a newline for ``"superword"``), where every pre-tokenizer ends a piece whatever comes after, so counting, encoding or
measuring the ranges one by one (on one machine or on Dask workers) gives what the whole file gives. ``"none"`` keeps
files whole. Used by `dask_count` (BPE training) and `corpus` (`encode_files`, `corpus_metrics`).

>>> plan_units(["a.txt", "b.txt"], "gpt2", n_workers=2, sizes=[10, 20])      # two small files: one unit
[[('a.txt', 0, 10), ('b.txt', 0, 20)]]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from workbench.errors import CorpusError

RANGE_BYTES = 64 << 20
CHUNK_BYTES = 8 << 20  # how much of a file is read at once (the trainer streams files in such chunks)


def safe_cut(chunk: bytes) -> int:
    r"""Largest index i with chunk[i] a space (U+0020) and chunk[i-1] a printable non-space ASCII byte, or 0.

    Every pre-tokenizer here ends a piece there, and the pieces before it look no further than that space (the only
    lookahead, ``\s+(?!\S)``, ends whitespace runs, and chunk[i-1] is not whitespace), so counting the text before
    and after separately gives the same pieces as counting it whole. A newline is not such a point: how a run of
    newlines splits depends on what follows it.
    """
    return _last_cut(chunk, b" ")


def line_cut(chunk: bytes) -> int:
    """Largest index i with chunk[i] a newline and chunk[i-1] a printable non-space ASCII byte, or 0.

    For ``"superword"``, whose pieces run across single spaces, a space is no boundary, but such a newline is: the
    piece before it ends there whatever follows, and the one after starts fresh.
    """
    return _last_cut(chunk, b"\n")


def _last_cut(chunk: bytes, mark: bytes) -> int:
    """Largest index i with chunk[i] == ``mark`` and chunk[i-1] a printable non-space ASCII byte, or 0."""
    i = len(chunk)
    while True:
        i = chunk.rfind(mark, 1, i)
        if i < 0:
            return 0
        if 0x21 <= chunk[i - 1] <= 0x7E:
            return i


#: How to cut a streamed file for each pre-tokenizer (default :func:`safe_cut`; ``"none"`` reads files whole).
CUTS = {"superword": line_cut}


def _is_cut(data: bytes, i: int, pretokenizer: str) -> bool:
    """Whether ``data[i]`` starts a place the stream may be cut (see `safe_cut` / `line_cut`)."""
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


def plan_units(paths, pretokenizer: str, n_workers: int, range_bytes: int | None = None, *,
               sizes: Sequence[int] | None = None) -> list[list[tuple]]:
    """Work units of about ``range_bytes`` each (default: the corpus over 4 units per worker, between 1 and 64 MB):
    runs of whole small files, or one byte range of a large file (the worker moves both ends to the next safe cut;
    ``"none"`` keeps files whole). Each unit is a list of (path, start, end). ``sizes``: the files' sizes in bytes
    (default: read from the disk)."""
    if sizes is None:
        sizes = [Path(p).stat().st_size for p in paths]
    sized = [(str(p), int(s)) for p, s in zip(paths, sizes)]
    total = sum(size for _, size in sized)
    if range_bytes is None:
        range_bytes = int(min(RANGE_BYTES, max(1 << 20, total // max(1, 4 * n_workers))))
    units, run, run_bytes = [], [], 0
    for path, size in sized:
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


#: What a worker adds when it cannot read a corpus file.
ON_WORKERS = "; on a Dask cluster the workers must see the corpus files at the same paths as the client"


def range_chunks(path: str, start: int, end: int, pretokenizer: str, chunk_bytes: int = CHUNK_BYTES,
                 error: type[Exception] = CorpusError, hint: str = "") -> Iterator[bytes]:
    """The bytes of ``path`` from the first safe cut at or after ``start`` to the first at or after ``end`` (the
    whole file for ``"none"``), in chunks of about ``chunk_bytes`` that each end at a safe cut. Every byte of the
    range is yielded once, in order. A file that cannot be read raises ``error`` naming it (with ``hint``, e.g.
    `ON_WORKERS`)."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise error(f"Cannot read corpus file {str(path)!r}: {exc.strerror or exc}{hint}.") from None
    with handle:
        size = handle.seek(0, 2)
        if pretokenizer == "none":  # the whole file is one piece, as the local trainer reads it
            handle.seek(0)
            whole = handle.read()
            if whole:
                yield whole
            return
        a = first_cut(handle, start, size, pretokenizer)
        b = size if end >= size else first_cut(handle, end, size, pretokenizer)
        handle.seek(a)
        remaining = b - a
        carry = b""
        cut_at = CUTS.get(pretokenizer, safe_cut)
        while remaining > 0 or carry:
            block = handle.read(min(chunk_bytes, remaining)) if remaining > 0 else b""
            remaining -= len(block)
            chunk = carry + block
            if not chunk:
                break
            cut = len(chunk) if remaining <= 0 else cut_at(chunk)
            if cut == 0:
                carry = chunk
                continue
            yield chunk[:cut]
            carry = chunk[cut:]
