"""The KV-cache lab's views: retention map, evicted text, policy comparison, quality against budget."""

from widgets.kvcache_lab.compare import PolicyCompare
from widgets.kvcache_lab.quality import QualityVsBudget
from widgets.kvcache_lab.retention import RetentionMap
from widgets.kvcache_lab.text import EvictedText

__all__ = ["EvictedText", "PolicyCompare", "QualityVsBudget", "RetentionMap"]
