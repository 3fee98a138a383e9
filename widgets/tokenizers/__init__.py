"""The Tokenizers lab's views: token boundaries, two-tokenizer diff, merge trees, merge replay, metric charts."""

from widgets.tokenizers.boundaries import TokenBoundaries
from widgets.tokenizers.diff import TokenDiff
from widgets.tokenizers.replay import MergeReplay
from widgets.tokenizers.tree import MergeTree

__all__ = ["MergeReplay", "MergeTree", "TokenBoundaries", "TokenDiff"]
