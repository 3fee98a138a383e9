"""Encoding and measuring corpus files, on one machine or on a Dask cluster (``client=``), with the same result.

Files are cut into units of a few MB (`ranges.plan_units`): runs of small files, or byte ranges of a large file whose
ends sit where every pre-tokenizer ends a piece, so each range encodes to exactly the ids the whole file gives there.
On one machine the units run one after another (memory stays bounded by a unit, whatever the corpus size); with a
Dask client they run on the workers, the tokenizer sent to each worker once.

* `encode_files`: the ids of every file, in memory, or written by the workers to ``out_dir`` as one ``.npy`` per
  file (uint16 when the vocabulary fits, else uint32, as nanoGPT's ``prepare.py`` does) plus ``manifest.json``;
  then only the counts travel to the client, never the ids.
* `corpus_counts`: the additive `TextCounts` of the files (one histogram of ids and a few sums per unit, added up by
  the client as they arrive), from which `metrics.corpus_metrics` and `metric_table` compute every metric.

Files are encoded as ordinary text (special-token text is not a special token), each file on its own: the ids of a
file are ``tokenizer.encode_bytes(file's bytes)`` and its metrics those of ``text_metrics`` on its text.

>>> from pathlib import Path
>>> from workbench.tokenization import load_tokenizer
>>> files = encode_files(load_tokenizer("gpt2"), [Path("corpus.txt")])       # doctest: +SKIP
>>> files[0].n_tokens, files[0].ids[:3]                                      # doctest: +SKIP
(2174, array([464, 3797, 3332], dtype=uint16))
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.errors import ConfigurationError, CorpusError
from workbench.progress import ProgressCallback, Reporter
from workbench.saving import atomic_path
from workbench.tokenization.counts import TextCounts, _check_tokenizer, text_counts
from workbench.tokenization.ranges import ON_WORKERS, plan_units, range_chunks
from workbench.tokenization.tokenizer import Tokenizer

CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class EncodedFile:
    """One encoded file: its ``n_bytes`` and ``n_tokens``, and its ids (``ids``, in memory) or the ``.npy`` file
    they were written to (``out``; read it with ``np.load(out, mmap_mode="r")``)."""

    path: str
    n_bytes: int
    n_tokens: int
    out: str | None = None
    ids: np.ndarray | None = field(default=None, repr=False)

    def load(self) -> np.ndarray:
        """The ids, from memory or from ``out`` (memory-mapped)."""
        return self.ids if self.ids is not None else np.load(self.out, mmap_mode="r")


def ids_dtype(n_vocab: int) -> np.dtype:
    """uint16 when every id fits (``n_vocab`` <= 65,536, as GPT-2's 50,257), else uint32."""
    return np.dtype(np.uint16 if n_vocab <= 1 << 16 else np.uint32)


# -- what runs on a unit (locally or on a worker) ----------------------------------------------------------------
def encode_range(tokenizer: Tokenizer, path: str, start: int, end: int) -> tuple[np.ndarray, int]:
    """(ids, bytes read) of a range of ``path`` (see `ranges.range_chunks`)."""
    parts, n_bytes = [], 0
    for chunk in range_chunks(path, start, end, tokenizer.pretokenizer, CHUNK_BYTES, hint=ON_WORKERS):
        parts.append(tokenizer._encode_array(np.frombuffer(chunk, dtype=np.uint8)))
        n_bytes += len(chunk)
    ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return ids.astype(ids_dtype(tokenizer.n_vocab)), n_bytes


def _encode_unit(tokenizer: Tokenizer, unit: list[tuple], parts_dir: str | None) -> list[tuple]:
    """One ``(path, start, n_bytes, n_tokens, ids or the part file written)`` per range of the unit."""
    out = []
    for path, a, b in unit:
        ids, n_bytes = encode_range(tokenizer, path, a, b)
        if parts_dir is None:
            out.append((path, a, n_bytes, len(ids), ids))
            continue
        part = os.path.join(parts_dir, f"{uuid.uuid4().hex}.npy")
        try:
            np.save(part, ids)
        except OSError as exc:
            raise CorpusError(f"cannot write token ids to {parts_dir!r}: {exc.strerror or exc}; on a Dask cluster "
                              "the workers must see out_dir at the same path as the client") from None
        out.append((path, a, n_bytes, len(ids), part))
    return out


INVALID = ("error", "skip")


def counts_range(tokenizer: Tokenizer, path: str, start: int, end: int, word_pattern: str | None,
                 invalid: str = "error") -> TextCounts:
    """The `TextCounts` of a range of ``path``. Text that is not UTF-8 is a CorpusError (``invalid="error"``), or
    its chunk (the whole of a small file; a few MB cut at a space of a large one) is left out and counted in
    ``skipped_bytes`` / ``skipped`` (``invalid="skip"``)."""
    total = TextCounts(tokenizer.n_vocab)
    offset = start
    for chunk in range_chunks(path, start, end, tokenizer.pretokenizer, CHUNK_BYTES, hint=ON_WORKERS):
        try:
            total = total + text_counts(tokenizer, chunk, word_pattern=word_pattern)
        except UnicodeDecodeError as exc:
            if invalid != "skip":
                raise CorpusError(f"{path!r} is not UTF-8 text (near byte {offset + exc.start:,}); the metrics count "
                                  "characters and words, so they need text (invalid='skip' leaves such text out "
                                  "and reports it)") from None
            segments, skipped = _valid_segments(chunk, tokenizer.pretokenizer)
            for a, b in segments:
                total = total + text_counts(tokenizer, chunk[a:b], word_pattern=word_pattern)
            total = total + TextCounts(tokenizer.n_vocab, skipped_bytes=skipped, skipped=(path,))
        offset += len(chunk)
    return total


def _valid_segments(chunk: bytes, pretokenizer: str) -> tuple[list[tuple[int, int]], int]:
    """The parts of ``chunk`` left when each stretch of bytes that are not UTF-8 is cut out with the text around it
    up to the nearest safe cuts (`ranges`) on both sides: ``([(start, end), ...], bytes cut out)``. Safe cuts depend
    on the text only, and chunk ends are safe cuts, so what is left out does not depend on how the file was cut into
    chunks and ranges (the same on one machine and on any cluster)."""
    from workbench.tokenization.ranges import _is_cut

    def cut_before(i: int, low: int) -> int:
        while i > low and not _is_cut(chunk, i, pretokenizer):
            i -= 1
        return max(i, low)

    def cut_after(i: int) -> int:
        while i < len(chunk) and not (i > 0 and _is_cut(chunk, i, pretokenizer)):
            i += 1
        return i

    segments, skipped, pos = [], 0, 0
    while pos < len(chunk):
        try:
            chunk[pos:].decode("utf-8")
        except UnicodeDecodeError as exc:
            a = cut_before(pos + exc.start, pos) if pretokenizer != "none" else pos
            b = cut_after(pos + exc.end) if pretokenizer != "none" else len(chunk)
            if a > pos:
                segments.append((pos, a))
            skipped += b - a
            pos = b
            continue
        segments.append((pos, len(chunk)))
        break
    return segments, skipped


def _counts_unit(tokenizer: Tokenizer, unit: list[tuple], word_pattern: str | None, invalid: str) -> TextCounts:
    total = TextCounts(tokenizer.n_vocab)
    for path, a, b in unit:
        total = total + counts_range(tokenizer, path, a, b, word_pattern, invalid)
    return total


def _assemble(jobs: list[tuple[list[str], str]], dtype: str) -> None:
    """For each (part files, target): the parts concatenated into one ``.npy`` at ``target`` (written aside, then
    renamed; a single part is just renamed)."""
    for parts, target in jobs:
        _assemble_one(parts, dtype, target)


def _assemble_one(parts: list[str], dtype: str, target: str) -> None:
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    if len(parts) == 1:
        os.replace(parts[0], target)
        return
    arrays = [np.load(p, mmap_mode="r") for p in parts]
    n = sum(len(a) for a in arrays)
    with atomic_path(target, overwrite=True) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=(n,))
        at = 0
        for a in arrays:
            out[at:at + len(a)] = a
            at += len(a)
        out.flush()
        del out, arrays
    for p in parts:
        os.remove(p)


# -- running units ------------------------------------------------------------------------------------------------
def _files(paths) -> list[str]:
    from workbench.data.loaders import list_files

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = [str(p) for p in list_files(list(paths))]
    if not files:
        raise CorpusError("No files given.")
    return files


def _on_units(client, tokenizer: Tokenizer, fn, units: list, args: tuple, progress: ProgressCallback | None,
              on_result: Callable[[int, object], None]) -> None:
    """Run ``fn(tokenizer, unit, *args)`` for every unit, here (``client=None``) or on the cluster, and hand each
    result to ``on_result(unit index, result)`` as it arrives (so the client holds one result at a time)."""
    unit_bytes = [sum(b - a for _, a, b in unit) for unit in units]
    done_bytes = 0
    report = Reporter(progress, "encode" if fn is _encode_unit else "measure", total=len(units))
    if client is None:
        for i, unit in enumerate(units):
            on_result(i, fn(tokenizer, unit, *args))
            done_bytes += unit_bytes[i]
            report(i + 1, bytes=done_bytes)
        return
    from distributed import as_completed

    shipped = client.scatter(tokenizer, broadcast=True)  # once per worker
    futures = [client.submit(fn, shipped, unit, *args, pure=False) for unit in units]
    index = {f.key: i for i, f in enumerate(futures)}
    done = 0
    try:
        for fut in as_completed(futures):
            i = index[fut.key]
            on_result(i, fut.result())  # a worker's exception is raised here
            fut.release()
            done += 1
            done_bytes += unit_bytes[i]
            report(done, bytes=done_bytes)
    except BaseException:
        client.cancel(futures)
        raise


def _plan(client, files: list[str], pretokenizer: str, range_bytes: int | None) -> list:
    n_workers = 1
    if client is not None:
        from workbench.distributed import check_readable

        check_readable(client, files)
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    return plan_units(files, pretokenizer, n_workers, range_bytes)


# -- the public functions -----------------------------------------------------------------------------------------
def encode_files(tokenizer: Tokenizer, paths, *, out_dir=None, overwrite: bool = False, client=None,
                 range_bytes: int | None = None, progress: ProgressCallback | None = None) -> list[EncodedFile]:
    """The token ids of every file of ``paths`` (files or folders, searched recursively), one `EncodedFile` each,
    in the order of ``list_files``.

    ``out_dir``: write each file's ids to ``out_dir/<its path relative to the files' common folder>.npy`` and a
    ``manifest.json`` (existing ones are refused unless ``overwrite``); without it the ids are returned in memory.
    ``client``: a Dask client (`workbench.distributed.connect`): the files are encoded on its workers (which must
    see ``paths`` and ``out_dir`` at the same paths). ``range_bytes``: the size of a unit of work.
    ``progress``: a `Progress` per unit done (stage ``"encode"``, ``detail["bytes"]`` read so far). The ids equal
    ``tokenizer.encode_bytes`` of each whole file.
    """
    tokenizer = _check_tokenizer(getattr(tokenizer, "name", "tokenizer"), tokenizer)
    files = _files(paths)
    dtype = ids_dtype(tokenizer.n_vocab)
    targets = parts_dir = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        targets = _targets(files, out_dir)
        existing = [t for t in [*targets, out_dir / "manifest.json"] if t.exists()]
        if existing and not overwrite:
            raise ConfigurationError(f"{existing[0]} exists{f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''}"
                                     "; pass overwrite=True (CLI: --overwrite) or choose another out_dir")
        parts_dir = out_dir / f".parts-{uuid.uuid4().hex[:8]}"
        parts_dir.mkdir(parents=True)
    units = _plan(client, files, tokenizer.pretokenizer, range_bytes)
    pieces: dict[str, list] = {f: [] for f in files}

    def collect(_, result) -> None:
        for path, a, n_bytes, n_tokens, ids in result:
            pieces[path].append((a, n_bytes, n_tokens, ids))

    start = time.perf_counter()
    try:
        _on_units(client, tokenizer, _encode_unit, units, (None if parts_dir is None else str(parts_dir),), progress,
                  collect)
        out = []
        for k, path in enumerate(files):
            ranges = sorted(pieces[path], key=lambda r: r[0])
            n_bytes, n_tokens = sum(r[1] for r in ranges), sum(r[2] for r in ranges)
            if targets is None:
                ids = np.concatenate([r[3] for r in ranges]) if ranges else np.zeros(0, dtype)
                out.append(EncodedFile(path, n_bytes, n_tokens, ids=ids.astype(dtype, copy=False)))
            else:
                out.append(EncodedFile(path, n_bytes, n_tokens, out=str(targets[k])))
        if targets is not None:
            jobs = [([r[3] for r in sorted(pieces[f.path], key=lambda r: r[0])], str(targets[k]))
                    for k, f in enumerate(out)]
            if client is None:
                _assemble(jobs, dtype.str)
            else:  # on the workers, a few hundred files per task
                client.gather([client.submit(_assemble, jobs[i:i + 256], dtype.str, pure=False)
                               for i in range(0, len(jobs), 256)])
            _write_manifest(out_dir, tokenizer, dtype, out, time.perf_counter() - start)
    finally:
        if parts_dir is not None:
            shutil.rmtree(parts_dir, ignore_errors=True)
    return out


def _targets(files: list[str], out_dir: Path) -> list[Path]:
    """``out_dir`` / each file's path relative to the files' common folder, with ``.npy`` added."""
    base = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    return [out_dir / (os.path.relpath(os.path.abspath(f), base) + ".npy") for f in files]


def _write_manifest(out_dir: Path, tokenizer: Tokenizer, dtype: np.dtype, files: list[EncodedFile],
                    seconds: float) -> None:
    manifest = {"tokenizer": tokenizer.name, "n_vocab": tokenizer.n_vocab, "pretokenizer": tokenizer.pretokenizer,
                "dtype": dtype.name, "seconds": round(seconds, 3),
                "n_bytes": sum(f.n_bytes for f in files), "n_tokens": sum(f.n_tokens for f in files),
                "files": [{"path": f.path, "out": os.path.relpath(f.out, out_dir), "n_bytes": f.n_bytes,
                           "n_tokens": f.n_tokens} for f in files]}
    with atomic_path(out_dir / "manifest.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))


def corpus_counts(tokenizer: Tokenizer, paths, *, client=None, word_pattern: str | None = None,
                  range_bytes: int | None = None, progress: ProgressCallback | None = None,
                  invalid: str = "error") -> TextCounts:
    """The `TextCounts` of ``tokenizer`` over every file of ``paths``, each file measured on its own and the counts
    added up (here, or on the workers of a Dask ``client``). ``invalid``: text that is not UTF-8 is an error
    (``"error"``) or left out and reported in ``skipped_bytes`` / ``skipped`` (``"skip"``)."""
    tokenizer = _check_tokenizer(getattr(tokenizer, "name", "tokenizer"), tokenizer)
    if invalid not in INVALID:
        raise ConfigurationError(f"invalid must be one of {INVALID}, got {invalid!r}")
    files = _files(paths)
    units = _plan(client, files, tokenizer.pretokenizer, range_bytes)
    total = [TextCounts(tokenizer.n_vocab)]

    def add(_, counts: TextCounts) -> None:
        total[0] = total[0] + counts

    _on_units(client, tokenizer, _counts_unit, units, (word_pattern, invalid), progress, add)
    return total[0]


__all__ = ["EncodedFile", "corpus_counts", "encode_files", "encode_range", "ids_dtype"]

