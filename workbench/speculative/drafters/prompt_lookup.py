"""Prompt lookup decoding: copy what followed an earlier occurrence of the context's last n tokens.

Follows Hugging Face's ``PromptLookupCandidateGenerator`` (``transformers/generation/candidate_generator.py``) and
vLLM's n-gram proposer (``vllm/v1/spec_decode/ngram_proposer.py``, ``_find_longest_matched_ngram_and_propose_tokens``).
Both take the **longest** n in ``[min_ngram, max_ngram]`` whose n-gram (the context's tail) occurs earlier with at
least one token after it, and of its occurrences the **first** (leftmost) one; the draft is the (up to)
``num_pred_tokens`` tokens after it, cut at the end of the context. That is ``match="first"``, the default;
``match="last"`` takes the most recent occurrence instead (fresher text, often what is being repeated now).

Where this differs from them, deliberately:

* Hugging Face's minimum n-gram is always 1 (``min_ngram`` here; vLLM has it); its EOS truncation and
  logits-processor filtering are left to the decoding loop;
* ``draft_prob`` of a proposed chain is 1.0 for every node (a copy, not a distribution);
* ``expand`` (not in either library) ranks *all* tokens that followed a match of the tail of ``context + path``:
  longer match first, then more matches of at least that length, then the more recent; its probabilities are the
  token's share of those matches (a frequency estimate).

>>> d = PromptLookupDrafter(max_ngram=2, num_pred_tokens=3)
>>> d.propose(np.array([1, 2, 3, 4, 1, 2]), budget=8).tokens.tolist()
[3, 4, 1]
"""

from __future__ import annotations

import numpy as np

from workbench.errors import SpeculativeError
from workbench.speculative.drafter import Drafter, check_budget, check_context, register_drafter
from workbench.speculative.drafters.kernels import (
    check_ids,
    check_paths,
    prompt_lookup_candidates,
    prompt_lookup_match,
)
from workbench.speculative.tree import DraftTree

MATCH_RULES = ("first", "last")


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise SpeculativeError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


@register_drafter("prompt_lookup")
class PromptLookupDrafter(Drafter):
    """Prompt lookup (n-gram copy) drafter; see the module docstring.

    Parameters: ``min_ngram`` (1), ``max_ngram`` (3): the n-gram sizes tried, longest first; ``num_pred_tokens``
    (10): tokens copied after the match (also capped by the budget and the end of the context); ``match``
    (``"first"``: the leftmost occurrence, as HF and vLLM; ``"last"``: the most recent one).
    """

    name = "prompt_lookup"

    def __init__(self, min_ngram: int = 1, max_ngram: int = 3, num_pred_tokens: int = 10, match: str = "first"):
        self.min_ngram = _positive_int(min_ngram, "min_ngram")
        self.max_ngram = _positive_int(max_ngram, "max_ngram")
        self.num_pred_tokens = _positive_int(num_pred_tokens, "num_pred_tokens")
        if self.min_ngram > self.max_ngram:
            raise SpeculativeError(f"min_ngram ({min_ngram}) must not exceed max_ngram ({max_ngram})")
        if match not in MATCH_RULES:
            raise SpeculativeError(f"match must be one of {MATCH_RULES}, got {match!r}")
        self.match = match

    def params(self) -> dict:
        return {"min_ngram": self.min_ngram, "max_ngram": self.max_ngram,
                "num_pred_tokens": self.num_pred_tokens, "match": self.match}

    def find_match(self, context_ids) -> tuple[int, int]:
        """``(start, n)``: the draft copies ``context[start:start + num_pred_tokens]``, after an occurrence of the
        last ``n`` tokens; ``(-1, 0)`` when no n-gram of an allowed size recurs."""
        ctx = check_ids(check_context(context_ids))
        start, n = prompt_lookup_match(ctx, self.min_ngram, self.max_ngram, self.match == "last")
        return int(start), int(n)

    def propose(self, context_ids, budget: int) -> DraftTree:
        ctx = check_ids(check_context(context_ids))
        budget = check_budget(budget)
        start, n = prompt_lookup_match(ctx, self.min_ngram, self.max_ngram, self.match == "last")
        if start < 0:
            return DraftTree.empty(drafter=self.name, match_len=0)
        stop = min(start + min(self.num_pred_tokens, budget), ctx.shape[0])
        tokens = ctx[start:stop]
        return DraftTree.chain(tokens, np.ones(tokens.shape[0], np.float32), drafter=self.name,
                               match_len=int(n), match_start=int(start))

    def expand(self, context_ids, paths, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        ctx = check_ids(check_context(context_ids))
        k = check_budget(k, "k")
        out = []
        for path in check_paths(paths):
            seq = np.concatenate([ctx, path]) if path.size else ctx
            tokens, probs, _ = prompt_lookup_candidates(seq, self.min_ngram, self.max_ngram, k)
            out.append((tokens.astype(np.int64), probs.astype(np.float32)))
        return out
