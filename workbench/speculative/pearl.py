"""PEARL's pre-verify / post-verify (Liu et al. 2024, "Parallel Speculative Decoding with Adaptive Draft Length"),
simulated as a two-lane timeline from measured draft and verify costs.

Sequential speculative decoding alternates: the drafter drafts gamma tokens while the target waits, then the target
verifies while the drafter waits. PEARL runs both at once (in the paper, on two devices):

* *post-verify*: while the target verifies step i's draft, the drafter keeps drafting as if everything will be
  accepted. If step i is fully accepted, step i+1's draft is already (partly) done; otherwise it is thrown away.
* *pre-verify*: while the drafter drafts step i, the target already verifies the draft's first token; if that token is
  rejected the step ends after one draft token instead of gamma.

`pearl_timeline` replays the per-step acceptance of a real `SpecRun` (or any acceptance sequence) under both
schedules and returns the lanes' intervals, so that a widget can draw them. It is a cost model of what PEARL would
gain with a second device, not a parallel run: on one CPU the two models share the cores.

Example::

    tl = pearl_timeline(gammas=[4, 4, 4], accepted=[4, 0, 2], draft_seconds=0.01, verify_seconds=0.04)
    tl.sequential_seconds, tl.pearl_seconds          # (0.24, 0.20)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.errors import SpeculativeError


@dataclass
class Timeline:
    """Intervals ``(lane, start, end, step)`` with lane ``"draft"`` or ``"verify"``, for both schedules."""

    sequential: list[tuple[str, float, float, int]]
    pearl: list[tuple[str, float, float, int]]
    sequential_seconds: float
    pearl_seconds: float

    @property
    def speedup(self) -> float:
        return self.sequential_seconds / self.pearl_seconds if self.pearl_seconds > 0 else 1.0

    def summary(self) -> dict:
        return {"sequential_seconds": self.sequential_seconds, "pearl_seconds": self.pearl_seconds,
                "speedup": self.speedup, "steps": len({e[3] for e in self.sequential})}


def pearl_timeline(gammas, accepted, draft_seconds: float, verify_seconds: float) -> Timeline:
    """Timelines of sequential and PEARL speculative decoding (see the module docstring).

    ``gammas`` [steps]: tokens drafted per step (chain length); ``accepted`` [steps]: tokens accepted;
    ``draft_seconds``: one draft token; ``verify_seconds``: one verification pass.
    """
    g = np.asarray(gammas, np.int64)
    a = np.asarray(accepted, np.int64)
    if g.shape != a.shape or g.ndim != 1:
        raise SpeculativeError("gammas and accepted must be 1-D arrays of the same length")
    if (g < 0).any() or (a < 0).any() or (a > g).any():
        raise SpeculativeError("need 0 <= accepted <= gammas at every step")
    if not (draft_seconds >= 0 and verify_seconds > 0):
        raise SpeculativeError("draft_seconds must be >= 0 and verify_seconds > 0")
    cd, cv = float(draft_seconds), float(verify_seconds)

    seq, t = [], 0.0
    for i, (gi, _) in enumerate(zip(g, a)):
        seq.append(("draft", t, t + gi * cd, i))
        t += gi * cd
        seq.append(("verify", t, t + cv, i))
        t += cv
    seq_total = t

    par, t = [], 0.0
    ready = 0.0          # draft time of this step already done during the previous verification
    for i, (gi, ai) in enumerate(zip(g, a)):
        need = max(0.0, gi * cd - ready)
        if gi > 0 and ai == 0:           # pre-verify: the first token is checked while the rest is drafted
            need = min(need, cd)
        par.append(("draft", t, t + need, i))
        t += need
        par.append(("verify", t, t + cv, i))
        # post-verify: the drafter keeps going during verification; it only counts if all was accepted
        nxt = g[i + 1] if i + 1 < len(g) else 0
        if nxt:
            par.append(("draft", t, t + min(cv, nxt * cd), i + 1))
        ready = min(cv, nxt * cd) if (gi > 0 and ai == gi) else 0.0
        t += cv
    return Timeline(sequential=seq, pearl=par, sequential_seconds=seq_total, pearl_seconds=t)


def run_timeline(run) -> Timeline:
    """`pearl_timeline` of a `SpecRun`, with its own measured mean draft cost per token and verify cost."""
    gam = np.array([s.tree.max_depth for s in run.steps], np.int64)
    acc = np.array([s.n_accepted for s in run.steps], np.int64)
    drafted = max(int(gam.sum()), 1)
    cd = sum(s.draft_seconds for s in run.steps) / drafted
    cv = float(np.mean([s.verify_seconds for s in run.steps])) if run.steps else 1.0
    return pearl_timeline(gam, np.minimum(acc, gam), cd, max(cv, 1e-9))
