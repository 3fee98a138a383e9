"""Numba kernels of the sampling verifiers; the algorithms, their sources and their conventions are described in
`workbench.speculative.verify`. A readable numpy transcription lives in ``tests/workbench/speculative/
verify_reference.py`` and the tests check that both give identical verdicts.

Common conventions
------------------
* ``P`` float [N + 1, V]: target distributions (row 0 after the root, row ``i + 1`` after node ``i``); ``Q`` the same
  for the draft (``has_q`` False: a dummy array, every drafted token is a point mass). Rows are renormalised here
  in float64, so they need not sum to exactly 1.
* The tree comes as ``tokens`` int64 [N] and its CSR children (`tree_children`): slot 0 is the root, slot ``i + 1``
  node ``i``.
* Randomness is an array ``u`` of uniforms in [0, 1), consumed front to back: one per accept/reject test, one per
  categorical draw (inverse CDF, `sample_index`), one per draft selection. ``2 N + 4`` uniforms always suffice.
* A kernel returns ``(status, node, n_accepted, bonus)`` and writes the accepted node indices (root's child first)
  into ``path[:n_accepted]``. ``status`` is `OK` or one of the error codes below (``node`` says where); the Python
  wrapper turns error codes into `SpeculativeError`.
* A test "accept x against proposal q" is ``u * q(x) < p(x)``, i.e. acceptance with probability min(1, p(x)/q(x))
  (strict, so a token the target gives probability 0 is never accepted).
"""

from __future__ import annotations

import numpy as np
from numba import njit

OK = 0
ZERO_DRAFT_PROB = 1  # a drafted token has probability 0 under the distribution it was supposedly drawn from
ENUMERATION_TOO_LARGE = 2  # multidraft_is: the exact selection distribution needs too many terms
BAD_ROW = 3  # a row that is non-finite, negative or sums to zero (the wrapper checks this before)


@njit(cache=True)
def check_probs(a):
    """One pass over a 2-D probability array: ``(0, -1)`` when every entry is finite and non-negative and every row
    has a positive sum; otherwise ``(code, row)`` with code 1 = non-finite, 2 = negative, 3 = row sums to zero."""
    for r in range(a.shape[0]):
        s = 0.0
        for j in range(a.shape[1]):
            v = a[r, j]
            if not np.isfinite(v):
                return 1, r
            if v < 0:
                return 2, r
            s += v
        if s <= 0:
            return 3, r
    return 0, -1


@njit(cache=True)
def load_row(src, row, out):
    """``out[:] = src[row] / src[row].sum()`` in float64; returns the row's sum (0: ``out`` holds zeros)."""
    s = 0.0
    for j in range(out.shape[0]):
        v = float(src[row, j])
        out[j] = v
        s += v
    if s > 0:
        for j in range(out.shape[0]):
            out[j] = out[j] / s
    return s


@njit(cache=True)
def sample_index(w, u):
    """Inverse-CDF draw from non-negative weights ``w`` (any positive total) with one uniform ``u`` in [0, 1): the
    first index whose running sum exceeds ``u * total``. Never returns a zero-weight index; -1 if all are zero."""
    total = 0.0
    for j in range(w.shape[0]):
        total += w[j]
    target = u * total
    acc = 0.0
    last = -1
    for j in range(w.shape[0]):
        if w[j] > 0:
            acc += w[j]
            last = j
            if acc > target:
                return j
    return last  # round-off put u * total at the very end


@njit(cache=True)
def normalize_(x):
    """In place; returns the sum before normalising (0: left as is)."""
    s = 0.0
    for j in range(x.shape[0]):
        s += x[j]
    if s > 0:
        for j in range(x.shape[0]):
            x[j] = x[j] / s
    return s


@njit(cache=True)
def residual_(p, q):
    """``p <- norm(max(p - q, 0))`` in place. A rejection only happens where q(x) > p(x), so the residual has
    positive mass whenever it is needed; if round-off leaves none, ``p`` is kept (returns False)."""
    s = 0.0
    for j in range(p.shape[0]):
        r = p[j] - q[j]
        if r > 0:
            s += r
    if s <= 0:
        return False
    for j in range(p.shape[0]):
        r = p[j] - q[j]
        p[j] = r / s if r > 0 else 0.0
    return True


@njit(cache=True)
def remove_token_(p, x):
    """Point-mass residual: ``norm(max(p - onehot(x), 0))`` = p with x zeroed, renormalised (kept if nothing is left)."""
    px = p[x]
    if px >= 1.0:
        return False
    p[x] = 0.0
    normalize_(p)
    return True


# ---------------------------------------------------------------------------------------------------------------
# chain_sampling / specinfer / sequoia: walk the tree, test each child in rank order
# ---------------------------------------------------------------------------------------------------------------
@njit(cache=True)
def multistep_kernel(tokens, ptr, child, P, Q, has_q, without_replacement, u, path):
    """Multi-step speculative sampling over a tree (SpecInfer; Sequoia's variant when ``without_replacement``).
    At the current node each child x is tested with ``u * q(x) < p(x)``; on rejection ``p <- norm(max(p - q, 0))``
    and, without replacement, ``q(x) <- 0, q <- norm(q)``. Accepting moves to the child; when every child is
    rejected (or there is none) the bonus is drawn from the current ``p``. A chain is Leviathan/Chen sampling."""
    V = P.shape[1]
    p = np.empty(V, np.float64)
    q = np.empty(V, np.float64)
    k = 0
    n_acc = 0
    slot = 0
    while True:
        load_row(P, slot, p)
        if has_q:
            load_row(Q, slot, q)
        accepted = -1
        for ci in range(ptr[slot], ptr[slot + 1]):
            c = child[ci]
            x = tokens[c]
            if has_q:
                qx = q[x]
                if qx <= 0:
                    return ZERO_DRAFT_PROB, c, n_acc, -1
                ok = u[k] * qx < p[x]
            else:
                ok = u[k] < p[x]
            k += 1
            if ok:
                accepted = c
                break
            if has_q:
                residual_(p, q)
                if without_replacement:
                    q[x] = 0.0
                    normalize_(q)
            else:
                remove_token_(p, x)
        if accepted < 0:
            return OK, -1, n_acc, sample_index(p, u[k])
        path[n_acc] = accepted
        n_acc += 1
        slot = accepted + 1


# ---------------------------------------------------------------------------------------------------------------
# spectr: k-sequential selection (K-SEQ) with the division factor rho
# ---------------------------------------------------------------------------------------------------------------
@njit(cache=True)
def spectr_beta(p, q, rho):
    """beta_{p,q}(rho) = sum_x min(q(x), p(x) / rho): the chance that one draft passes the K-SEQ test."""
    b = 0.0
    for j in range(p.shape[0]):
        a = p[j] / rho
        b += q[j] if q[j] < a else a
    return b


@njit(cache=True)
def spectr_rho(p, q, k, tol):
    """The smallest rho in [1, k] with ``1 - (1 - beta(rho))^k <= rho * beta(rho)`` (SpecTr's rho*: the residual
    stays a distribution), by bisection to ``tol``; the upper end is returned so the condition holds. k = 1 -> 1."""
    if k <= 1:
        return 1.0
    b = spectr_beta(p, q, 1.0)
    if b >= 1.0 or 1.0 - (1.0 - b) ** k <= b:
        return 1.0
    lo = 1.0
    hi = float(k)
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        b = spectr_beta(p, q, mid)
        if 1.0 - (1.0 - b) ** k <= mid * b:
            hi = mid
        else:
            lo = mid
    return hi


@njit(cache=True)
def spectr_kernel(tokens, parents, ptr, child, P, Q, has_q, u, path, tol):
    """SpecTr's K-SEQ applied level by level. The candidates at a level are the children of every node that carries
    the accepted prefix (siblings with the same token are the same draft prefix, so their continuations are i.i.d.
    draws too and are pooled, as SpecTr's k draft sequences are). With rho from `spectr_rho` and
    beta = beta(rho), candidate x_i is accepted with min(1, p(x_i) / (rho q(x_i))), in order; if none is, the bonus
    is drawn from ``norm(max(p - min(q, p / rho) * (1 - (1 - beta)^k) / beta, 0))``."""
    N = tokens.shape[0]
    V = P.shape[1]
    p = np.empty(V, np.float64)
    q = np.empty(V, np.float64)
    r = np.empty(V, np.float64)
    group = np.empty(N + 1, np.int64)
    cand = np.empty(max(N, 1), np.int64)
    group[0] = -1
    gsize = 1
    last = -1
    k = 0
    bonus = -1
    while True:
        slot = last + 1
        load_row(P, slot, p)
        if has_q:
            load_row(Q, slot, q)
        nc = 0
        for gi in range(gsize):
            s = group[gi] + 1
            for ci in range(ptr[s], ptr[s + 1]):
                cand[nc] = child[ci]
                nc += 1
        if nc == 0:
            bonus = sample_index(p, u[k])
            break
        accepted = -1
        if has_q:
            for i in range(nc):
                if q[tokens[cand[i]]] <= 0:
                    return ZERO_DRAFT_PROB, cand[i], 0, -1
            rho = spectr_rho(p, q, nc, tol)
            for i in range(nc):
                x = tokens[cand[i]]
                ok = u[k] * rho * q[x] < p[x]
                k += 1
                if ok:
                    accepted = cand[i]
                    break
            if accepted < 0:
                beta = spectr_beta(p, q, rho)
                coef = (1.0 - (1.0 - beta) ** nc) / beta if beta > 0 else float(nc)
                for j in range(V):
                    a = p[j] / rho
                    m = q[j] if q[j] < a else a
                    v = p[j] - m * coef
                    r[j] = v if v > 0 else 0.0
                if normalize_(r) <= 0:  # round-off only: nothing left to resample from
                    for j in range(V):
                        r[j] = p[j]
                bonus = sample_index(r, u[k])
                break
        else:
            # point-mass drafts are not i.i.d. draws from one q: the exact point-mass multi-draft rule instead
            for i in range(nc):
                x = tokens[cand[i]]
                ok = u[k] < p[x]
                k += 1
                if ok:
                    accepted = cand[i]
                    break
                remove_token_(p, x)
            if accepted < 0:
                bonus = sample_index(p, u[k])
                break
        y = tokens[accepted]
        gsize = 0
        for i in range(nc):
            if tokens[cand[i]] == y:
                group[gsize] = cand[i]
                gsize += 1
        last = accepted
    n_acc = 0
    node = last
    while node >= 0:
        n_acc += 1
        node = parents[node]
    node = last
    for i in range(n_acc - 1, -1, -1):
        path[i] = node
        node = parents[node]
    return OK, -1, n_acc, bonus


# ---------------------------------------------------------------------------------------------------------------
# multidraft_is: importance-weighted draft selection, then single-draft speculative sampling
# ---------------------------------------------------------------------------------------------------------------
@njit(cache=True)
def selection_distribution(p, q, k, max_enumeration, s):
    """Exact distribution of the token that importance-weighted selection picks from k i.i.d. draws of q:
    ``s(y) = k q(y) E[phi(w(y), W)]`` with ``w = p / q``, ``W`` the summed weight of the other k - 1 draws
    (enumerated over q's support) and ``phi(a, W) = a / (a + W)``, or ``1 / k`` when every weight is 0 (uniform
    selection). Writes ``s`` [V]; returns False when ``|support|^k`` exceeds ``max_enumeration``."""
    V = p.shape[0]
    S = 0
    for j in range(V):
        if q[j] > 0:
            S += 1
    m = k - 1
    work = 1.0
    for _ in range(k):
        work *= S
    if work > max_enumeration:
        return False
    sup = np.empty(S, np.int64)
    S = 0
    for j in range(V):
        if q[j] > 0:
            sup[S] = j
            S += 1
    w = np.empty(S, np.float64)
    for a in range(S):
        w[a] = p[sup[a]] / q[sup[a]]
    n_c = 1
    for _ in range(m):
        n_c *= S
    W = np.zeros(n_c, np.float64)
    Pr = np.ones(n_c, np.float64)
    digits = np.zeros(max(m, 1), np.int64)
    for c in range(n_c):
        ws = 0.0
        pr = 1.0
        for j in range(m):
            d = digits[j]
            ws += w[d]
            pr *= q[sup[d]]
        W[c] = ws
        Pr[c] = pr
        for j in range(m):  # next combination, mixed radix
            digits[j] += 1
            if digits[j] < S:
                break
            digits[j] = 0
    for j in range(V):
        s[j] = 0.0
    for a in range(S):
        wa = w[a]
        acc = 0.0
        for c in range(n_c):
            den = wa + W[c]
            acc += Pr[c] * (wa / den if den > 0 else 1.0 / k)
        s[sup[a]] = k * q[sup[a]] * acc
    return True


@njit(cache=True)
def multidraft_is_kernel(tokens, ptr, child, P, Q, has_q, u, path, max_enumeration):
    """At each node: pick one child with probability proportional to p(x)/q(x) (p(x) for point-mass drafts; uniform
    if every weight is 0), then accept it with min(1, p(y)/s(y)) against the exact selection distribution s
    (`selection_distribution`); on rejection the bonus comes from norm(max(p - s, 0)). One uniform for the
    selection, one for the test, one for a final draw."""
    N = tokens.shape[0]
    V = P.shape[1]
    p = np.empty(V, np.float64)
    q = np.empty(V, np.float64)
    s = np.empty(V, np.float64)
    w = np.empty(max(N, 1), np.float64)
    k = 0
    n_acc = 0
    slot = 0
    while True:
        load_row(P, slot, p)
        if has_q:
            load_row(Q, slot, q)
        c0 = ptr[slot]
        kc = ptr[slot + 1] - c0
        if kc == 0:
            return OK, -1, n_acc, sample_index(p, u[k])
        total = 0.0
        for i in range(kc):
            x = tokens[child[c0 + i]]
            if has_q:
                if q[x] <= 0:
                    return ZERO_DRAFT_PROB, child[c0 + i], n_acc, -1
                w[i] = p[x] / q[x]
            else:
                w[i] = p[x]
            total += w[i]
        if total > 0:
            sel = sample_index(w[:kc], u[k])
        else:
            sel = min(int(u[k] * kc), kc - 1)
        k += 1
        c = child[c0 + sel]
        y = tokens[c]
        if has_q:
            if not selection_distribution(p, q, kc, max_enumeration, s):
                return ENUMERATION_TOO_LARGE, slot - 1, n_acc, -1
        else:
            for j in range(V):
                s[j] = 0.0
            for i in range(kc):
                x = tokens[child[c0 + i]]
                s[x] += w[i] / total if total > 0 else 1.0 / kc
        ok = u[k] * s[y] < p[y]
        k += 1
        if ok:
            path[n_acc] = c
            n_acc += 1
            slot = c + 1
            continue
        residual_(p, s)
        return OK, -1, n_acc, sample_index(p, u[k])
