"""The MoE routing lab's views: routing heatmap and coloured text, expert load and balance, drops by position,
layer-to-layer expert flow, two routers compared."""

from widgets.moe_lab.compare import RouterCompare
from widgets.moe_lab.flow import LayerFlow
from widgets.moe_lab.heatmap import RoutingHeatmap
from widgets.moe_lab.load import DropByPosition, ExpertLoad

__all__ = ["DropByPosition", "ExpertLoad", "LayerFlow", "RouterCompare", "RoutingHeatmap"]
