"""What every workbench widget shares: a Panel ``Viewer`` that can also save itself as one offline HTML file.

>>> from widgets.overview import Overview          # doctest: +SKIP
>>> Overview().save("overview.html")               # ~3 MB: BokehJS, Panel's JavaScript and the data, inline
PosixPath('overview.html')
"""

from __future__ import annotations

import base64
import html
import os
import threading
from collections.abc import Callable
from pathlib import Path

import panel as pn
from bokeh.resources import INLINE
from panel.io.resources import DIST_DIR

from workbench.errors import ConfigurationError
from workbench.saving import atomic_path


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def save_view(view, filename: str | os.PathLike, *, title: str | None = None, embed: bool = True,
              max_states: int = 200, max_opts: int = 8, overwrite: bool = False) -> Path:
    """Write ``view`` (any Panel object or Viewer) to ``filename`` as a self-contained HTML file of its current state.

    Everything is inline: BokehJS, Panel's JavaScript and stylesheets, the view's data, even the page icon, so the
    file opens from disk in a browser without a server and without internet access. With ``embed`` (the default),
    Panel also records how the view answers its discrete controls (selects, sliders, toggles): up to ``max_opts``
    values per control and ``max_states`` combinations in all, replayed in the page without Python. Free-text boxes
    and anything past those limits stay as saved. An existing file is replaced only with ``overwrite=True``; the file
    is written to a temporary name first and then moved into place.
    """
    path = Path(filename).expanduser()
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigurationError(f"save writes HTML: give a file name ending in .html, not {path.name!r}")
    if not path.parent.is_dir():
        raise ConfigurationError(f"the folder {path.parent} does not exist; create it first")
    icons = {  # Panel's page template would link its icons from cdn.holoviz.org
        "app_favicon": _data_uri(DIST_DIR / "images" / "icon-32x32.png", "image/png"),
        "apple_icon": _data_uri(DIST_DIR / "images" / "apple-touch-icon.png", "image/png"),
    }
    # inline=True also keeps the stylesheets of every embedded state inline (widgets/offline.py)
    # (a file object: given a name not ending in .html, Panel would add the suffix)
    with atomic_path(path, overwrite=overwrite, error=ConfigurationError) as tmp, pn.config.set(inline=True), \
            open(tmp, "w", encoding="utf-8") as out:
        pn.panel(view).save(out, title=title or type(view).__name__, resources=INLINE, embed=embed,
                            max_states=max_states, max_opts=max_opts, progress=False, template_variables=icons)
    return path


class WorkbenchView(pn.viewable.Viewer):
    """Base class of the workbench's widgets (state in ``param`` parameters, view in ``__panel__``)."""

    def save(self, filename: str | os.PathLike, *, title: str | None = None, embed: bool = True,
             max_states: int = 200, max_opts: int = 8, overwrite: bool = False) -> Path:
        """This view as one self-contained, offline HTML file of its current state; see :func:`save_view`."""
        return save_view(self, filename, title=title, embed=embed, max_states=max_states, max_opts=max_opts,
                         overwrite=overwrite)


def session_callback(fn: Callable[..., None]) -> Callable[..., None]:
    """``fn`` made safe to call from a worker thread: in a served session (made here, on the session's thread) each
    call runs on the session's next tick, with the document as the current one; pending calls coalesce to the
    latest (progress reports arrive faster than a browser draws). Headless or in a notebook, ``fn`` itself."""
    doc = pn.state.curdoc
    if doc is None or getattr(doc, "session_context", None) is None:
        return fn
    lock = threading.Lock()
    pending: list[tuple] = []

    def tick() -> None:
        from panel.io.state import set_curdoc

        with lock:
            args = pending.pop()
        with set_curdoc(doc):
            fn(*args)

    def call(*args) -> None:
        with lock:
            first = not pending
            pending[:] = [args]
        if first:
            doc.add_next_tick_callback(tick)

    return call


def run_then_apply(work: Callable[[], dict], apply: Callable[[dict], None], *, blocking: bool) -> dict | None:
    """Run ``work()`` (slow, no Bokeh models touched; returns a result dict), then ``apply(result)`` where it may
    change the view: directly when ``blocking``, else ``work`` runs in a thread and ``apply`` through
    `session_callback` (a background thread must not touch a served document without its lock). Progress callbacks
    given to ``work`` go through `session_callback` too. Whatever ``work`` raises reaches ``apply`` as
    ``{"error": message}``, so a lab always gets its controls back (and a blocking call raises it after).
    Returns the result when blocking, else None."""
    done = apply if blocking else session_callback(apply)

    def run() -> dict:
        try:
            result = work()
        except Exception as exc:
            done({"error": f"{type(exc).__name__}: {exc}"})
            raise
        done(result)
        return result

    if blocking:
        return run()
    threading.Thread(target=run, daemon=True).start()
    return None


ERROR_STYLE = """<style>
.wb-error { font-size: 13px; color: #a61b1b; background: #fdecea; border: 1px solid #f5c2c0; border-radius: 4px;
            padding: 4px 8px; margin: 4px 0; }
</style>"""


def error_html(message: str, *, lab: str, style: str = "") -> str:
    """A lab's error line: ``style`` (the lab's CSS), `ERROR_STYLE` and ``<div class="wb-error wb-<lab>-error">⚠
    message</div>``; empty for no message. Each lab binds its own: ``functools.partial(error_html, lab="kv",
    style=STYLE)``."""
    return (f'{style}{ERROR_STYLE}<div class="wb-error wb-{lab}-error">⚠ {html.escape(message)}</div>'
            if message else "")


def shown_token(token: str) -> str:
    """A token as HTML text with its line breaks and tabs visible (``↵``, ``→``) and kept."""
    return html.escape(token.replace("\n", "↵\n").replace("\t", "→\t"))
