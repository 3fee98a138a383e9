"""Named corpora: the samples shipped inside the package, the standard-library code corpus, and local paths.

A :class:`Corpus` is a lazy, named list of files; nothing is read until asked.

>>> prose = load_corpus("prose_en")
>>> prose.nbytes > 100_000, prose.language
(True, 'en')
>>> sorted(parallel_texts())[:3]   # doctest: +SKIP
['ar', 'de', 'en']
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from workbench.data.loaders import (
    DEFAULT_CHUNK_BYTES,
    Document,
    decode_text,
    iter_documents,
    list_files,
    stdlib_paths,
    stream_bytes,
)
from workbench.errors import CorpusError

SAMPLES_DIR = Path(__file__).with_name("samples")

#: ISO 639-1 code -> (English name, script). Covers every language the shipped parallel text may hold.
LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("English", "Latin"),
    "de": ("German", "Latin"),
    "fr": ("French", "Latin"),
    "es": ("Spanish", "Latin"),
    "it": ("Italian", "Latin"),
    "pt": ("Portuguese", "Latin"),
    "nl": ("Dutch", "Latin"),
    "pl": ("Polish", "Latin"),
    "cs": ("Czech", "Latin"),
    "fi": ("Finnish", "Latin"),
    "sv": ("Swedish", "Latin"),
    "tr": ("Turkish", "Latin"),
    "vi": ("Vietnamese", "Latin"),
    "id": ("Indonesian", "Latin"),
    "sw": ("Swahili", "Latin"),
    "ru": ("Russian", "Cyrillic"),
    "uk": ("Ukrainian", "Cyrillic"),
    "bg": ("Bulgarian", "Cyrillic"),
    "sr": ("Serbian", "Cyrillic"),
    "el": ("Greek", "Greek"),
    "he": ("Hebrew", "Hebrew"),
    "ar": ("Arabic", "Arabic"),
    "fa": ("Persian", "Arabic"),
    "ur": ("Urdu", "Arabic"),
    "hi": ("Hindi", "Devanagari"),
    "mr": ("Marathi", "Devanagari"),
    "ne": ("Nepali", "Devanagari"),
    "bn": ("Bengali", "Bengali"),
    "ta": ("Tamil", "Tamil"),
    "th": ("Thai", "Thai"),
    "ka": ("Georgian", "Georgian"),
    "hy": ("Armenian", "Armenian"),
    "am": ("Amharic", "Ethiopic"),
    "zh": ("Chinese", "Han (CJK)"),
    "ja": ("Japanese", "Kana + Han (CJK)"),
    "ko": ("Korean", "Hangul (CJK)"),
}


@dataclass(frozen=True)
class Corpus:
    """A named, lazily read list of files.

    ``kind`` is ``"prose"``, ``"code"``, ``"parallel"`` or ``"local"``; ``language`` an ISO 639-1 code or ``None``
    (code, mixed).
    """

    name: str
    paths: tuple[Path, ...]
    kind: str = "local"
    language: str | None = None
    description: str = ""
    licence: str = ""
    suffixes: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        """Total size in bytes (from the file system; nothing is read)."""
        return sum(p.stat().st_size for p in self.paths)

    @property
    def n_files(self) -> int:
        return len(self.paths)

    def documents(self) -> Iterator[Document]:
        """One :class:`Document` per file."""
        return iter_documents(self.paths)

    def chunks(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[bytes]:
        """The raw bytes, streamed in bounded chunks (never straddling files)."""
        return stream_bytes(self.paths, chunk_bytes=chunk_bytes)

    def read_bytes(self) -> bytes:
        """All files concatenated (each followed by a newline if it lacks one)."""
        parts = []
        for doc in self.documents():
            parts.append(doc.data if doc.data.endswith(b"\n") else doc.data + b"\n")
        return b"".join(parts)

    def read_text(self) -> str:
        """All files as one string; invalid UTF-8 is replaced by U+FFFD (use :meth:`read_bytes` to keep it)."""
        return decode_text(self.read_bytes())[0]

    def sample(self, n_chars: int = 400) -> str:
        """The first ``n_chars`` characters of the first file, for previews."""
        with open(self.paths[0], "rb") as handle:
            head = handle.read(n_chars * 4)
        return decode_text(head)[0][:n_chars]


def _shipped_parallel() -> dict[str, Path]:
    folder = SAMPLES_DIR / "parallel"
    return {p.stem: p for p in sorted(folder.glob("*.txt"))} if folder.is_dir() else {}


@cache
def shipped_corpora() -> dict[str, Corpus]:
    """The corpora shipped inside the package plus the standard-library code corpus, by name.

    Names: ``prose_en``, ``code``, ``parallel`` (every language), ``parallel_<lang>`` (one language), ``stdlib``.
    """
    out: dict[str, Corpus] = {}
    prose = SAMPLES_DIR / "prose_en.txt"
    if prose.is_file():
        out["prose_en"] = Corpus("prose_en", (prose,), "prose", "en", "English prose (public domain)", "public domain")
    code_dir = SAMPLES_DIR / "code"
    if code_dir.is_dir():
        out["code"] = Corpus("code", tuple(list_files(code_dir)), "code", None,
                             "Source code in several programming languages", "permissive (see SOURCES.md)")
    parallel = _shipped_parallel()
    if parallel:
        out["parallel"] = Corpus("parallel", tuple(parallel.values()), "parallel", None,
                                 f"The same passages in {len(parallel)} languages", "see SOURCES.md")
        for lang, path in parallel.items():
            name = LANGUAGES.get(lang, (lang, "?"))[0]
            out[f"parallel_{lang}"] = Corpus(f"parallel_{lang}", (path,), "parallel", lang, f"Parallel text, {name}")
    out["stdlib"] = Corpus("stdlib", tuple(stdlib_paths()), "code", None,
                           "The running Python's standard-library sources (~30 MB)", "PSF licence", (".py",))
    return out


def load_corpus(name_or_path: str | os.PathLike | Iterable[str | os.PathLike], *, suffixes: Iterable[str] | None = None) -> Corpus:
    """A shipped corpus by name, or a local file/folder (or list of them) as a :class:`Corpus`.

    >>> load_corpus("code").kind
    'code'
    """
    if isinstance(name_or_path, str) and name_or_path in shipped_corpora():
        return shipped_corpora()[name_or_path]
    if isinstance(name_or_path, str) and os.sep not in name_or_path and not Path(name_or_path).exists():
        known = ", ".join(sorted(shipped_corpora()))
        raise CorpusError(f"Unknown corpus {name_or_path!r}: not a shipped corpus ({known}) and not an existing path.")
    files = list_files(name_or_path, suffixes=suffixes)
    label = str(name_or_path) if isinstance(name_or_path, (str, os.PathLike)) else f"{len(files)} paths"
    return Corpus(label, tuple(files), "local", None, f"Local files: {label}")


def parallel_texts() -> dict[str, list[str]]:
    """The shipped parallel text: language code -> list of passages (passage i is the same in every language)."""
    out = {}
    for lang, path in _shipped_parallel().items():
        text = path.read_text(encoding="utf-8")
        out[lang] = [p.strip() for p in text.split("\n\n") if p.strip()]
    return out


def language_name(code: str) -> str:
    return LANGUAGES.get(code, (code, "?"))[0]


def language_script(code: str) -> str:
    return LANGUAGES.get(code, (code, "unknown"))[1]


def corpus_table() -> list[dict]:
    """One row per shipped corpus (the per-language parallel files are summarised by :func:`parallel_table`)."""
    rows = []
    for corpus in shipped_corpora().values():
        if corpus.name.startswith("parallel_"):
            continue
        rows.append({
            "name": corpus.name,
            "kind": corpus.kind,
            "language": corpus.language or ("mixed" if corpus.kind == "parallel" else "-"),
            "files": corpus.n_files,
            "MB": round(corpus.nbytes / 1e6, 2),
            "description": corpus.description,
        })
    return rows


def parallel_table() -> list[dict]:
    """One row per language of the shipped parallel text: passages, characters, UTF-8 bytes, bytes per character."""
    rows = []
    for lang, passages in parallel_texts().items():
        text = "\n\n".join(passages)
        n_bytes = len(text.encode("utf-8"))
        rows.append({
            "code": lang,
            "language": language_name(lang),
            "script": language_script(lang),
            "passages": len(passages),
            "characters": len(text),
            "bytes": n_bytes,
            "bytes/char": round(n_bytes / max(len(text), 1), 2),
        })
    return rows
