"""One progress report for every long operation (BPE training, corpus encoding and metrics, captures, KV and
speculative sweeps, MoE training, speculative decoding): callbacks receive a `Progress`.

>>> seen = []
>>> train_bpe(["low lower lowest"], 260, progress=seen.append)               # doctest: +SKIP
>>> seen[-1]                                                                   # doctest: +SKIP
Progress(done=4, total=4, stage='merge', seconds=0.01)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units (None when unknown) of ``stage`` (e.g. ``"count"``, ``"merge"``, ``"sweep"``),
    ``seconds`` since the operation started; ``detail``: the operation's own figures (bytes read ...)."""

    done: int
    total: int | None
    stage: str = ""
    seconds: float = 0.0
    detail: dict | None = None

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1], or None when the total is unknown."""
        return None if not self.total else min(1.0, self.done / self.total)


ProgressCallback = Callable[[Progress], None]


class Reporter:
    """Calls ``callback`` (if any) with `Progress` of one ``stage``, timing from its creation.

    >>> seen = []; r = Reporter(seen.append, "sweep", total=2); r(1); seen[0].done, seen[0].total, seen[0].stage
    (1, 2, 'sweep')
    """

    def __init__(self, callback: ProgressCallback | None, stage: str = "", total: int | None = None):
        self.callback, self.stage, self.total = callback, stage, total
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int | None = None, stage: str | None = None, **detail) -> None:
        if self.callback is not None:
            self.callback(Progress(int(done), self.total if total is None else total,
                                   self.stage if stage is None else stage, time.perf_counter() - self.start,
                                   detail or None))
