"""Readable, plain-Python references for the Numba kernels of the model-free drafters
(``workbench/speculative/drafters/kernels.py``). Slow and obvious on purpose; the tests check the kernels against
them."""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict

# -- prompt lookup ------------------------------------------------------------------------------------------------


def suffix_match_lengths(seq, max_n):
    seq = list(seq)
    t = len(seq)
    out = [0] * t
    for e in range(1, t):
        n = 0
        while n < max_n and n < e and seq[e - 1 - n] == seq[t - 1 - n]:
            n += 1
        out[e] = n
    return out


def prompt_lookup(seq, min_n, max_n, num, match="first"):
    """Hugging Face's loop, written out: n from max_n down to min_n; the first (or last) earlier occurrence of the
    last n tokens that has a token after it; the next ``num`` tokens (cut at the end)."""
    seq = list(seq)
    t = len(seq)
    for n in range(min(max_n, t - 1), min_n - 1, -1):
        tail = seq[t - n:]
        hits = [i for i in range(t - n) if seq[i:i + n] == tail]  # i + n < t: a token follows
        if hits:
            i = hits[0] if match == "first" else hits[-1]
            return seq[i + n:i + n + num], n
    return [], 0


def prompt_lookup_candidates(seq, min_n, max_n, k):
    seq = list(seq)
    lengths = suffix_match_lengths(seq, max_n)
    matches = [(seq[e], lengths[e], e) for e in range(1, len(seq)) if lengths[e] >= min_n]
    best_len, last = {}, {}
    for tok, n, e in matches:
        best_len[tok] = max(best_len.get(tok, 0), n)
        last[tok] = max(last.get(tok, 0), e)
    stats = {}
    for tok, n in best_len.items():
        at_least = [m for m in matches if m[1] >= n]
        mine = sum(1 for m in at_least if m[0] == tok)
        stats[tok] = (n, mine, last[tok], mine / len(at_least))
    ranked = sorted(stats, key=lambda tok: (-stats[tok][0], -stats[tok][1], -stats[tok][2]))[:k]
    return ranked, [stats[tok][3] for tok in ranked]


# -- SuffixDecoding -----------------------------------------------------------------------------------------------


def suffix_counts(seqs, max_depth):
    """{string: occurrences} over all strings of length 1..max_depth of each sequence (none spans two)."""
    out = Counter()
    for seq in seqs:
        seq = list(seq)
        for i in range(len(seq)):
            for d in range(1, min(max_depth, len(seq) - i) + 1):
                out[tuple(seq[i:i + d])] += 1
    return dict(out)


class RefTrie:
    """The suffix tree as a dict of string counts; children by (count desc, token asc)."""

    def __init__(self, seqs, max_depth):
        self.counts = suffix_counts(seqs, max_depth)
        self.children = defaultdict(list)
        for s, c in self.counts.items():
            self.children[s[:-1]].append((s[-1], c))
        for kids in self.children.values():
            kids.sort(key=lambda tc: (-tc[1], tc[0]))
        self.root_count = sum(len(list(s)) for s in seqs)

    def count(self, s):
        return self.root_count if not s else self.counts.get(s, 0)

    def path(self, s, max_tokens, min_prob):
        toks, pars, probs = [], [], []
        prob = 1.0
        while len(toks) < max_tokens and self.children.get(s):
            tok, c = self.children[s][0]
            prob *= c / self.count(s)
            if prob < min_prob:
                break
            toks.append(tok)
            pars.append(len(toks) - 2)
            probs.append(prob)
            s = s + (tok,)
        return toks, pars, probs

    def tree(self, s, max_tokens, min_prob):
        toks, pars, probs = [], [], []
        heap, seq = [], 0

        def push(node, prob, parent):
            nonlocal seq
            for tok, c in self.children.get(node, []):
                p = prob * (c / self.count(node))
                if p >= min_prob:
                    heapq.heappush(heap, (-p, seq, node + (tok,), parent))
                    seq += 1

        push(s, 1.0, -1)
        while len(toks) < max_tokens and heap:
            negp, _, node, parent = heapq.heappop(heap)
            toks.append(node[-1])
            pars.append(parent)
            probs.append(-negp)
            push(node, -negp, len(toks) - 1)
        return toks, pars, probs

    def speculate(self, pattern, max_spec_tokens, factor, offset, min_prob, tree):
        pattern = tuple(pattern)
        best = ([], [], [], 0, 0.0)
        for m in range(1, len(pattern)):
            s = pattern[len(pattern) - m:]
            if s not in self.counts:
                break
            max_tokens = max(min(max_spec_tokens, int(m * factor + offset + 1e-6)), 0)
            toks, pars, probs = (self.tree if tree else self.path)(s, max_tokens, min_prob)
            score = sum(probs)
            if score >= best[4]:
                best = (toks, pars, probs, m, score)
        return best

    def candidates(self, pattern, k):
        pattern = tuple(pattern)
        best, best_len = None, 0
        for m in range(1, len(pattern)):
            s = pattern[len(pattern) - m:]
            if s not in self.counts:
                break
            if self.children.get(s):
                best, best_len = s, m
        if best is None:
            return [], [], 0
        kids = self.children[best][:k]
        return [t for t, _ in kids], [c / self.count(best) for _, c in kids], best_len


# -- Token Recycling ----------------------------------------------------------------------------------------------


def adjacency_update(adj, fed, top):
    """adj: list of rows; each fed token's row becomes its top row (padded with -1), the last one winning."""
    k = len(adj[0])
    for tok, row in zip(fed, top):
        row = list(row)[:k]
        adj[tok] = row + [-1] * (k - len(row))
    return adj


def fill_template(adj, root, template, budget):
    """Walk every template path from the root through the adjacency rows; a -1 on the way drops the node."""
    tokens, parents, index = [], [], {}
    for path in template:
        if len(tokens) >= budget:
            break
        path = tuple(path)
        if len(path) > 1 and path[:-1] not in index:
            continue
        src = root if len(path) == 1 else tokens[index[path[:-1]]]
        tok = adj[src][path[-1]]
        if tok < 0:
            continue
        index[path] = len(tokens)
        tokens.append(tok)
        parents.append(-1 if len(path) == 1 else index[path[:-1]])
    return tokens, parents


# -- corpus n-grams -----------------------------------------------------------------------------------------------


def ngram_counts(ids, order):
    """Counter of every ``order``-gram of ``ids`` that holds no -1 separator."""
    ids = list(ids)
    return dict(Counter(tuple(ids[i:i + order]) for i in range(len(ids) - order + 1)
                        if all(x >= 0 for x in ids[i:i + order])))


def stupid_backoff(ids, n, context, k, backoff):
    """Top-k (token, score) after ``context`` by stupid back-off; ties: higher order, then count, then token."""
    tables = {o: ngram_counts(ids, o) for o in range(1, n + 1)}
    scores, rank = {}, {}
    for o in range(n, 0, -1):
        c = o - 1
        if len(context) < c:
            continue
        ctx = tuple(context[len(context) - c:]) if c else ()
        follow = {g[-1]: cnt for g, cnt in tables[o].items() if g[:-1] == ctx}
        if not follow:
            continue
        total = sum(follow.values())
        for tok, cnt in follow.items():
            if tok not in scores:
                scores[tok] = backoff ** (n - o) / total * cnt
                rank[tok] = (-o, -cnt, tok)
    ranked = sorted(scores, key=lambda t: (-scores[t], rank[t]))[:k]
    return ranked, [scores[t] for t in ranked]
