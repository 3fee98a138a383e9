"""Readable numpy transcriptions of the sampling verifiers in `workbench.speculative.verify_kernels`.

Each takes the tree as (tokens, parents), the target rows ``P`` [N + 1, V], the draft rows ``Q`` (or None for
point-mass drafts) and the uniforms ``u`` (consumed front to back exactly as the kernels do) and returns
``(accepted node list, bonus token)``. The tests check that the kernels give the same verdicts.
"""

from __future__ import annotations

import itertools

import numpy as np


def children_of(parents, node):
    """Children of ``node`` (-1: the root) in rank (= node) order."""
    return [i for i, p in enumerate(parents) if p == node]


def norm(x):
    return x / x.sum()


def draw(w, u):
    """Inverse CDF: first index whose running sum exceeds u * total."""
    c = np.cumsum(w)
    i = int(np.searchsorted(c, u * c[-1], side="right"))
    return i if i < len(w) else int(np.flatnonzero(w > 0)[-1])


def residual(p, q):
    r = np.maximum(p - q, 0.0)
    return r / r.sum() if r.sum() > 0 else p


class Uniforms:
    def __init__(self, u):
        self.u, self.i = u, 0

    def __call__(self):
        self.i += 1
        return self.u[self.i - 1]


def ref_multistep(tokens, parents, P, Q, u, without_replacement):
    """SpecInfer (with replacement) / Sequoia (without); a chain gives Leviathan/Chen speculative sampling."""
    nxt, path, node = Uniforms(u), [], -1
    while True:
        p = norm(P[node + 1].astype(np.float64))
        q = None if Q is None else norm(Q[node + 1].astype(np.float64))
        accepted = None
        for c in children_of(parents, node):
            x = tokens[c]
            if q is None:  # point mass at x
                if nxt() < p[x]:
                    accepted = c
                    break
                p[x] = 0.0
                p = norm(p)
            else:
                if nxt() * q[x] < p[x]:
                    accepted = c
                    break
                p = residual(p, q)
                if without_replacement:
                    q[x] = 0.0
                    q = norm(q) if q.sum() > 0 else q
        if accepted is None:
            return path, draw(p, nxt())
        path.append(accepted)
        node = accepted


def ref_spectr_rho(p, q, k, tol):
    def beta(rho):
        return np.minimum(q, p / rho).sum()

    def valid(rho):
        b = beta(rho)
        return 1 - (1 - b) ** k <= rho * b

    if k == 1 or beta(1.0) >= 1 or valid(1.0):
        return 1.0
    lo, hi = 1.0, float(k)
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if valid(mid) else (mid, hi)
    return hi


def ref_spectr(tokens, parents, P, Q, u, tol=1e-9):
    """K-SEQ level by level; same-token siblings pool their children as candidates of the next level."""
    nxt, group, last = Uniforms(u), [-1], -1
    while True:
        p = norm(P[last + 1].astype(np.float64))
        cand = [c for g in group for c in children_of(parents, g)]
        if not cand:
            bonus = draw(p, nxt())
            break
        accepted = None
        if Q is None:
            for c in cand:
                if nxt() < p[tokens[c]]:
                    accepted = c
                    break
                p[tokens[c]] = 0.0
                p = norm(p)
            if accepted is None:
                bonus = draw(p, nxt())
                break
        else:
            q = norm(Q[last + 1].astype(np.float64))
            k = len(cand)
            rho = ref_spectr_rho(p, q, k, tol)
            for c in cand:
                if nxt() * rho * q[tokens[c]] < p[tokens[c]]:
                    accepted = c
                    break
            if accepted is None:
                beta = np.minimum(q, p / rho).sum()
                coef = (1 - (1 - beta) ** k) / beta if beta > 0 else k
                r = np.maximum(p - np.minimum(q, p / rho) * coef, 0.0)
                bonus = draw(r if r.sum() > 0 else p, nxt())
                break
        group = [c for c in cand if tokens[c] == tokens[accepted]]
        last = accepted
    path, node = [], last
    while node >= 0:
        path.insert(0, node)
        node = parents[node]
    return path, bonus


def ref_selection_distribution(p, q, k):
    """s(y) = P(importance-weighted selection among k i.i.d. draws of q returns y), by brute-force enumeration of
    all k-tuples of draws."""
    support = np.flatnonzero(q > 0)
    w = np.zeros_like(p)
    w[support] = p[support] / q[support]
    s = np.zeros_like(p)
    for draws in itertools.product(support, repeat=k):
        prob = np.prod(q[list(draws)])
        weights = w[list(draws)]
        pick = weights / weights.sum() if weights.sum() > 0 else np.full(k, 1 / k)
        for x, a in zip(draws, pick):
            s[x] += prob * a
    return s


def ref_multidraft_is(tokens, parents, P, Q, u):
    nxt, path, node = Uniforms(u), [], -1
    while True:
        p = norm(P[node + 1].astype(np.float64))
        kids = children_of(parents, node)
        if not kids:
            return path, draw(p, nxt())
        xs = [tokens[c] for c in kids]
        if Q is None:
            w = np.array([p[x] for x in xs])
        else:
            q = norm(Q[node + 1].astype(np.float64))
            w = np.array([p[x] / q[x] for x in xs])
        u_sel = nxt()
        sel = draw(w, u_sel) if w.sum() > 0 else min(int(u_sel * len(kids)), len(kids) - 1)
        y = xs[sel]
        if Q is None:
            s = np.zeros_like(p)
            for x, wi in zip(xs, w):
                s[x] += wi / w.sum() if w.sum() > 0 else 1 / len(xs)
        else:
            s = ref_selection_distribution(p, q, len(kids))
        if nxt() * s[y] < p[y]:
            path.append(kids[sel])
            node = kids[sel]
            continue
        return path, draw(residual(p, s), nxt())
