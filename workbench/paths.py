"""Where the workbench keeps things on disk.

The cache directory holds converted model weights and other derived artefacts. It is, in order of preference:
``$WORKBENCH_CACHE``, ``$XDG_CACHE_HOME/token-workbench``, ``~/.cache/token-workbench``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache directory (not created here).

    >>> import os; os.environ["WORKBENCH_CACHE"] = "/tmp/wb"; str(cache_dir())
    '/tmp/wb'
    """
    override = os.environ.get("WORKBENCH_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "token-workbench"
