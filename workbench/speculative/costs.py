"""The verify-cost curve: seconds of one verification pass of the target against the number of draft nodes.

On a CPU a forward pass of a small model is bound by reading its weights, so verifying 8 or 16 draft tokens costs
little more than decoding one; past some size the pass becomes compute-bound and every extra node costs. Sequoia's
hardware-aware builder (`sequoia.choose_budget`, `builders.SequoiaBuilder.hardware_aware`) picks its budget and
depth from this curve and the drafter's cost per level.

Example::

    curve = verify_cost_curve(sizes=[0, 4, 16, 64])     # {0: 0.031, 4: 0.036, 16: 0.045, 64: 0.11}  (seconds)
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from workbench.errors import SpeculativeError


def verify_cost_curve(runner=None, sizes=(0, 1, 2, 4, 8, 16, 32, 64), *, context_tokens: int = 256,
                      repeats: int = 3, seed: int = 0) -> dict[int, float]:
    """Median seconds of one `DecodeSession.extend` over a random tree of ``n`` draft nodes plus the root, on a
    ``context_tokens``-token cached context, for each ``n`` in ``sizes`` (``0`` = a plain decoding step)."""
    if runner is None:
        from workbench.models import default_runner

        runner = default_runner()
    sizes = sorted({int(n) for n in sizes})
    if not sizes or sizes[0] < 0:
        raise SpeculativeError("sizes must be non-negative node counts")
    if repeats < 1 or context_tokens < 1:
        raise SpeculativeError("repeats and context_tokens must be >= 1")
    rng = np.random.default_rng(seed)
    context = rng.integers(0, runner.vocab_size, context_tokens)
    s = runner.session()
    s.prefill(context)
    out = {}
    for n in sizes:
        parents = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, n + 1)], np.int32)
        tokens = rng.integers(0, runner.vocab_size, n + 1)
        times = []
        for _ in range(repeats + 1):          # the first pass warms this shape up
            t = time.perf_counter()
            s.extend(tokens, parents)
            times.append(time.perf_counter() - t)
        out[n] = statistics.median(times[1:])
    return out


#: node counts of the curve a cost-aware schedule measures (`runner_verify_costs`)
SCHEDULE_SIZES = (0, 1, 2, 3, 4, 6, 8, 12, 16)


def runner_verify_costs(runner) -> dict[int, float]:
    """The verify-cost curve of ``runner`` at `SCHEDULE_SIZES` (about 1-2 s on a CPU), measured once per runner and
    kept on it; what `schedules.Thompson` reads with ``costs="measured"``."""
    cached = getattr(runner, "_verify_costs", None)
    if cached is None:
        cached = verify_cost_curve(runner, SCHEDULE_SIZES, context_tokens=256, repeats=3)
        runner._verify_costs = cached
    return dict(cached)
