"""Draft-length schedules: how many tokens to draft at the next step, learnt from what was accepted so far.

One interface (`make_schedule(name, **params)`): ``length()`` is the draft budget for the next step (an upper bound
on the draft's nodes), ``trim(tree)`` may cut a proposed draft short, ``update(drafted, accepted)`` is told what
happened. Schedules:

========================  ===========================================================================================
``fixed(gamma)``          always ``gamma``
``heuristic(start=5)``    Hugging Face assisted generation's "heuristic" schedule (`AssistedCandidateGenerator`,
                          ``num_assistant_tokens_schedule="heuristic"``): +2 after a step whose draft was all
                          accepted, -1 otherwise (never below 1)
``specdecpp(threshold)``  SpecDec++ (Huang et al. 2024): stop drafting once the predicted probability that some
                          drafted token is rejected, ``1 - prod(accept_i)``, passes ``threshold``. SpecDec++ predicts
                          ``accept_i`` with a trained head on the draft model; we use the drafter's own draft
                          probability of each token (no training), calibrated by the running acceptance rate
``thompson(max_gamma)``   EESD (Liu et al. 2024): Thompson sampling over the draft length. A Beta posterior over the
                          per-token acceptance rate; each step samples a rate and drafts the length that maximises
                          expected tokens per unit of time, ``(1 - a^(g+1)) / (1 - a) / (cost(g) + g * c)``, ``c``
                          the draft/verify cost ratio per token and ``cost(g)`` the time of a verification pass with
                          ``g`` draft tokens relative to a plain step: the target's *measured* verify-cost curve
                          (``costs="measured"``, the default: `costs.runner_verify_costs`, measured once per runner
                          when `generate` binds the schedule), a given curve ``{nodes: seconds}``, or the constant
                          ``1 + verify_overhead`` (``costs=None``). Length 0 (a plain decoding step) wins when
                          drafting does not pay, so the schedule is never much slower than plain decoding; the
                          posterior keeps sampling, so it tries again
========================  ===========================================================================================

PEARL's pre-verify/post-verify is a different kind of schedule (drafting and verifying in parallel); it is
simulated from measured costs by `workbench.speculative.pearl`.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import SpeculativeError
from workbench.speculative.costs import relative_costs, runner_verify_costs
from workbench.speculative.drafter import check_budget
from workbench.speculative.tree import DraftTree, tree_depths


def _prune_to(tree: DraftTree, keep: np.ndarray) -> DraftTree:
    """The sub-tree of the nodes in ``keep`` (bool [N], closed under ancestors), indices renumbered."""
    if keep.all():
        return tree
    idx = np.flatnonzero(keep)
    remap = np.full(tree.size, -1, np.int64)
    remap[idx] = np.arange(idx.size)
    parents = np.where(tree.parents[idx] >= 0, remap[np.maximum(tree.parents[idx], 0)], -1)
    dists = None
    if tree.draft_dists is not None:
        dists = tree.draft_dists[np.concatenate([[0], idx + 1])]
    return DraftTree(tokens=tree.tokens[idx], parents=parents, draft_prob=tree.draft_prob[idx],
                     draft_dists=dists, meta=dict(tree.meta))


class Schedule:
    name = "schedule"

    def length(self) -> int:
        """Draft budget of the next step; 0 means a plain decoding step (no draft)."""
        raise NotImplementedError

    def trim(self, tree: DraftTree) -> DraftTree:
        return tree

    def update(self, drafted: int, accepted: int) -> None:
        """``drafted``: nodes on the longest drafted path (the chain length), ``accepted``: accepted tokens."""

    def bind(self, runner) -> None:
        """Told the target's runner before the first step (a cost-aware schedule measures it)."""

    def params(self) -> dict:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"


class Fixed(Schedule):
    name = "fixed"

    def __init__(self, gamma: int = 5):
        self.gamma = check_budget(gamma, "gamma")

    def length(self) -> int:
        return self.gamma

    def params(self) -> dict:
        return {"gamma": self.gamma}


class Heuristic(Schedule):
    """Hugging Face's heuristic: +2 when everything drafted was accepted, -1 (floor 1) otherwise."""

    name = "heuristic"

    def __init__(self, start: int = 5, max_gamma: int = 64):
        self.start = check_budget(start, "start")
        self.max_gamma = check_budget(max_gamma, "max_gamma")
        self.gamma = min(self.start, self.max_gamma)

    def length(self) -> int:
        return self.gamma

    def update(self, drafted: int, accepted: int) -> None:
        if drafted == 0:
            return
        if accepted >= drafted:
            self.gamma = min(self.max_gamma, self.gamma + 2)
        else:
            self.gamma = max(1, self.gamma - 1)

    def params(self) -> dict:
        return {"start": self.start, "max_gamma": self.max_gamma}


class SpecDecPP(Schedule):
    """SpecDec++-style stopping (see the module docstring): drafts up to ``max_gamma`` nodes and cuts every path at
    the first node where ``1 - prod(acceptance estimates along the path) > threshold``."""

    name = "specdecpp"

    def __init__(self, threshold: float = 0.7, max_gamma: int = 16):
        if not 0 < threshold < 1:
            raise SpeculativeError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = float(threshold)
        self.max_gamma = check_budget(max_gamma, "max_gamma")
        self._acc, self._drafted = 1.0, 1.0   # running acceptance calibration (Laplace prior)

    def length(self) -> int:
        return self.max_gamma

    def trim(self, tree: DraftTree) -> DraftTree:
        if tree.size == 0:
            return tree
        calib = self._acc / self._drafted
        est = np.clip(tree.draft_prob.astype(np.float64), 0, 1) * calib if tree.meta.get("model_based") \
            else np.full(tree.size, calib)
        survive = np.empty(tree.size)
        for i in range(tree.size):
            p = tree.parents[i]
            survive[i] = (1.0 if p < 0 else survive[p]) * est[i]
        keep = (1 - survive) <= self.threshold
        keep[np.flatnonzero(tree.parents < 0)[:1]] = True   # always try the first-choice token
        for i in range(tree.size):                           # closed under ancestors
            if tree.parents[i] >= 0 and not keep[tree.parents[i]]:
                keep[i] = False
        return _prune_to(tree, keep)

    def update(self, drafted: int, accepted: int) -> None:
        if drafted:
            self._acc += accepted
            self._drafted += drafted

    def params(self) -> dict:
        return {"threshold": self.threshold, "max_gamma": self.max_gamma}


class Thompson(Schedule):
    """EESD-style Thompson sampling of the draft length (see the module docstring)."""

    name = "thompson"

    def __init__(self, max_gamma: int = 12, cost_ratio: float = 0.0, verify_overhead: float = 0.3,
                 costs="measured", seed: int = 0):
        self.max_gamma = check_budget(max_gamma, "max_gamma")
        if not cost_ratio >= 0:
            raise SpeculativeError(f"cost_ratio must be >= 0, got {cost_ratio}")
        if not verify_overhead >= 0:
            raise SpeculativeError(f"verify_overhead must be >= 0, got {verify_overhead}")
        self.cost_ratio = float(cost_ratio)
        self.verify_overhead = float(verify_overhead)
        self.costs = costs
        self._relative = None
        if costs is not None and costs != "measured":
            self._relative = relative_costs(costs, self.max_gamma)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.a, self.b = 1.0, 1.0

    def bind(self, runner) -> None:
        """Called by `generate` with the target's runner: a ``"measured"`` schedule takes its verify-cost curve."""
        if self.costs == "measured" and self._relative is None:
            self._relative = relative_costs(runner_verify_costs(runner), self.max_gamma)

    def pass_costs(self) -> np.ndarray:
        """float [max_gamma + 1]: time of a verification pass with g draft tokens relative to a plain step."""
        if self._relative is not None:
            return self._relative
        return np.concatenate([[1.0], np.full(self.max_gamma, 1.0 + self.verify_overhead)])

    def length(self) -> int:
        alpha = min(float(self.rng.beta(self.a, self.b)), 1 - 1e-9)
        g = np.arange(1, self.max_gamma + 1)
        value = (1 - alpha ** (g + 1)) / (1 - alpha) / (self.pass_costs()[1:] + g * self.cost_ratio)
        best = int(np.argmax(value))
        return int(g[best]) if value[best] > 1.0 else 0     # 0: a plain step pays more than any draft

    def update(self, drafted: int, accepted: int) -> None:
        if drafted:
            # accepted tokens are successes; the first rejection (if any) a failure
            self.a += accepted
            self.b += 1 if accepted < drafted else 0

    def params(self) -> dict:
        costs = self.costs if self.costs in (None, "measured") else {int(k): float(v) for k, v in self.costs.items()}
        return {"max_gamma": self.max_gamma, "cost_ratio": self.cost_ratio,
                "verify_overhead": self.verify_overhead, "costs": costs, "seed": self.seed}


SCHEDULES = {"fixed": Fixed, "heuristic": Heuristic, "specdecpp": SpecDecPP, "thompson": Thompson}


def make_schedule(name="fixed", **params) -> Schedule:
    """A schedule by name (``fixed``, ``heuristic``, ``specdecpp``, ``thompson``) or an int (fixed length)."""
    if isinstance(name, Schedule):
        return name
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        return Fixed(int(name))
    if name not in SCHEDULES:
        raise SpeculativeError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    try:
        return SCHEDULES[name](**params)
    except TypeError as exc:
        raise SpeculativeError(f"schedule {name!r}: {exc}") from exc


def longest_path(tree: DraftTree) -> int:
    return int(tree_depths(tree.parents).max()) if tree.size else 0
