"""The speculative decoding lab's views: the draft tree of each step, the text by token source, builders side by
side, expected vs measured speedup with the verify-cost curve, sequential vs PEARL; and the dashboard tab."""

from widgets.speculative_lab.builders import BuilderCompare
from widgets.speculative_lab.speedup import SpeedupCurve
from widgets.speculative_lab.strip import AcceptanceStrip
from widgets.speculative_lab.timeline import PearlTimeline
from widgets.speculative_lab.tree_view import DraftTreeView

__all__ = ["AcceptanceStrip", "BuilderCompare", "DraftTreeView", "PearlTimeline", "SpeedupCurve"]
