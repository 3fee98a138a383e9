"""The drafter interface and its registry (`make_drafter(name, **params)`).

A drafter guesses what the target model will say next. Every drafter answers two questions:

* ``propose(context_ids, budget) -> DraftTree``: its own, native draft of at most ``budget`` nodes below the last
  context token (prompt lookup: a chain copied from an earlier match; SuffixDecoding: a frequency-scored tree; Token
  Recycling: its static template filled from the adjacency matrix ...);
* ``expand(context_ids, paths, k) -> [(tokens [<=k] int64, probs [<=k] float32), ...]``: the drafter's top-``k``
  candidates (best first) after ``context_ids`` followed by each path of drafted tokens. Tree builders (`builders.py`)
  call it to fill a tree shape of their own choosing; a drafter with nothing to say for a path returns empty arrays.

and is told what happened, so that drafters that learn (Token Recycling, SuffixDecoding) can:

* ``reset(prompt_ids)`` at the start of a request;
* ``observe(fed_tokens, target_top)`` after each verification pass: ``fed_tokens`` int64 [N + 1] (the root and the
  draft nodes, as run through the target), ``target_top`` int64 [N + 1, K] the target's top-K next tokens after each
  of them (K >= 8, best first);
* ``finish(output_ids)`` at the end of a request with the generated tokens.

``context_ids`` is always the full committed sequence (prompt + output so far, int64 [T]); its last token is the
draft tree's root.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from workbench.errors import SpeculativeError
from workbench.speculative.tree import DraftTree


class Drafter:
    """Base class; see the module docstring. Subclasses set ``name`` and implement ``propose`` and ``expand``."""

    name = "drafter"
    #: True when ``expand`` returns real draft probabilities (a model); False for counting/copying drafters, whose
    #: probabilities are frequency estimates and whose proposals verifiers treat as point masses.
    model_based = False

    def reset(self, prompt_ids: np.ndarray) -> None:
        """Start of a request."""

    def propose(self, context_ids: np.ndarray, budget: int) -> DraftTree:
        raise NotImplementedError

    def expand(self, context_ids: np.ndarray, paths: list[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError

    def observe(self, fed_tokens: np.ndarray, target_top: np.ndarray) -> None:
        """After each verification pass (see the module docstring)."""

    def finish(self, output_ids: np.ndarray) -> None:
        """End of a request."""

    def params(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


DRAFTERS: dict[str, Callable[..., Drafter]] = {}


def register_drafter(name: str):
    def deco(factory):
        DRAFTERS[name] = factory
        return factory
    return deco


def make_drafter(name: str, **params) -> Drafter:
    """A drafter by name: ``prompt_lookup``, ``suffix``, ``recycling``, ``early_exit``, ``corpus_ngram``."""
    _load_all()
    if isinstance(name, Drafter):
        return name
    if name not in DRAFTERS:
        raise SpeculativeError(f"unknown drafter {name!r}; choose one of {sorted(DRAFTERS)}")
    try:
        return DRAFTERS[name](**params)
    except TypeError as exc:
        raise SpeculativeError(f"drafter {name!r}: {exc}") from exc


def check_context(context_ids) -> np.ndarray:
    ctx = np.asarray(context_ids)
    if ctx.ndim != 1 or ctx.shape[0] == 0:
        raise SpeculativeError("the context must be a non-empty 1-D array of token ids")
    if not np.issubdtype(ctx.dtype, np.integer):
        raise SpeculativeError(f"token ids must be integers, got dtype {ctx.dtype}")
    return ctx.astype(np.int64, copy=False)


def check_budget(budget, what: str = "budget") -> int:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget <= 0:
        raise SpeculativeError(f"{what} must be a positive integer, got {budget!r}")
    return int(budget)


def _load_all() -> None:
    # drafter modules register themselves on import
    import importlib

    for mod in ("prompt_lookup", "suffix", "recycling", "corpus_ngram", "early_exit"):
        try:
            importlib.import_module(f"workbench.speculative.drafters.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"workbench.speculative.drafters.{mod}":
                raise
