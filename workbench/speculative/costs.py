"""The verify-cost curve: seconds of one verification pass of the target against the number of draft nodes.

On a CPU a forward pass of a small model is bound by reading its weights, so verifying 8 or 16 draft tokens costs
little more than decoding one; past some size the pass becomes compute-bound and every extra node costs. Sequoia's
hardware-aware builder (`sequoia.choose_budget`, `builders.SequoiaBuilder.hardware_aware`) picks its budget and
depth from this curve and the drafter's cost per level.

Example::

    curve = verify_cost_curve(sizes=[0, 4, 16, 64])     # {0: 0.027, 4: 0.028, 16: 0.036, 64: 0.081}  (seconds)
"""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np

from workbench.errors import SpeculativeError


def verify_cost_curve(runner=None, sizes=(0, 1, 2, 4, 8, 16, 32, 64), *, context_tokens: int = 256,
                      repeats: int = 3, seed: int = 0, statistic: str = "median") -> dict[int, float]:
    """Seconds of one `DecodeSession.extend` over a random tree of ``n`` draft nodes plus the root, on a
    ``context_tokens``-token cached context, for each ``n`` in ``sizes`` (``0`` = a plain decoding step): the
    ``statistic`` (``"median"`` or ``"min"``) of ``repeats`` rounds over every size."""
    if runner is None:
        from workbench.models import default_runner

        runner = default_runner()
    sizes = sorted({int(n) for n in sizes})
    if not sizes or sizes[0] < 0:
        raise SpeculativeError("sizes must be non-negative node counts")
    if repeats < 1 or context_tokens < 1:
        raise SpeculativeError("repeats and context_tokens must be >= 1")
    if statistic not in ("median", "min"):
        raise SpeculativeError(f"statistic must be 'median' or 'min', got {statistic!r}")
    rng = np.random.default_rng(seed)
    context = rng.integers(0, runner.vocab_size, context_tokens)
    s = runner.session()
    s.prefill(context)
    trees = {n: (rng.integers(0, runner.vocab_size, n + 1),
                 np.array([-1] + [int(rng.integers(0, i)) for i in range(1, n + 1)], np.int32)) for n in sizes}
    times: dict[int, list[float]] = {n: [] for n in sizes}
    for n in sizes:                            # one pass per shape to warm it up
        s.extend(*trees[n])
    for _ in range(repeats):                   # rounds over every size: a slow spell of the machine hits them all
        for n in sizes:
            t = time.perf_counter()
            s.extend(*trees[n])
            times[n].append(time.perf_counter() - t)
    pick = statistics.median if statistic == "median" else min
    return {n: pick(times[n]) for n in sizes}


_COSTS_LOCK = threading.Lock()
#: node counts of the curve a cost-aware schedule measures (`runner_verify_costs`)
SCHEDULE_SIZES = (0, 1, 2, 3, 4, 6, 8, 12, 16)


def runner_verify_costs(runner) -> dict[int, float]:
    """The verify-cost curve of ``runner`` at `SCHEDULE_SIZES` (about 1.5-2 s on a CPU), measured once per runner and
    kept on it; what `schedules.Thompson` reads with ``costs="measured"``. A cost model rather than a report: the
    fastest of 5 rounds per size (a busy machine only ever adds time), made non-decreasing (`monotone_costs`)."""
    with _COSTS_LOCK:
        cached = getattr(runner, "_verify_costs", None)
        if cached is None:
            cached = monotone_costs(verify_cost_curve(runner, SCHEDULE_SIZES, context_tokens=256, repeats=5,
                                                      statistic="min"))
            runner._verify_costs = cached
        return dict(cached)


def monotone_costs(curve) -> dict[int, float]:
    """A verify-cost curve ``{draft nodes: seconds}`` made non-decreasing in the node count (each cost the minimum of
    its own and every larger tree's): a pass over more nodes does the same work and more, so a smaller tree that
    measured slower only met a busy moment. ``{0: 0.04, 2: 0.039, 4: 0.045, 6: 0.04}`` ->
    ``{0: 0.039, 2: 0.039, 4: 0.04, 6: 0.04}``."""
    items = sorted((int(k), float(v)) for k, v in dict(curve).items())
    low = np.minimum.accumulate(np.array([v for _, v in items])[::-1])[::-1]
    return {k: float(v) for (k, _), v in zip(items, low)}


def expected_speedups(curve, alpha: float, gammas, draft_seconds_per_token: float = 0.0) -> np.ndarray:
    """Expected speedup over plain decoding of a chain draft of each length in ``gammas`` with per-token acceptance
    ``alpha``: tokens per step ``(1 - alpha^(g+1)) / (1 - alpha)`` over the step's cost relative to a plain step
    (the verify-cost ``curve`` {draft nodes: seconds}, interpolated, plus ``g`` draft tokens). float [len(gammas)].
    Example: a flat curve and alpha 0.8 give 3.36 at g = 4."""
    from workbench.speculative.run import expected_chain_length

    gammas = np.asarray(list(gammas), np.int64)
    if gammas.size == 0 or (gammas < 0).any():
        raise SpeculativeError("gammas must be non-negative draft lengths")
    if not 0 <= alpha <= 1:
        raise SpeculativeError(f"alpha must be in [0, 1], got {alpha}")
    rel = relative_costs(curve, int(gammas.max()))
    plain = dict(curve)[0] if 0 in dict(curve) else min(dict(curve).values())
    extra = draft_seconds_per_token / plain
    return np.array([expected_chain_length(alpha, g) / (rel[g] + g * extra) for g in gammas])


def relative_costs(curve, max_gamma: int) -> np.ndarray:
    """A verify-cost curve ``{draft nodes: seconds}`` (node count 0 = a plain step) as float [max_gamma + 1] costs
    relative to the plain step, linearly interpolated between measured sizes and extrapolated past the last one
    with its last slope. Example: ``relative_costs({0: 0.02, 4: 0.025, 8: 0.04}, 6)`` -> [1, 1.06, 1.13, 1.19,
    1.25, 1.44, 1.63]."""
    try:
        items = sorted((int(k), float(v)) for k, v in dict(curve).items())
    except (TypeError, ValueError) as exc:
        raise SpeculativeError(f"costs must map draft-node counts to seconds: {exc}") from exc
    if not items or items[0][0] != 0 or any(v <= 0 or not np.isfinite(v) for _, v in items):
        raise SpeculativeError("costs need a positive time for 0 draft nodes (a plain step) and positive times")
    n = np.array([k for k, _ in items], np.float64)
    t = np.array([v for _, v in items], np.float64) / items[0][1]
    g = np.arange(max_gamma + 1, dtype=np.float64)
    out = np.interp(g, n, t)
    if len(n) > 1 and max_gamma > n[-1]:
        slope = (t[-1] - t[-2]) / (n[-1] - n[-2])
        past = g > n[-1]
        out[past] = t[-1] + slope * (g[past] - n[-1])
    return out
