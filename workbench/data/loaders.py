"""Loaders for local text: files, folders, byte streams of any size, and the Python standard library.

Byte-level tools (BPE training, byte counts) read raw ``bytes`` so that invalid UTF-8 is kept exactly;
views that need ``str`` decode with :func:`decode_text`, which replaces invalid sequences and counts them.

>>> docs = list(iter_documents(stdlib_paths()[:2]))
>>> len(docs), type(docs[0].data)
(2, <class 'bytes'>)
"""

from __future__ import annotations

import os
import re
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import CorpusError, CorpusNotFoundError

PathLike = str | os.PathLike
DEFAULT_CHUNK_BYTES = 1 << 20  # 1 MiB


# -- what a corpus argument means ----------------------------------------------------------------------------------
class Text(str):
    """A string that is text to train or measure on, never a path: ``train_bpe(Text("notes.txt"), 300)`` trains
    on those nine characters. Plain ``str`` corpus items follow `corpus_items`' rule."""


_PATH_END = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,5}$")


def looks_like_path(text: str) -> bool:
    """A str without white space that holds a path separator or ends like a file name (``corpus/my.txt``,
    ``data.jsonl``), as a path a user meant to give.

    >>> looks_like_path("corpus/my_corpus.txt"), looks_like_path("the cat sat on the mat"), looks_like_path("aaaa")
    (True, False, False)
    """
    return (0 < len(text) < 4096 and not any(c.isspace() for c in text)
            and ("/" in text or "\\" in text or bool(_PATH_END.search(text))))


def corpus_items(corpus, *, error: type[Exception] = CorpusError) -> Iterator[tuple[str, object]]:
    """The one rule for every API that takes a corpus: ``("bytes", data)`` for each in-memory document and
    ``("file", Path)`` for each file. ``corpus`` is one item or an iterable of items:

    * a ``pathlib.Path`` (or other ``os.PathLike``): a file or a folder (searched recursively);
    * ``bytes``: raw bytes; `Text`: text, always;
    * a ``str``: an existing file or folder is read as such; a string that `looks_like_path` but names nothing is a
      `CorpusNotFoundError` (a mistyped path must not be trained on as if it were the text); any other string is
      text.

    ``error`` for anything else (or an empty corpus).

    >>> [kind for kind, _ in corpus_items(["some text", b"bytes"])]
    ['bytes', 'bytes']
    """
    if isinstance(corpus, (str, bytes, bytearray, memoryview, os.PathLike)):
        corpus = [corpus]
    try:
        items = iter(corpus)
    except TypeError:
        raise error(f"The corpus must be str, bytes, a path or an iterable of these; got "
                    f"{type(corpus).__name__}.") from None
    n = 0
    for item in items:
        n += 1
        if isinstance(item, Text):
            yield "bytes", str.encode(item, "utf-8", "surrogatepass")
        elif isinstance(item, str):
            if len(item) < 4096 and "\n" not in item and "\0" not in item and os.path.exists(item):
                yield from (("file", path) for path in list_files(item))
            elif looks_like_path(item):
                raise CorpusNotFoundError(f"{item!r} looks like a path, but there is no such file or folder; to use "
                                          f"this string itself as text, pass workbench.data.Text({item!r}).")
            else:
                yield "bytes", item.encode("utf-8", "surrogatepass")
        elif isinstance(item, (bytes, bytearray, memoryview)):
            yield "bytes", bytes(item)
        elif isinstance(item, os.PathLike):
            yield from (("file", path) for path in list_files(item))
        else:
            raise error(f"Corpus items must be str, bytes or paths; got {type(item).__name__}.")
    if n == 0:
        raise error("The corpus is empty: nothing to train on.")


@dataclass(frozen=True)
class Document:
    """One document of a corpus: its name (usually a path) and its raw bytes."""

    name: str
    data: bytes

    @property
    def text(self) -> str:
        """The bytes decoded as UTF-8, invalid sequences replaced by U+FFFD."""
        return decode_text(self.data)[0]


def decode_text(data: bytes) -> tuple[str, int]:
    """Decode UTF-8 leniently: returns ``(text, n_invalid)``.

    ``n_invalid`` counts the replacement characters introduced (0 for valid UTF-8).

    >>> decode_text(b"caf\\xc3\\xa9 \\xff")
    ('café \\ufffd', 1)
    """
    text = data.decode("utf-8", errors="replace")
    n_invalid = text.count("\ufffd") - data.count("\ufffd".encode())
    return text, n_invalid


def _expand(source: PathLike | Iterable[PathLike], suffixes: tuple[str, ...] | None) -> list[Path]:
    """Resolve a path, folder or list of them into a sorted list of files, with clear errors."""
    if isinstance(source, (str, os.PathLike)):
        sources = [source]
    else:
        sources = list(source)
        if not sources:
            raise CorpusError("The corpus is empty: no files or folders were given.")
    files: list[Path] = []
    for item in sources:
        path = Path(item).expanduser()
        if not path.exists():
            raise CorpusNotFoundError(f"Corpus path does not exist: {str(path)!r}. Check the spelling, or pass a file or folder.")
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
                and (suffixes is None or p.suffix in suffixes)
            )
            if not found:
                wanted = f" with suffixes {', '.join(suffixes)}" if suffixes else ""
                raise CorpusError(f"Folder {str(path)!r} holds no files{wanted}.")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CorpusError(f"Corpus path {str(path)!r} is neither a regular file nor a folder.")
    return files


def _open(path: Path):
    try:
        return open(path, "rb")
    except PermissionError as exc:
        raise CorpusError(f"Cannot read corpus file {str(path)!r}: permission denied.") from exc
    except OSError as exc:
        raise CorpusError(f"Cannot read corpus file {str(path)!r}: {exc.strerror or exc}.") from exc


def list_files(source: PathLike | Iterable[PathLike], *, suffixes: Iterable[str] | None = None) -> list[Path]:
    """Files named by ``source`` (a file, a folder searched recursively, or a list of them), sorted.

    ``suffixes`` keeps only files ending with one of them, e.g. ``(".py",)``.
    Raises :class:`CorpusNotFoundError` for a missing path and :class:`CorpusError` for an empty folder.
    """
    return _expand(source, tuple(suffixes) if suffixes is not None else None)


def iter_documents(source: PathLike | Iterable[PathLike], *, suffixes: Iterable[str] | None = None) -> Iterator[Document]:
    """Yield one :class:`Document` per file, read whole (for files of ordinary size)."""
    for path in list_files(source, suffixes=suffixes):
        with _open(path) as handle:
            try:
                data = handle.read()
            except OSError as exc:
                raise CorpusError(f"Cannot read corpus file {str(path)!r}: {exc}.") from exc
        yield Document(str(path), data)


def stream_bytes(
    source: PathLike | Iterable[PathLike],
    *,
    suffixes: Iterable[str] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Iterator[bytes]:
    """Yield the bytes of every file in order, in chunks of at most ``chunk_bytes``; memory stays bounded.

    Chunks never straddle two files, so a consumer that treats each file separately can do so.
    """
    if chunk_bytes <= 0:
        raise CorpusError(f"chunk_bytes must be positive, got {chunk_bytes}.")
    for path in list_files(source, suffixes=suffixes):
        with _open(path) as handle:
            while True:
                try:
                    chunk = handle.read(chunk_bytes)
                except OSError as exc:
                    raise CorpusError(f"Cannot read corpus file {str(path)!r}: {exc}.") from exc
                if not chunk:
                    break
                yield chunk


def stdlib_root() -> Path:
    """The folder of the running Python's standard library sources."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_paths() -> list[Path]:
    """Every ``.py`` file of the running Python's standard library (tests included, site-packages excluded).

    About 31.5 MB in 1,790 files for CPython 3.11: an always-available code corpus.
    """
    root = stdlib_root()
    paths: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "dist-packages", "__pycache__"))
        paths.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
    if not paths:
        raise CorpusError(f"No standard-library sources found under {str(root)!r} (a Python without .py sources?).")
    return paths
