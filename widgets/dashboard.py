"""The Token Workbench dashboard: one Panel app, one tab per lab.

Served by ``workbench serve`` or ``panel serve widgets/dashboard.py``; in a notebook, ``create_app()`` displays it.
Each lab contributes a ``(title, factory)`` pair to :data:`TABS`; a factory returns a Panel viewable.
"""

from __future__ import annotations

from collections.abc import Callable

import panel as pn

from widgets.kvcache_lab.lab import KVCacheLab
from widgets.moe_lab.lab import MoERoutingLab
from widgets.overview import Overview
from widgets.tokenizers_lab.lab import TokenizersLab

TABLE_CSS = """
table.wb-table { border-collapse: collapse; font-size: 13px; margin: 4px 0 10px 0; }
table.wb-table th, table.wb-table td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; }
table.wb-table th { background: #f4f4f4; }
"""

#: (tab title, factory) for every lab, in display order. Later labs append here.
TABS: list[tuple[str, Callable[[], pn.viewable.Viewable]]] = [
    ("Overview", Overview),
    ("Tokenizers", TokenizersLab),
    ("KV cache", KVCacheLab),
    ("MoE routing", MoERoutingLab),
]


def warm_up() -> None:
    """Do the slow one-time work before the first browser connects: load the model, compile kernels."""
    from widgets.tokenizers_lab.lab import WARM, shared_tokenizer
    from workbench.errors import WorkbenchError
    from workbench.models import shared_default_model

    try:
        shared_default_model()
    except WorkbenchError as exc:  # the dashboard still serves; the Overview tab shows this message
        print(f"[workbench] warning: {exc}")
    for name in WARM:  # loads the vocabularies and compiles (or loads from cache) the tokenizer kernels
        try:
            shared_tokenizer(name).encode("warm up 123")
        except WorkbenchError as exc:
            print(f"[workbench] warning: {exc}")
    try:  # the KV-cache lab's default capture (shared by every session) and its replay kernels
        from widgets.kvcache_lab.lab import QUALITY_POLICIES, default_trace
        from widgets.kvcache_lab.retention import middle_layer
        from workbench.kvcache import replay

        trace = default_trace()
        for policy in QUALITY_POLICIES:
            replay(trace, policy, 64, layers=[middle_layer(trace)])
    except WorkbenchError as exc:
        print(f"[workbench] warning: {exc}")
    from workbench.routing import warmup as routing_warmup

    routing_warmup()  # compiles (or loads from numba's cache) every router kernel
    try:  # the MoE routing lab's default trace: the tiny MoE model over the shipped excerpts (shared by every session)
        from widgets.moe_lab.lab import default_trace as moe_default_trace

        moe_default_trace()
    except WorkbenchError as exc:
        print(f"[workbench] warning: {exc}")


def create_app() -> pn.viewable.Viewable:
    """The whole dashboard as a Panel layout (a header and one tab per lab)."""
    # inline: in a notebook, BokehJS and Panel's JavaScript come from this installation, not a CDN (a served
    # dashboard is unaffected: the Bokeh server serves them itself)
    pn.extension(raw_css=[TABLE_CSS], inline=True)
    header = pn.pane.Markdown(
        "# Token Workbench\nTokenizers, MoE routing, speculative decoding and KV caches, computed live on real "
        "data and a real model (SmolLM2-135M-Instruct).",
        margin=(0, 10),
    )
    tabs = pn.Tabs(*[(title, factory()) for title, factory in TABS], dynamic=True, sizing_mode="stretch_width")
    return pn.Column(header, tabs, sizing_mode="stretch_width")


if __name__.startswith("bokeh"):  # `panel serve widgets/dashboard.py`
    create_app().servable(title="Token Workbench")
