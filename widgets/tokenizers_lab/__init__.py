"""The Tokenizers lab's views: token boundaries, two-tokenizer diff, merge trees, merge replay, metric charts."""

from widgets.tokenizers_lab.boundaries import TokenBoundaries
from widgets.tokenizers_lab.diff import TokenDiff
from widgets.tokenizers_lab.replay import MergeReplay
from widgets.tokenizers_lab.tree import MergeTree

__all__ = ["MergeReplay", "MergeTree", "TokenBoundaries", "TokenDiff"]
