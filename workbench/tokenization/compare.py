"""Side-by-side comparisons of tokenizers and trainers: compression against vocabulary size.

>>> curve = compression_curve({"BPE": lambda c, v: train_bpe(c, v)}, "the cat sat " * 50, "the cat", [260, 270])
>>> curve.bytes_per_token["BPE"][1] >= curve.bytes_per_token["BPE"][0]
True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from workbench.errors import ConfigurationError
from workbench.progress import ProgressCallback, Reporter
from workbench.tokenization.trainer import train_bpe  # noqa: F401  (used in the doctest)


@dataclass(frozen=True)
class CompressionCurve:
    """Bytes per token of held-out text for each trainer at each vocabulary size.

    ``bytes_per_token[name][i]`` is measured at ``vocab_sizes[i]``; ``seconds[name][i]`` is that training's wall time.
    """

    vocab_sizes: list[int]
    bytes_per_token: dict[str, list[float]]
    seconds: dict[str, list[float]] = field(default_factory=dict)
    eval_bytes: int = 0

    def saving(self, name: str, baseline: str) -> list[float]:
        """Fewer tokens than ``baseline`` at each size, as a fraction (0.2 = 20% fewer tokens)."""
        return [1 - b / n for b, n in zip(self.bytes_per_token[baseline], self.bytes_per_token[name])]

    def rows(self) -> list[dict]:
        return [{"trainer": name, "vocab_size": v, "bytes_per_token": round(bpt, 4), "seconds": round(sec, 3)}
                for name, values in self.bytes_per_token.items()
                for v, bpt, sec in zip(self.vocab_sizes, values, self.seconds.get(name, [0.0] * len(values)))]


def compression_curve(trainers: dict[str, Callable], train_corpus, eval_text: str, vocab_sizes: list[int],
                      *, progress: ProgressCallback | None = None) -> CompressionCurve:
    """Train every ``trainers[name](train_corpus, vocab_size)`` at every size and measure bytes/token on
    ``eval_text`` (which should be held out from ``train_corpus``). A trainer returns anything with ``encode``.
    ``progress`` gets a `Progress` before each training (stage: the trainer's name, ``detail["vocab_size"]``)."""
    if not trainers or not vocab_sizes:
        raise ConfigurationError("compression_curve needs at least one trainer and one vocabulary size.")
    n_bytes = len(eval_text.encode("utf-8"))
    if n_bytes == 0:
        raise ConfigurationError("eval_text is empty.")
    out: dict[str, list[float]] = {}
    secs: dict[str, list[float]] = {}
    report = Reporter(progress, total=len(trainers) * len(vocab_sizes))
    done = 0
    for name, train in trainers.items():
        out[name], secs[name] = [], []
        for v in vocab_sizes:
            report(done, stage=name, vocab_size=v)
            done += 1
            start = time.perf_counter()
            tok = train(train_corpus, v)
            secs[name].append(time.perf_counter() - start)
            out[name].append(n_bytes / len(tok.encode(eval_text)))
    return CompressionCurve(list(vocab_sizes), out, secs, n_bytes)
