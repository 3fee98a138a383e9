"""The Token Workbench dashboard: one Panel app, one tab per lab.

Served by ``workbench serve`` or ``panel serve widgets/dashboard.py``; in a notebook, ``create_app()`` displays it.
Each lab in :data:`LABS` says its tab title (``TAB``), its warm-up jobs (``WARM_UP``) and the jobs its tab waits for
(``NEEDS``); the dashboard builds its tabs (:data:`TABS`) and the background warm-up (:data:`JOBS`) from them.
"""

from __future__ import annotations

from collections.abc import Callable

import panel as pn

from widgets.kvcache_lab.lab import KVCacheLab
from widgets.moe_lab.lab import MoERoutingLab
from widgets.overview import Overview
from widgets.speculative_lab.lab import SpeculativeLab
from widgets.tokenizers_lab.lab import TokenizersLab
from widgets.warmup import Job, WarmUp, process_warmup

TABLE_CSS = """
table.wb-table { border-collapse: collapse; font-size: 13px; margin: 4px 0 10px 0; }
table.wb-table th, table.wb-table td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; }
table.wb-table th { background: #f4f4f4; }
"""

#: The labs, in display order. Each says its tab title (``TAB``), the warm-up jobs it brings (``WARM_UP``:
#: ``(key, what it does, function)``) and the jobs its tab waits for (``NEEDS``); the shared model job
#: (`widgets.warmup.MODEL_JOB`) is the Overview's. A new lab adds itself here and keeps its warm-up next to its tab.
LABS = [Overview, TokenizersLab, KVCacheLab, MoERoutingLab, SpeculativeLab]

#: (tab title, factory) for every lab, in display order.
TABS: list[tuple[str, Callable[[], pn.viewable.Viewable]]] = [(lab.TAB, lab) for lab in LABS]

#: The one-time work of the labs, in the order it runs when no tab asks for its own first.
JOBS: list[tuple[str, str, Callable[[], None]]] = [job for lab in LABS for job in lab.WARM_UP]

#: Which jobs each tab waits for before it is built.
NEEDS: dict[str, list[str]] = {lab.TAB: list(lab.NEEDS) for lab in LABS}


def make_warmup() -> WarmUp:
    """A fresh `WarmUp` over `JOBS` and `NEEDS`."""
    return WarmUp([Job(key, label, fn) for key, label, fn in JOBS], NEEDS)


def shared_warmup() -> WarmUp:
    """The process's warm-up, shared by every dashboard session (`workbench serve` starts it). Kept in
    `widgets.warmup`, not here: ``panel serve widgets/dashboard.py`` runs this file anew for every session."""
    return process_warmup(make_warmup)


def warm_up(report=None) -> list[Job]:
    """Do all the slow one-time work now, in this thread (``workbench prepare``); ``report(job, done, total)``
    after each job. A job that fails (e.g. the model is not installed) is reported, and the rest still run."""
    return shared_warmup().run_all(report)


class _WaitingTab(pn.viewable.Viewer):
    """A tab that shows what it waits for, with progress, and becomes the lab once its warm-up jobs are done."""

    def __init__(self, title: str, factory: Callable[[], pn.viewable.Viewable], warmup: WarmUp, poll_ms: int = 250):
        super().__init__()
        self.title, self.factory, self.warmup = title, factory, warmup
        self._status = pn.pane.Markdown("", margin=(0, 10))
        self._bar = pn.indicators.Progress(value=0, max=100, width=320, bar_color="primary")
        self._layout = pn.Column(pn.Column(self._status, self._bar, css_classes=["wb-waiting"]),
                                 sizing_mode="stretch_width")
        self._callback = None
        self.live = False
        if not self.poll():
            self._callback = pn.state.add_periodic_callback(self.poll, period=poll_ms)

    def poll(self) -> bool:
        """Show the progress; build the lab once ready. Returns True when live."""
        if self.live:
            return True
        if not self.warmup.ready(self.title):
            done, total, lines = self.warmup.describe(self.title)
            self._bar.value = int(100 * done / max(total, 1))
            self._status.object = (f"**{self.title}** is getting ready ({done} of {total} done):\n\n"
                                   + "\n".join(f"- {line}" for line in lines))
            return False
        self.live = True
        if self._callback is not None:
            self._callback.stop()
        self._layout[:] = [self.factory()]
        return True

    def __panel__(self):
        return self._layout


def _cluster_line() -> str:
    """A line for the header when a Dask client is connected (``workbench serve --workers N``): its dashboard link."""
    from workbench.distributed import current_client, dashboard_link

    client = current_client()
    if client is None:
        return ""
    workers = len(client.scheduler_info().get("workers", {}))
    link = dashboard_link(client)
    return (f"  \nRunning on a Dask cluster of {workers} workers (KV quality sweeps fan out to it)"
            + (f": [Dask dashboard]({link})" if link else "") + ".")


def create_app(background: bool | None = None) -> pn.viewable.Viewable:
    """The whole dashboard as a Panel layout (a header and one tab per lab).

    ``background``: build each tab once its warm-up jobs have run on the shared background thread, showing
    progress until then (the default when served: ``workbench serve`` answers at once); ``False`` builds every tab
    now (the default in a notebook)."""
    # inline: in a notebook, BokehJS and Panel's JavaScript come from this installation, not a CDN (a served
    # dashboard is unaffected: the Bokeh server serves them itself)
    pn.extension(raw_css=[TABLE_CSS], inline=True)
    if background is None:
        background = bool(pn.state.served)
    header = pn.pane.Markdown(
        "# Token Workbench\nTokenizers, MoE routing, speculative decoding and KV caches, computed live on real "
        "data and a real model (SmolLM2-135M-Instruct)." + _cluster_line(),
        margin=(0, 10),
    )
    if not background:
        tabs = pn.Tabs(*[(title, factory()) for title, factory in TABS], dynamic=True, sizing_mode="stretch_width")
        return pn.Column(header, tabs, sizing_mode="stretch_width")
    warmup = shared_warmup()
    titles = [title for title, _ in TABS]
    warmup.prioritize(titles[0])   # the tab that opens first
    warmup.start()
    tabs = pn.Tabs(*[(title, _WaitingTab(title, factory, warmup)) for title, factory in TABS],
                   dynamic=True, sizing_mode="stretch_width")
    # the tab the user opens gets its work first
    tabs.param.watch(lambda e: warmup.prioritize(titles[e.new]), "active")
    return pn.Column(header, tabs, sizing_mode="stretch_width")


if __name__.startswith("bokeh"):  # `panel serve widgets/dashboard.py`
    create_app().servable(title="Token Workbench")
