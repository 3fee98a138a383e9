"""`early_exit`: self-speculative drafting from the target's own first L layers (EESD / LayerSkip style).

SmolLM2-135M has no smaller sibling to draft with, so the model drafts for itself: the first ``layers`` decoder layers,
then the model's own final norm and LM head, with a KV cache of their own (`DecodeSession(layers=L)`). LayerSkip
(Elhoushi et al. 2024, facebookresearch/LayerSkip) trains the model with early-exit loss so that such exits are good;
EESD (Liu et al. 2024) adds a small trained adapter and Thompson sampling for the draft length (`schedules.thompson`).
We use the pre-trained model as it is, untrained exits: the acceptance figures are therefore a lower bound of what
those methods reach after their training. Drafts are greedy (top-1 chains, top-k children for builders), so verifiers
treat them as point masses, which keeps speculative sampling lossless without storing the draft distributions.

Example::

    d = make_drafter("early_exit", layers=8)
    d.propose(context_ids, budget=4)        # DraftTree chain of 4 greedy early-exit tokens
"""

from __future__ import annotations

import numpy as np

from workbench.errors import SpeculativeError
from workbench.speculative.drafter import Drafter, check_budget, check_context, register_drafter
from workbench.speculative.tree import DraftTree


def _softmax(x: np.ndarray, temperature: float) -> np.ndarray:
    z = x.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


@register_drafter("early_exit")
class EarlyExitDrafter(Drafter):
    """Draft with the target's first ``layers`` decoder layers (see the module docstring).

    ``runner``: a `workbench.models.ModelRunner` (default: the shared SmolLM2 runner). ``max_draft``: the longest
    chain `propose` drafts. ``temperature``: of the draft probabilities reported to tree builders.
    """

    name = "early_exit"
    model_based = True

    def __init__(self, layers: int = 8, *, runner=None, max_draft: int = 8, temperature: float = 1.0):
        if runner is None:
            from workbench.models import default_runner

            runner = default_runner()
        if isinstance(layers, bool) or not isinstance(layers, (int, np.integer)) or \
                not 1 <= layers < runner.n_layers:
            raise SpeculativeError(f"layers must be an integer in [1, {runner.n_layers - 1}], got {layers!r}")
        self.layers = int(layers)
        self.max_draft = check_budget(max_draft, "max_draft")
        if not temperature > 0:
            raise SpeculativeError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.runner = runner
        self.session = runner.session(layers=self.layers)
        self._root_logits: np.ndarray | None = None

    def params(self) -> dict:
        return {"layers": self.layers, "max_draft": self.max_draft, "temperature": self.temperature}

    def reset(self, prompt_ids) -> None:
        self.session = self.runner.session(layers=self.layers)
        self._root_logits = None

    def _sync(self, context: np.ndarray) -> np.ndarray:
        """Make the draft cache hold exactly ``context``; return the logits after its last token."""
        s = self.session
        have = np.asarray(s.ids, dtype=np.int64)
        n = min(len(have), len(context))
        common = int(np.argmin(have[:n] == context[:n])) if n and not np.all(have[:n] == context[:n]) else n
        if common == len(context) == len(have) and self._root_logits is not None:
            return self._root_logits
        common = min(common, len(context) - 1)       # re-run at least the last token for its logits
        s.truncate(common)
        logits = s.extend(context[common:])
        s.commit(np.arange(len(context) - common))
        self._root_logits = logits[-1]
        return self._root_logits

    def propose(self, context_ids, budget: int) -> DraftTree:
        ctx = check_context(context_ids)
        n = min(check_budget(budget), self.max_draft)
        logits = self._sync(ctx)
        tokens, probs = [], []
        for _ in range(n):
            p = _softmax(logits, self.temperature)
            t = int(np.argmax(p))
            tokens.append(t)
            probs.append(float(p[t]))
            logits = self.session.extend([t])[-1]
            self.session.commit([0])
        self._root_logits = None                      # the cache now runs ahead of the context
        return DraftTree.chain(np.asarray(tokens, np.int64), np.asarray(probs, np.float32), drafter=self.name)

    def expand(self, context_ids, paths, k: int):
        ctx = check_context(context_ids)
        k = check_budget(k, "k")
        root = self._sync(ctx)
        # all paths of this call as one trie, run in one pass below the synced context
        index: dict[tuple, int] = {}
        tokens, parents = [], []
        ends = []
        for path in paths:
            node = -1
            key: tuple = ()
            for t in np.asarray(path, dtype=np.int64).tolist():
                key = key + (t,)
                if key not in index:
                    index[key] = len(tokens)
                    tokens.append(t)
                    parents.append(node)
                node = index[key]
            ends.append(node)
        rows = None
        if tokens:
            rows = self.session.extend(np.asarray(tokens, np.int64), np.asarray(parents, np.int32))
        out = []
        for node in ends:
            logits = root if node < 0 else rows[node]
            p = _softmax(logits, self.temperature)
            top = np.argpartition(-p, k - 1)[:k] if k < p.shape[0] else np.arange(p.shape[0])
            top = top[np.argsort(-p[top], kind="stable")]
            out.append((top.astype(np.int64), p[top].astype(np.float32)))
        return out
