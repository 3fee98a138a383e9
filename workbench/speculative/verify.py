"""Verifiers: given a draft tree and the target's distributions at every node, decide which path is accepted and
which token the target adds after it.

One verification pass runs the target model on the root and every draft node (`DraftTree.feed`) and gives
``target_probs`` float [N + 1, V]: row 0 is the target's next-token distribution after the root, row ``i + 1``
after node ``i`` (temperature already applied; rows are renormalised here, so softmax round-off is harmless). A
verifier walks the tree from the root and returns a `Verdict`: the accepted node path (root's child first, possibly
empty), the *bonus* token the target contributes after it (the correction after a rejection, or the extra token
after a fully accepted path) and the tokens this step appends, ``tree.tokens[accepted] + [bonus]``.

=================  ========  ====================================================================================
name               lossless  what it does
=================  ========  ====================================================================================
``greedy``         at T = 0  first child equal to the target's argmax, level by level (SpecInfer/Medusa greedy)
``chain_sampling`` yes       Leviathan et al. / Chen et al. speculative sampling on a chain
``specinfer``      yes       SpecInfer's multi-step speculative sampling; children i.i.d. (with replacement) from q
``sequoia``        yes       Sequoia's sampling without replacement; children drawn without replacement from q
``spectr``         yes       SpecTr's k-sequential selection (K-SEQ) with its division factor rho
``multidraft_is``  yes       importance-weighted draft selection + single-draft sampling (Khisti et al. 2024)
``typical``        **no**    Medusa's typical acceptance (entropy-dependent threshold); lossy by design
=================  ========  ====================================================================================

Draft distributions: the sampling verifiers need q, the distribution each node's children were drawn from, which a
tree carries in ``draft_dists`` (row 0 for the root's children, row ``i + 1`` for node ``i``'s). A tree without it
(model-free drafters, deterministic top-k drafts) is verified with every proposal treated as a point mass at its
token; each multi-draft rule then reduces to "accept x with the current p(x), else zero x out of p and
renormalise", which is lossless for any deterministic choice of drafts.

"Lossless" means: the tokens a step appends are distributed exactly as if they had been sampled one by one from the
target; `tests/workbench/speculative/test_verify.py` checks this by sampling (total variation < 0.01 and a
chi-square test over >= 200,000 steps per verifier and tree shape).

Example::

    tree = DraftTree.from_parents(tokens=[2, 1], parents=[-1, 0])          # root -> 2 -> 1
    probs = np.eye(4)[[2, 3, 0]]                                           # argmax 2 after root, 3 after node 0
    make_verifier("greedy").verify(tree, probs).tokens                     # [2, 3]: node 0 accepted, bonus 3

The random verifiers draw ``2 N + 4`` uniforms from ``rng`` per call (a `numpy.random.Generator`, a seed, or None)
and run as Numba kernels (`verify_kernels`); call `warm_up()` once to keep the compile time out of the first step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.errors import SpeculativeError
from workbench.speculative import verify_kernels as K
from workbench.speculative.tree import DraftTree, tree_children

__all__ = ["Verdict", "Verifier", "GreedyVerifier", "ChainSamplingVerifier", "SpecInferVerifier",
           "SequoiaVerifier", "SpecTrVerifier", "MultiDraftISVerifier", "TypicalVerifier", "VERIFIERS",
           "VERIFIER_NAMES", "make_verifier", "warm_up"]


@dataclass
class Verdict:
    """The outcome of verifying one draft tree.

    accepted  int32 [A]   accepted node indices, root's child first (empty when the first level was rejected)
    bonus     int         the token the target contributes after the accepted path
    tokens    int64 [A+1] what this step appends: ``tree.tokens[accepted]`` followed by ``bonus``
    lossless  bool        whether the verifier that produced it preserves the target distribution
    verifier  str         its name
    """

    accepted: np.ndarray
    bonus: int
    tokens: np.ndarray
    lossless: bool
    verifier: str = ""

    @property
    def n_accepted(self) -> int:
        """Number of accepted draft tokens (the step appends one more, the bonus)."""
        return int(self.accepted.shape[0])

    def summary(self) -> dict:
        return {"verifier": self.verifier, "accepted": self.accepted.tolist(), "n_accepted": self.n_accepted,
                "bonus": int(self.bonus), "tokens": self.tokens.tolist(), "lossless": bool(self.lossless)}


def _verdict(tree: DraftTree, accepted, bonus: int, lossless: bool, name: str) -> Verdict:
    acc = np.asarray(accepted, np.int32).reshape(-1)
    tokens = np.concatenate([tree.tokens[acc], [int(bonus)]]).astype(np.int64)
    return Verdict(accepted=acc, bonus=int(bonus), tokens=tokens, lossless=lossless, verifier=name)


_PROB_ERRORS = {1: "holds a NaN or infinite value", 2: "holds a negative value", 3: "sums to zero"}


def _check_inputs(tree, target_probs) -> np.ndarray:
    """Validate (tree, target_probs) and return the probabilities as a C-contiguous float array [N + 1, V]."""
    if not isinstance(tree, DraftTree):
        raise SpeculativeError(f"verify() needs a DraftTree, got {type(tree).__name__}")
    tp = np.asarray(target_probs)
    if tp.ndim != 2:
        raise SpeculativeError(f"target_probs must be a 2-D array [N + 1, V], got shape {tp.shape}")
    n = tree.size
    if tp.shape[0] != n + 1:
        raise SpeculativeError(f"target_probs has {tp.shape[0]} rows; a tree of {n} nodes needs {n + 1} (row 0: "
                               "the target's distribution after the root, row i + 1: after node i)")
    if tp.shape[1] == 0:
        raise SpeculativeError("target_probs has an empty vocabulary axis")
    if tp.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(tp.dtype, np.floating) or np.issubdtype(tp.dtype, np.integer)
                or tp.dtype == np.bool_):
            raise SpeculativeError(f"target_probs must hold numbers, got dtype {tp.dtype}")
        tp = tp.astype(np.float64)
    tp = np.ascontiguousarray(tp)
    tree.check_vocab(tp.shape[1], who="the draft tree")
    code, row = K.check_probs(tp)
    if code:
        where = "the root" if row == 0 else f"node {row - 1}"
        raise SpeculativeError(f"target_probs row {row} (after {where}) {_PROB_ERRORS[code]}; pass probabilities "
                               "(softmax of the logits at the sampling temperature)")
    return tp


def _rng(rng) -> np.random.Generator:
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as e:
        raise SpeculativeError(f"rng must be a numpy Generator, an int seed or None, got {rng!r}") from e


class Verifier:
    """Base class. Subclasses set ``name``, ``lossless``, ``defaults`` (their parameters) and implement
    ``_verify(tree, probs, rng)``; `verify` validates the inputs first."""

    name = "verifier"
    lossless = True
    defaults: dict = {}

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise SpeculativeError(f"verifier {self.name!r} has no parameter(s) {sorted(unknown)}; it takes "
                                   f"{sorted(self.defaults) or 'none'}")
        self._params = {**self.defaults, **params}
        self._check_params()

    def _check_params(self) -> None:
        pass

    def params(self) -> dict:
        return dict(self._params)

    def verify(self, tree: DraftTree, target_probs: np.ndarray, rng=None) -> Verdict:
        """Verify ``tree`` against ``target_probs`` [N + 1, V]; ``rng`` a Generator, a seed or None."""
        probs = _check_inputs(tree, target_probs)
        return self._verify(tree, probs, rng)

    def _verify(self, tree: DraftTree, probs: np.ndarray, rng) -> Verdict:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"


class GreedyVerifier(Verifier):
    """Greedy tree verification: from the root, move to the first child (rank order) whose token equals the
    argmax of the target's row; stop when no child matches; the bonus is the argmax after the last accepted node.
    Lossless at temperature 0 (the output equals plain greedy decoding token for token).

    Follows SpecInfer's greedy verification and Sequoia's ``GreedyTree.accept_step`` (Infini-AI-Lab/Sequoia,
    Tree/GreedyTree.py: the first child equal to the target token). Medusa's temperature-0 branch of
    ``evaluate_posterior`` (FasterDecoding/Medusa, medusa/model/utils.py) takes the longest matching root-to-leaf
    candidate instead; the two agree unless siblings repeat a token. Ties in the argmax: ``np.argmax`` (the lowest
    token id), as ``torch.argmax`` on CPU. Rows may be one-hot or any distribution; draft_dists are ignored."""

    name = "greedy"
    lossless = True

    def _verify(self, tree, probs, rng):
        ptr, child = tree_children(tree.parents)
        tokens = tree.tokens
        path = []
        slot = 0
        while True:
            target = int(np.argmax(probs[slot]))
            nxt = -1
            for ci in range(ptr[slot], ptr[slot + 1]):
                if tokens[child[ci]] == target:
                    nxt = int(child[ci])
                    break
            if nxt < 0:
                return _verdict(tree, path, target, self.lossless, self.name)
            path.append(nxt)
            slot = nxt + 1


def _draft_rows(tree: DraftTree, V: int):
    """(Q, has_q): the tree's draft distributions as the kernels take them, or a dummy for point-mass drafts."""
    if tree.draft_dists is None:
        return np.zeros((1, 1), np.float32), False
    Q = tree.draft_dists
    if Q.shape[1] != V:
        raise SpeculativeError(f"draft_dists has a vocabulary of {Q.shape[1]} but target_probs of {V}; both must "
                               "cover the same vocabulary")
    return np.ascontiguousarray(Q), True


def _raise_kernel_error(status: int, node: int, tree: DraftTree, name: str, extra: str = "") -> None:
    if status == K.ZERO_DRAFT_PROB:
        tok = int(tree.tokens[node])
        raise SpeculativeError(
            f"{name}: node {node}'s token {tok} has probability 0 in the draft distribution it was drawn from "
            "(draft_dists row of its parent" + (", after removing earlier siblings: sequoia needs siblings drawn "
                                                "without replacement, i.e. distinct tokens" if name == "sequoia"
                                                else "") + "); pass the distributions the drafts were really "
            "sampled from, or draft_dists=None to treat the drafts as point masses")
    if status == K.ENUMERATION_TOO_LARGE:
        where = "the root" if node < 0 else f"node {node}"
        raise SpeculativeError(f"{name}: the exact selection distribution at {where} is too large to enumerate"
                               f"{extra}")
    raise SpeculativeError(f"{name}: internal error code {status} at node {node}")


class _KernelVerifier(Verifier):
    """Shared plumbing of the Numba-backed sampling verifiers."""

    def _run(self, tree, probs, rng):
        raise NotImplementedError

    def _verify(self, tree, probs, rng):
        u = _rng(rng).random(2 * tree.size + 4)
        Q, has_q = _draft_rows(tree, probs.shape[1])
        path = np.empty(max(tree.size, 1), np.int32)
        status, node, n_acc, bonus = self._run(tree, probs, Q, has_q, u, path)
        if status != K.OK:
            _raise_kernel_error(status, node, tree, self.name)
        return _verdict(tree, path[:n_acc], bonus, self.lossless, self.name)


class ChainSamplingVerifier(_KernelVerifier):
    """Speculative sampling on a chain (Leviathan, Kalman & Matias 2023, Algorithm 1; Chen et al. 2023): accept
    draft x with probability min(1, p(x)/q(x)); at the first rejection draw the bonus from norm(max(0, p - q)) and
    stop; after a fully accepted chain the bonus is drawn from p at the last node. Same rule as Hugging Face's
    ``_speculative_sampling`` (transformers, src/transformers/generation/utils.py) and vLLM's rejection sampler.
    q is the parent's ``draft_dists`` row; without draft_dists q is a point mass at the drafted token, so x is
    accepted with p(x) and the bonus comes from p with x removed, renormalised. The tree must be a chain (at most
    one child per node)."""

    name = "chain_sampling"

    def _verify(self, tree, probs, rng):
        if tree.size:
            counts = np.bincount(tree.parents + 1, minlength=tree.size + 1)
            if counts.max() > 1:
                slot = int(np.argmax(counts))
                where = "the root" if slot == 0 else f"node {slot - 1}"
                raise SpeculativeError(f"chain_sampling needs a chain, but {where} has {int(counts[slot])} "
                                       "children; use specinfer, sequoia, spectr or multidraft_is for trees")
        return super()._verify(tree, probs, rng)

    def _run(self, tree, probs, Q, has_q, u, path):
        ptr, child = tree_children(tree.parents)
        return K.multistep_kernel(tree.tokens, ptr, child, probs, Q, has_q, False, u, path)


class SpecInferVerifier(_KernelVerifier):
    """SpecInfer's multi-step speculative sampling (Miao et al., ASPLOS 2024, Algorithm 2 ``VerifyStochastic``),
    for children drawn i.i.d. (with replacement) from q, the parent's ``draft_dists`` row. At a node with children
    c1..ck in rank order: accept c_i with min(1, p(x_i)/q(x_i)); on rejection p <- norm(max(0, p - q)) with q
    unchanged, and try the next child; accepting moves to that child; if all are rejected the bonus is drawn from
    the residual p. Differs from the paper in one convention: children are tried in rank order, not in random order
    (equivalent for i.i.d. draws). Without draft_dists every child is a point mass (see the module docstring)."""

    name = "specinfer"

    def _run(self, tree, probs, Q, has_q, u, path):
        ptr, child = tree_children(tree.parents)
        return K.multistep_kernel(tree.tokens, ptr, child, probs, Q, has_q, False, u, path)


class SequoiaVerifier(_KernelVerifier):
    """Sequoia's speculative sampling without replacement (Chen et al. 2024, "Sequoia: Scalable, Robust, and
    Hardware-aware Speculative Decoding"; code:
    Infini-AI-Lab/Sequoia, Tree/SpecTree.py ``accept_step``), for children drawn without replacement from q. Same
    walk as SpecInfer, but after rejecting x: p <- norm(max(0, p - q)), then q(x) <- 0 and q renormalised
    (Sequoia sets the draft logit to -inf and re-softmaxes). Siblings must therefore carry distinct tokens. Without
    draft_dists: accept x with the current p'(x), else zero x out of p' and renormalise. Sequoia accepts on
    ``p >= r q``; here ``r q < p`` (they differ only on a null set, where Sequoia could accept a p = 0 token)."""

    name = "sequoia"

    def _run(self, tree, probs, Q, has_q, u, path):
        ptr, child = tree_children(tree.parents)
        return K.multistep_kernel(tree.tokens, ptr, child, probs, Q, has_q, True, u, path)


class SpecTrVerifier(_KernelVerifier):
    """SpecTr's k-sequential selection, K-SEQ (Sun, Suresh, Ro, Beirami, Jain & Yu, "SpecTr: Fast Speculative
    Decoding via Optimal Transport", NeurIPS 2023, arXiv 2310.15141: K-SEQ and its rho*), for k drafts
    drawn i.i.d. from q at a node. With beta(rho) = sum_x min(q(x), p(x)/rho) and rho* the smallest rho in [1, k]
    with 1 - (1 - beta)^k <= rho beta (bisection to ``tol``), the drafts are tested in order and x_i accepted with
    min(1, p(x_i) / (rho q(x_i))); if none is, the bonus is drawn from
    p_res = norm(max(p - min(q, p/rho) (1 - (1 - beta)^k) / beta, 0)). k = 1 is plain speculative sampling.

    Multi-level convention: the paper verifies k i.i.d. draft *sequences*. In a tree, siblings with the same token
    are the same draft prefix, so after a token y is accepted the candidates of the next level are the children of
    *every* node at this level whose token is y (their continuations are i.i.d. given y). The accepted path is then
    read back through the parent of the finally accepted node; nodes with equal token paths are assumed to have
    equal target and draft rows (they share their context). Without draft_dists the drafts are not i.i.d. samples of
    one q, and the exact point-mass multi-draft rule is used instead (lossless, not K-SEQ)."""

    name = "spectr"
    defaults = {"tol": 1e-9}

    def _check_params(self):
        tol = self._params["tol"]
        if not isinstance(tol, (int, float)) or not 0 < tol <= 0.1:
            raise SpeculativeError(f"spectr: tol must be in (0, 0.1], got {tol!r}")

    def _run(self, tree, probs, Q, has_q, u, path):
        ptr, child = tree_children(tree.parents)
        return K.spectr_kernel(tree.tokens, tree.parents, ptr, child, probs, Q, has_q, u, path,
                               float(self._params["tol"]))


class MultiDraftISVerifier(_KernelVerifier):
    """Importance-sampling draft selection followed by single-draft speculative sampling: the two-step canonical
    architecture of Khisti, Ebrahimi, Dbouk, Behboodi, Lee & Louizos, "Multi-Draft Speculative Sampling: Canonical
    Architectures and Theoretical Limits" (arXiv 2410.18234, 2024), also the starting point of "Towards Optimal
    Multi-draft Speculative Sampling" (Hu et al. 2025). At a node with k children drawn i.i.d. from q: select child
    i with probability w_i / sum_j w_j, w = p/q (uniform if all are 0); the selected token y is distributed as the
    *selection distribution* s, computed exactly by enumerating the other k - 1 draws over q's support; then accept
    y with min(1, p(y)/s(y)), else draw the bonus from norm(max(0, p - s)) and stop. Accepting moves to the selected
    child.

    Conventions where it differs: the selection weights are the plain importance weights p/q, not the LP-optimised
    weights of Khisti et al.'s Algorithm 2 (any weights keep it lossless, since s is exact). The exact s costs
    |support(q)|^k per visited node; beyond ``max_enumeration`` (default 2^24, e.g. k = 2 over a 4096-token
    support) the verifier raises instead of approximating: truncate the draft distribution (top-k / top-p) or use
    point-mass drafts, for which s is exact and cheap (s(x_i) proportional to p(x_i))."""

    name = "multidraft_is"
    defaults = {"max_enumeration": 1 << 24}

    def _check_params(self):
        m = self._params["max_enumeration"]
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
            raise SpeculativeError(f"multidraft_is: max_enumeration must be a positive integer, got {m!r}")

    def _verify(self, tree, probs, rng):
        if tree.draft_dists is not None and tree.size:
            limit = int(self._params["max_enumeration"])
            ptr, _ = tree_children(tree.parents)
            for slot in np.flatnonzero(np.diff(ptr) >= 2):
                k = int(ptr[slot + 1] - ptr[slot])
                S = int(np.count_nonzero(tree.draft_dists[slot]))
                if float(S) ** k > limit:
                    where = "the root" if slot == 0 else f"node {slot - 1}"
                    raise SpeculativeError(
                        f"multidraft_is: the exact selection distribution at {where} ({k} drafts over a "
                        f"{S}-token draft support) needs {S}^{k} terms, more than max_enumeration={limit}; truncate "
                        "the draft distribution (top-k/top-p), draft fewer siblings, raise max_enumeration, or pass "
                        "draft_dists=None (point-mass drafts)")
        return super()._verify(tree, probs, rng)

    def _run(self, tree, probs, Q, has_q, u, path):
        ptr, child = tree_children(tree.parents)
        return K.multidraft_is_kernel(tree.tokens, ptr, child, probs, Q, has_q, u, path,
                                      float(self._params["max_enumeration"]))


class TypicalVerifier(Verifier):
    """Medusa's typical acceptance -- **lossy**: the output does NOT follow the target distribution.

    Follows ``evaluate_posterior`` of FasterDecoding/Medusa (medusa/model/utils.py, ``sampling='typical'``) with
    ``medusa_generate``'s defaults posterior_threshold=0.09, posterior_alpha=0.3: a drafted token x below a node is
    acceptable when p(x) > min(posterior_threshold, posterior_alpha * exp(-H(p))), with H(p) = -sum p log(p + 1e-5)
    the entropy of the target row of its parent. Among the nodes whose whole root path is acceptable, the deepest is
    taken, ties broken by the path's log-likelihood (then the first found breadth-first); the bonus is the argmax of the target row
    after it (Medusa's ``fast=True`` default), or with ``fast=False`` a draw from the target restricted to the tokens
    at or above the threshold (Medusa's ``get_typical_one_token``). Medusa works on root-to-leaf candidates; here
    the same choice is made on tree nodes. At temperature 0 Medusa switches to greedy: use ``greedy`` there."""

    name = "typical"
    lossless = False
    defaults = {"posterior_threshold": 0.09, "posterior_alpha": 0.3, "fast": True}

    def _check_params(self):
        t, a, f = (self._params[k] for k in ("posterior_threshold", "posterior_alpha", "fast"))
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
            raise SpeculativeError(f"typical: posterior_threshold must be in (0, 1], got {t!r}")
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not a > 0:
            raise SpeculativeError(f"typical: posterior_alpha must be > 0, got {a!r}")
        if not isinstance(f, (bool, np.bool_)):
            raise SpeculativeError(f"typical: fast must be True or False, got {f!r}")

    def _threshold(self, row: np.ndarray) -> float:
        entropy = -float(np.sum(row * np.log(row + 1e-5)))
        return min(float(self._params["posterior_threshold"]), float(self._params["posterior_alpha"]) *
                   float(np.exp(-entropy)))

    def _verify(self, tree, probs, rng):
        ptr, child = tree_children(tree.parents)
        tokens = tree.tokens
        best, best_depth, best_ll = -1, 0, 0.0
        # breadth-first over acceptable nodes only: rows are touched only where a child could still be accepted
        frontier = [(0, 0, 0.0)]  # (slot, depth, log-likelihood of the path)
        while frontier:
            slot, depth, ll = frontier.pop(0)
            if ptr[slot + 1] == ptr[slot]:
                continue
            row = probs[slot].astype(np.float64)
            row /= row.sum()
            thr = self._threshold(row)
            for ci in range(ptr[slot], ptr[slot + 1]):
                c = int(child[ci])
                px = row[tokens[c]]
                if px > thr:
                    cll = ll + float(np.log(px))
                    if depth + 1 > best_depth or (depth + 1 == best_depth and cll > best_ll):
                        best, best_depth, best_ll = c, depth + 1, cll
                    frontier.append((c + 1, depth + 1, cll))
        accepted = tree.path_to(best) if best >= 0 else []
        last = probs[best + 1].astype(np.float64)
        last /= last.sum()
        if self._params["fast"]:
            bonus = int(np.argmax(last))
        else:
            keep = np.where(last >= self._threshold(last), last, 0.0)
            bonus = int(K.sample_index(keep, _rng(rng).random())) if keep.sum() > 0 else int(np.argmax(last))
        return _verdict(tree, accepted, bonus, self.lossless, self.name)


VERIFIERS: dict[str, type] = {cls.name: cls for cls in (
    GreedyVerifier, ChainSamplingVerifier, SpecInferVerifier, SequoiaVerifier, SpecTrVerifier, MultiDraftISVerifier,
    TypicalVerifier)}
VERIFIER_NAMES = tuple(VERIFIERS)


def make_verifier(name, **params) -> Verifier:
    """A `Verifier` by name (see the module table); unknown names or parameters raise `SpeculativeError`.
    A Verifier instance is returned as is (or rebuilt with ``params`` overriding its own)."""
    if isinstance(name, Verifier):
        return type(name)(**{**name.params(), **params}) if params else name
    if name not in VERIFIERS:
        raise SpeculativeError(f"unknown verifier {name!r}; choose one of {', '.join(VERIFIER_NAMES)}")
    return VERIFIERS[name](**params)


def warm_up() -> None:
    """Compile the Numba kernels for float32 and float64 target rows (a few seconds once; cached on disk)."""
    tree = DraftTree.from_parents(tokens=[0, 1, 1], parents=[-1, -1, 0],
                                  draft_dists=np.full((4, 2), 0.5, np.float32))
    point = DraftTree.from_parents(tokens=[0, 1, 1], parents=[-1, -1, 0])
    for dtype in (np.float32, np.float64):
        probs = np.full((4, 2), 0.5, dtype)
        for name in ("specinfer", "spectr", "multidraft_is"):
            for t in (tree, point):
                make_verifier(name).verify(t, probs, rng=0)
