"""One way to write every artefact (tokenizers, KV and routing traces, speculative runs, checkpoints, encoded ids):
refuse to replace an existing file unless ``overwrite=True``, write beside it and rename, so that a failed write
leaves the old file as it was and never a half-written one.

>>> with atomic_path("out/tokenizer.json", overwrite=False) as tmp:      # doctest: +SKIP
...     tmp.write_text("{}")
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from workbench.errors import WorkbenchError

_UMASK = os.umask(0)   # read once, at import: reading it means setting it, which no other thread may see
os.umask(_UMASK)


def refuse_existing(path, *, overwrite: bool, error: type[Exception] = WorkbenchError, hint: str = "") -> Path:
    """``path`` as a Path; ``error`` when it exists and ``overwrite`` is False."""
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise error(f"{path} exists; pass overwrite=True{hint} or choose another name")
    return path


@contextlib.contextmanager
def atomic_path(path, *, overwrite: bool = False, error: type[Exception] = WorkbenchError, hint: str = "",
                mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends without an exception it replaces ``path``
    (created with its parent folders), else it is removed and ``path`` is untouched. ``error`` (with ``hint``,
    e.g. ``" (CLI: --overwrite)"``) when ``path`` exists and ``overwrite`` is False. ``mode``: the file's
    permissions (default: readable by all, as the umask allows)."""
    path = refuse_existing(path, overwrite=overwrite, error=error, hint=hint)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK if mode is None else mode)   # some writers (safetensors) create 0600 files
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
