"""SuffixDecoding (Oliaro et al., 2024): draft from suffix trees over the request's own text and earlier outputs.

Follows Snowflake's ArcticInference (``csrc/suffix_decoding/suffix_tree.cc``, ``arctic_inference/suffix_decoding/
cache.py``), written anew over flat Numba arrays:

* a **local** tree per request indexes prompt + output so far, and a **global** tree indexes the outputs of earlier
  requests (added by :meth:`SuffixDrafter.finish`);
* every start position contributes its suffix, cut at ``max_depth`` tokens; a node's count is the number of
  occurrences of its string, and a child's empirical probability is ``count(child) / count(node)``;
* ``propose``: for every match length ``m = 1 .. len(pattern) - 1`` (``pattern`` = the last ``max_depth`` context
  tokens) whose string ``pattern[-m:]`` occurs in the tree, draft up to ``min(max_spec_tokens, budget,
  int(m * spec_factor + spec_offset))`` tokens: ``mode="path"`` follows the most frequent child while the product
  of probabilities stays >= ``min_token_prob``; ``mode="tree"`` grows a tree best-first by that product. The
  draft with the largest score (sum of node probabilities; ties: the longer match) wins, over both trees (the
  global one only when strictly better), exactly as ``SuffixDecodingCache.speculate``.

Where it differs, deliberately: the trie is uncompressed (one token per node; same counts and probabilities as
ArcticInference's path-compressed tree, simpler flat arrays); ties between equally probable candidates are broken
by count then token id (ArcticInference leaves them to hash-map order), so drafts are deterministic and identical
however the tree was built; the global tree only grows in ``finish`` (ArcticInference also streams the active
response into it); ``max_spec_tokens=None`` means ``max_depth``.

The local tree follows the context: :meth:`reset` indexes the prompt, and each ``propose``/``expand`` appends the
tokens committed since (or rebuilds when the context is not a continuation); that incremental update equals a
rebuild from scratch (tested).

>>> d = SuffixDrafter(mode="path")
>>> d.propose(np.array([7, 1, 2, 3, 9, 1, 2]), budget=4).tokens.tolist()
[3, 9]
"""

from __future__ import annotations

import numpy as np

from workbench.errors import SpeculativeError
from workbench.speculative.drafter import Drafter, check_budget, check_context, register_drafter
from workbench.speculative.drafters.kernels import (
    check_ids,
    check_paths,
    trie_candidates,
    trie_extend,
    trie_rehash,
    trie_speculate,
)
from workbench.speculative.tree import DraftTree
from workbench.tokenization.hashtables import EMPTY

MODES = ("tree", "path")


class SuffixTrie:
    """A depth-limited suffix trie over one or more token sequences, in flat arrays (see ``kernels.py``).

    ``extend(tokens)`` appends to the current sequence; ``new_sequence()`` starts another one (its suffixes never
    run into the previous sequence's). ``counts()`` gives ``{string: occurrences}`` for tests and inspection.
    """

    def __init__(self, max_depth: int = 64, capacity: int = 1024):
        self.max_depth = int(max_depth)
        cap = max(int(capacity), 2 * self.max_depth + 2)
        self._alloc(cap)
        self.tok[0] = -1
        self.parent[0] = -1
        self.depth[0] = 0
        self.first_child[0] = -1
        self.next_sib[0] = -1
        self.count[0] = 0
        self.state = np.zeros(4, np.int64)
        self.state[0] = 1
        self.ring = np.zeros(self.max_depth, np.int32)
        self.n_tokens = 0

    def _alloc(self, cap: int) -> None:
        self.tok = np.zeros(cap, np.int64)
        self.parent = np.zeros(cap, np.int32)
        self.depth = np.zeros(cap, np.int32)
        self.first_child = np.full(cap, -1, np.int32)
        self.next_sib = np.full(cap, -1, np.int32)
        self.count = np.zeros(cap, np.int64)
        self.hkeys = np.full(2 * _pow2(cap), EMPTY, np.int64)
        self.hvals = np.zeros(2 * _pow2(cap), np.int32)

    @property
    def n_nodes(self) -> int:
        return int(self.state[0])

    def _grow(self) -> None:
        n = self.n_nodes
        old = (self.tok, self.parent, self.depth, self.first_child, self.next_sib, self.count)
        self._alloc(2 * self.tok.shape[0])
        for new, arr in zip((self.tok, self.parent, self.depth, self.first_child, self.next_sib, self.count), old):
            new[:n] = arr[:n]
        trie_rehash(self.tok, self.parent, n, self.hkeys, self.hvals)

    def new_sequence(self) -> None:
        self.state[1] = 0
        self.state[2] = 0

    def extend(self, tokens) -> None:
        toks = np.ascontiguousarray(tokens, dtype=np.int64)
        i = 0
        while i < toks.shape[0]:
            i = trie_extend(toks, i, self.tok, self.parent, self.depth, self.first_child, self.next_sib, self.count,
                            self.hkeys, self.hvals, self.state, self.ring, self.max_depth)
            if i < toks.shape[0]:
                self._grow()
        self.n_tokens += int(toks.shape[0])

    def speculate(self, pattern, max_spec_tokens: int, spec_factor: float, spec_offset: float, min_token_prob: float,
                  tree: bool):
        """``(tokens, parents, probs, match_len, score)``; see :func:`kernels.trie_speculate`."""
        return trie_speculate(np.ascontiguousarray(pattern, dtype=np.int64), int(max_spec_tokens),
                              float(spec_factor), float(spec_offset), float(min_token_prob), bool(tree),
                              self.tok, self.first_child, self.next_sib, self.count, self.hkeys, self.hvals)

    def candidates(self, pattern, k: int):
        """``(tokens, probs, match_len)``: the children of the longest matched tail that has any."""
        return trie_candidates(np.ascontiguousarray(pattern, dtype=np.int64), int(k), self.tok, self.first_child,
                               self.next_sib, self.count, self.hkeys, self.hvals)

    def counts(self) -> dict[tuple[int, ...], int]:
        """``{string: count}`` for every node below the root (plain Python; for tests and small trees)."""
        n = self.n_nodes
        strings: list[tuple[int, ...]] = [()] * n
        out = {}
        for i in range(1, n):  # parents come before their children
            strings[i] = strings[int(self.parent[i])] + (int(self.tok[i]),)
            out[strings[i]] = int(self.count[i])
        return out


def _pow2(n: int) -> int:
    p = 16
    while p < n:
        p *= 2
    return p


@register_drafter("suffix")
class SuffixDrafter(Drafter):
    """SuffixDecoding drafter; see the module docstring.

    Parameters: ``max_depth`` (64): longest suffix indexed and longest pattern matched; ``spec_factor`` (1.0) and
    ``spec_offset`` (0.0): a match of ``m`` tokens may draft ``int(m * spec_factor + spec_offset)`` tokens;
    ``min_token_prob`` (0.1): drop candidates whose path probability falls below it; ``max_spec_tokens`` (None =
    ``max_depth``): a cap on the draft size, besides the budget; ``mode``: ``"tree"`` or ``"path"``;
    ``use_global`` (True): also draft from earlier requests' outputs.
    """

    name = "suffix"

    def __init__(self, max_depth: int = 64, spec_factor: float = 1.0, spec_offset: float = 0.0,
                 min_token_prob: float = 0.1, max_spec_tokens: int | None = None, mode: str = "tree",
                 use_global: bool = True):
        if isinstance(max_depth, bool) or not isinstance(max_depth, (int, np.integer)) or max_depth < 2:
            raise SpeculativeError(f"max_depth must be an integer >= 2, got {max_depth!r}")
        for what, value in (("spec_factor", spec_factor), ("spec_offset", spec_offset)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
                raise SpeculativeError(f"{what} must be a finite number, got {value!r}")
        if spec_factor < 0:
            raise SpeculativeError(f"spec_factor must be >= 0, got {spec_factor!r}")
        if isinstance(min_token_prob, bool) or not isinstance(min_token_prob, (int, float, np.number)) \
                or not 0 <= min_token_prob <= 1:
            raise SpeculativeError(f"min_token_prob must be a probability in [0, 1], got {min_token_prob!r}")
        if max_spec_tokens is not None:
            max_spec_tokens = check_budget(max_spec_tokens, "max_spec_tokens")
        if mode not in MODES:
            raise SpeculativeError(f"mode must be one of {MODES}, got {mode!r}")
        self.max_depth = int(max_depth)
        self.spec_factor = float(spec_factor)
        self.spec_offset = float(spec_offset)
        self.min_token_prob = float(min_token_prob)
        self.max_spec_tokens = max_spec_tokens
        self.mode = mode
        self.use_global = bool(use_global)
        self.global_tree = SuffixTrie(self.max_depth)
        self._local: SuffixTrie | None = None
        self._indexed = np.zeros(0, np.int64)  # the sequence the local tree holds

    def params(self) -> dict:
        return {"max_depth": self.max_depth, "spec_factor": self.spec_factor, "spec_offset": self.spec_offset,
                "min_token_prob": self.min_token_prob, "max_spec_tokens": self.max_spec_tokens, "mode": self.mode,
                "use_global": self.use_global}

    # -- request lifecycle --------------------------------------------------------------------------------------
    def reset(self, prompt_ids) -> None:
        ctx = check_ids(check_context(prompt_ids), "the prompt")
        self._local = SuffixTrie(self.max_depth, capacity=2 * len(ctx) * min(self.max_depth, 16) + 64)
        self._local.extend(ctx)
        self._indexed = ctx.copy()

    def finish(self, output_ids) -> None:
        """Add a finished request's generated tokens to the global tree."""
        out = np.asarray(output_ids)
        if out.size == 0:
            return
        out = check_ids(check_context(out), "the output")
        self.global_tree.new_sequence()
        self.global_tree.extend(out)

    @property
    def local_tree(self) -> SuffixTrie | None:
        return self._local

    def sync(self, context_ids) -> SuffixTrie:
        """Bring the local tree to ``context_ids``: append what was committed since, or rebuild when the context is
        not a continuation of what the tree holds."""
        ctx = check_ids(check_context(context_ids))
        held = self._indexed
        if self._local is not None and ctx.shape[0] >= held.shape[0] and np.array_equal(ctx[:held.shape[0]], held):
            if ctx.shape[0] > held.shape[0]:
                self._local.extend(ctx[held.shape[0]:])
                self._indexed = ctx.copy()
        else:
            self.reset(ctx)
        return self._local

    # -- drafting -----------------------------------------------------------------------------------------------
    def propose(self, context_ids, budget: int) -> DraftTree:
        ctx = check_ids(check_context(context_ids))
        budget = check_budget(budget)
        local = self.sync(ctx)
        pattern = ctx[-self.max_depth:]
        cap = min(self.max_spec_tokens or self.max_depth, budget)
        tree = self.mode == "tree"
        args = (cap, self.spec_factor, self.spec_offset, self.min_token_prob, tree)
        tokens, parents, probs, match_len, score = local.speculate(pattern, *args)
        source = "local"
        if self.use_global and self.global_tree.n_nodes > 1:
            g = self.global_tree.speculate(pattern, *args)
            if g[4] > score:
                tokens, parents, probs, match_len, score = g
                source = "global"
        return DraftTree.from_parents(tokens, parents, np.minimum(probs, 1.0).astype(np.float32),
                                      drafter=self.name, match_len=int(match_len), score=float(score),
                                      source=source)

    def expand(self, context_ids, paths, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each path: the children of the longest matched tail of ``context + path`` that has any (local tree;
        the global tree when its match is strictly longer), best first by count, probs ``count(child)/count(node)``."""
        ctx = check_ids(check_context(context_ids))
        k = check_budget(k, "k")
        local = self.sync(ctx)
        out = []
        for path in check_paths(paths):
            seq = np.concatenate([ctx, path]) if path.size else ctx
            pattern = seq[-self.max_depth:]
            tokens, probs, m = local.candidates(pattern, k)
            if self.use_global and self.global_tree.n_nodes > 1:
                g_tokens, g_probs, g_m = self.global_tree.candidates(pattern, k)
                if g_m > m:
                    tokens, probs = g_tokens, g_probs
            out.append((tokens.astype(np.int64), probs.astype(np.float32)))
        return out
