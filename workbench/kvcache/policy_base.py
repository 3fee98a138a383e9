"""The `Policy` base class, the `Plan` the backends execute, and the budget rules the policies share.

A policy (one subclass per name, in `policies`) holds its parameters, checks them when it is built, and resolves
them on a trace at a budget into a `Plan`: what it scores and how it selects. The numba backend (`replay`) and the
torch backend (`torch_replay`) are executors of plans: a table of routines keyed by ``Plan.selector``, with no
knowledge of policy names and no checks of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from workbench.errors import KVCacheError

EVICTION_PHASES = ("prefill", "decode")
# the numeric parameters: positive numbers (sinks may be 0), or None where the default depends on the budget
_NUMERIC = ("sinks", "recent", "window", "page", "block", "blocks", "chunks", "calibration", "beta")
# the other numeric parameters, whose ranges each policy checks itself: they must at least be numbers
_NUMBERS = _NUMERIC + ("kernel", "floor", "fraction", "seed")

# what the executors know how to run (`Plan.selector`) and the starting scores of the generic evictor
SELECTORS = ("full", "window", "tova_layer", "evict", "adakv", "kvcrush", "oracle", "tokenselect", "fasa", "hisa",
             "quest")
SCORES = ("position", "random", "h2o", "tova", "tova_layer", "snapkv")
UPDATES = ("static", "accumulate", "last_query")


@dataclass(frozen=True)
class PolicySpec:
    kind: str
    defaults: dict
    description: str
    query_aware: bool = False
    official: str = ""       # the official implementation followed: repository and file (or why there is none)
    differences: str = ""    # conventions where we deliberately differ from it


@dataclass(frozen=True)
class Plan:
    """What a policy does on one trace at one budget (`Policy.plan`): its parameters checked against the budget and
    the trace, budget-dependent defaults filled in. The backends execute it.

    ``selector`` (one of `SELECTORS`) names the executor's routine: "full" (the whole cache), "window" (the
    decode-phase sliding window), "tova_layer" (decode-phase TOVA with one cache per layer), "evict" (the generic
    evictor), "adakv", "kvcrush", or a query-aware selector ("oracle", "tokenselect", "fasa", "hisa", "quest").
    ``layer_budgets`` has one budget per replayed layer (PyramidKV's vary). The generic evictor (and KVCrush's
    base) starts from the ``score`` of every position (`scores.plan_scores`, one of `SCORES`), changed at each
    decode step by ``update`` (`UPDATES`: "accumulate" is H2O's, "last_query" TOVA's); ``decode`` evicts down to
    the budget at every decode step, else the context is compressed once and decode tokens are appended; the
    first ``sinks`` and the newest ``recent`` positions are protected. ``window`` is the SnapKV family's
    observation window; ``args`` the selector's own settings (``kernel`` and ``pooling`` of the SnapKV scores,
    AdaKV's ``floor``, KVCrush's ``fraction`` and ``anchor``, Quest's ``page``, HISA's ``block`` and ``blocks``,
    FASA's ``chunks`` and ``calibration``).
    """

    selector: str
    budget: int
    layer_budgets: tuple
    score: str = ""
    update: str = "static"
    decode: bool = False
    sinks: int = 0
    recent: int = 1
    window: int = 0
    args: dict = field(default_factory=dict, hash=False)


class Policy:
    """A named policy with all its parameters filled in: build it with `make_policy` (``make_policy("snapkv",
    window=16)``) or its class (``SnapKV(window=16)``).

    A subclass sets ``name`` and ``spec`` (its parameters' defaults, the official code it follows), checks its
    parameters in `check` (called once, when it is built) and says in `plan` what it scores and how it selects on a
    trace at a budget, raising `KVCacheError` for parameters that leave no room in that budget. Policies are
    immutable; two are equal when they are the same policy with the same parameters."""

    name: ClassVar[str] = ""
    spec: ClassVar[PolicySpec]

    def __init__(self, **params):
        unknown = set(params) - set(self.spec.defaults)
        if unknown:
            raise KVCacheError(f"policy {self.name!r} has no parameter(s) {sorted(unknown)}; it takes "
                               f"{sorted(self.spec.defaults) or 'none'}")
        full = {**self.spec.defaults, **params}
        if "phase" in full and full["phase"] not in EVICTION_PHASES:
            raise KVCacheError(f"phase must be 'prefill' or 'decode', got {full['phase']!r}")
        object.__setattr__(self, "params", full)
        for key in _NUMBERS:
            value = full.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise KVCacheError(f"{self.name} parameter {key} must be a number, got {value!r}")
            if key in _NUMERIC and value is not None and value < (0 if key == "sinks" else 1):
                raise KVCacheError(f"{self.name} parameter {key} must be a positive number, got {value!r}")
        self.check()

    def check(self) -> None:
        """Refuse parameters that are wrong whatever the trace and budget (`KVCacheError`)."""

    def plan(self, trace, budget: int, layers) -> Plan:
        """The `Plan` of this policy on ``trace`` (a `KVTrace`) at ``budget`` tokens per KV head, for the model
        layers ``layers`` (one layer budget each). Raises `KVCacheError` for parameters that leave no room in the
        budget or do not fit the trace."""
        raise NotImplementedError

    def _plan(self, selector: str, budget: int, layers, layer_budgets=None, **fields) -> Plan:
        budget = int(budget)
        if layer_budgets is None:
            layer_budgets = [budget for _ in layers]
        return Plan(selector, budget, tuple(int(b) for b in layer_budgets), **fields)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def phase(self) -> str | None:
        return self.params.get("phase")

    @property
    def query_aware(self) -> bool:
        return self.spec.query_aware

    def label(self) -> str:
        extra = {k: v for k, v in self.params.items() if self.spec.defaults.get(k) != v}
        return self.name + (("(" + ", ".join(f"{k}={v}" for k, v in extra.items()) + ")") if extra else "")

    def __setattr__(self, key, value):
        raise AttributeError(f"a Policy is immutable: make_policy({self.name!r}, ...) builds another")

    def __eq__(self, other):
        if not isinstance(other, Policy):
            return NotImplemented
        return type(other) is type(self) and other.params == self.params

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


def resolve_budget(budget, n_prefill: int, n_tokens: int) -> int:
    """Tokens per KV head from ``budget``: an int in [1, n_tokens], or a float ratio in (0, 1] of the context
    (``round(ratio * n_prefill)``, at least 1 or an error)."""
    if isinstance(budget, bool) or not isinstance(budget, int | float):
        raise KVCacheError(f"the budget must be a number of tokens (int) or a ratio (float), got {budget!r}")
    if isinstance(budget, float) and not float(budget).is_integer() or isinstance(budget, float) and budget <= 1.0:
        if not 0.0 < budget <= 1.0:
            raise KVCacheError(f"a budget ratio must be in (0, 1], got {budget}")
        tokens = int(round(budget * n_prefill))
        if tokens < 1:
            raise KVCacheError(f"a budget ratio of {budget} of a {n_prefill}-token context rounds to 0 tokens; "
                               "give a larger ratio or an absolute number of tokens")
        return tokens
    tokens = int(budget)
    if tokens <= 0:
        raise KVCacheError(f"the budget must be at least 1 token, got {budget}")
    if tokens > n_tokens:
        raise KVCacheError(f"a budget of {tokens} tokens is larger than the whole context ({n_tokens} tokens); "
                           f"use at most {n_tokens} (or policy 'full')")
    return tokens


def pyramid_budgets(budget: int, window: int, n_layers: int, beta: float, layers, n_prefill: int) -> list[int]:
    """PyramidKV's per-layer budgets, KVCache-Factory's integer rule (``PyramidKVCluster.update_kv``): with
    ``base = budget - window``, a context shorter than ``2 * base`` keeps ``budget`` in every layer (plain SnapKV);
    otherwise ``lo = base // beta``, ``hi = 2 * base - lo`` (when ``hi >= n_prefill - window``: ``hi = n_prefill -
    window`` and ``lo = 2 * base - hi``), ``step = (hi - lo) // (n_layers - 1)``, and layer ``l`` keeps
    ``hi - l * step`` context positions plus the window (never fewer than the window, never more than the
    context). Their mean over the layers
    is ``budget`` up to the integer steps (at most ``(n_layers - 1) / 2`` above).

    >>> pyramid_budgets(64, 8, 30, 20, [0, 29], 1000)
    [118, 31]
    """
    base = int(budget) - int(window)
    if int(n_prefill) < 2 * base:
        return [int(budget) for _ in layers]
    lo = int(base // beta)
    hi = 2 * base - lo
    if hi >= n_prefill - window:
        hi = int(n_prefill) - int(window)
        lo = 2 * base - hi
    step = (hi - lo) // max(1, int(n_layers) - 1)
    # (a window larger than base can make the step negative: budgets past the context then keep everything, as
    # the official code does; they are reported as the context)
    return [min(max(0, hi - int(layer) * step) + int(window), int(n_prefill)) for layer in layers]


SNAPKV_WINDOW = 64  # the official default (SnapKV's snapkv_utils.py, kvpress, PyramidKV)


def default_window(budget: int, obs_window: int, n_prefill: int) -> int:
    """The SnapKV-family observation window when none is given: the official 64, capped by the captured window and
    the context; a budget not larger than that gets ``budget // 2`` (at least 1), since the official code needs
    a capacity larger than the window."""
    window = min(SNAPKV_WINDOW, int(obs_window), int(n_prefill))
    return window if window < budget else max(1, budget // 2)


def check_window(trace, policy: Policy, budget: int) -> int:
    """The SnapKV-family observation window of ``policy`` on ``trace`` (a `KVTrace`) at ``budget`` tokens: its
    ``window`` parameter checked against the context, the captured window and the budget, or `default_window`."""
    window = policy.params.get("window")
    if window is None:
        return default_window(budget, trace.obs_window, trace.n_prefill)
    window = int(window)
    if window > trace.n_prefill:
        raise KVCacheError(f"{policy.name} window {window} is larger than the context ({trace.n_prefill} tokens)")
    if window > trace.obs_window:
        raise KVCacheError(f"{policy.name} window {window} is larger than the captured observation window "
                           f"({trace.obs_window}); capture again with obs_window={window}")
    if window >= budget:
        raise KVCacheError(f"{policy.name} window {window} leaves no room in a budget of {budget} tokens; "
                           "give a larger budget or a smaller window")
    return window


def adakv_capacities(scores: np.ndarray, share: int, floor_ratio: float) -> np.ndarray:
    """AdaKV's per-head capacities (``AdaptiveSnapKVCluster.update_kv``): ``c_h`` = how many of the layer's best
    ``H x share`` (head, position) scores are head ``h``'s, then ``round(c_h (1 - floor_ratio) + int(share x
    floor_ratio))`` (round half to even, as torch.round). ``scores`` [H, P] -> int64 [H]."""
    h, p = scores.shape
    top = np.argsort(-scores.ravel(), kind="stable")[: h * share]
    counts = np.bincount(top // p, minlength=h)
    return np.minimum(np.round(counts * (1.0 - floor_ratio) + int(share * floor_ratio)).astype(np.int64), p)


def kvcrush_representatives(share: int, fraction: float) -> int:
    """How many of KVCrush's ``share`` scored slots (budget - window) go to representatives: ``round(fraction x
    share)``, at least 1 and at most ``share`` (0 when the default window fills a budget of 1)."""
    return min(share, max(1, int(round(fraction * share))))
