"""Results behind the Tokenizers lab's views: token spans, boundary diffs, merge trees, merge replay.

Every function takes a :class:`~workbench.tokenization.Tokenizer` and plain text and returns a small dataclass; the
widgets only render these.

>>> from workbench.tokenization import train_bpe
>>> tok = train_bpe("low lower lowest " * 20, vocab_size=262)
>>> tree = merge_tree(tok, tok.encode(" lowest")[0])
>>> tree.root.text, [c.text for c in tree.root.children]        # doctest: +SKIP
(' low', [' l', 'ow'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workbench.errors import TokenizerError
from workbench.tokenization.render import token_groups
from workbench.tokenization.tokenizer import Tokenizer


# -- merge ranks ----------------------------------------------------------------------------------------------------
def merge_index(tok: Tokenizer) -> np.ndarray:
    """int64[n_vocab]: for each token id, the index of the merge that made it (-1 for bytes and special tokens)."""
    cached = tok.__dict__.get("_merge_index")
    if cached is not None:
        return cached
    out = np.full(tok.n_vocab, -1, np.int64)
    merges = tok.merge_list
    made = merges[:, 2]
    # the first merge that makes a token is its rank (later duplicates spell the same token again)
    order = np.arange(len(made))[::-1]
    out[made[order]] = order
    tok.__dict__["_merge_index"] = out
    return out


def token_label(token: bytes) -> str:
    """A token's bytes as readable text: decoded where valid, ``\\xNN`` escapes where not, whitespace shown."""
    text = token.decode("utf-8", "backslashreplace")
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "→")


# -- spans ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    """A run of one or more tokens that decodes to whole characters (most spans are one token)."""

    text: str
    ids: list[int]
    byte_span: tuple[int, int]
    ranks: list[int]           # merge index of each token (-1 for a byte token)
    token_bytes: list[bytes]


@dataclass(frozen=True)
class Segmentation:
    """``text`` cut into tokens by ``tokenizer_name``; ``n_tokens`` counts tokens, not spans."""

    tokenizer_name: str
    text: str
    spans: list[Span]
    n_tokens: int
    n_bytes: int
    max_merges: int | None = None

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / self.n_tokens if self.n_tokens else 0.0

    @property
    def boundaries(self) -> set[int]:
        """Byte offsets where a token ends (inside multi-byte characters too)."""
        out: set[int] = set()
        for span in self.spans:
            pos = span.byte_span[0]
            for token in span.token_bytes:
                pos += len(token)
                out.add(pos)
        return out


def segment(tok: Tokenizer, text: str, *, max_merges: int | None = None) -> Segmentation:
    """Token spans of ``text`` (tokens splitting a character grouped), with ids, bytes and merge ranks."""
    ranks = merge_index(tok)
    spans = []
    n_tokens = 0
    for group in token_groups(tok, text, max_merges=max_merges):
        spans.append(Span(group.text, group.ids, group.byte_span, ranks[group.ids].tolist(), tok.tokens_of(group.ids)))
        n_tokens += len(group.ids)
    return Segmentation(tok.name, text, spans, n_tokens, len(text.encode("utf-8", "surrogatepass")), max_merges)


# -- diff -----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoundaryDiff:
    """Two segmentations of one text and where their token boundaries disagree (byte offsets)."""

    a: Segmentation
    b: Segmentation
    only_a: list[int]
    only_b: list[int]
    shared: int

    @property
    def n_disagreements(self) -> int:
        return len(self.only_a) + len(self.only_b)

    @property
    def agreement(self) -> float:
        """Shared boundaries / all boundaries (Jaccard); 1.0 when the two cut identically."""
        total = self.shared + self.n_disagreements
        return self.shared / total if total else 1.0


def boundary_diff(tok_a: Tokenizer, tok_b: Tokenizer, text: str) -> BoundaryDiff:
    """Where ``tok_a`` and ``tok_b`` cut ``text`` differently."""
    a, b = segment(tok_a, text), segment(tok_b, text)
    ba, bb = a.boundaries, b.boundaries
    return BoundaryDiff(a, b, sorted(ba - bb), sorted(bb - ba), len(ba & bb))


# -- merge trees ----------------------------------------------------------------------------------------------------
@dataclass
class TreeNode:
    """A token in a merge tree: its id, bytes, merge rank and count (None for bytes), and its two parents."""

    id: int
    token: bytes
    rank: int
    count: int | None
    children: list[TreeNode] = field(default_factory=list)

    @property
    def text(self) -> str:
        return token_label(self.token)


@dataclass(frozen=True)
class MergeTree:
    """The binary tree of merges that builds one token down to its bytes, with a layout for drawing.

    ``x``/``y``/``ids``/``labels``: node coordinates (leaves evenly spaced, parents centred, depth on y) and
    ``edges``: (parent index, child index) pairs into those arrays.
    """

    root: TreeNode
    x: np.ndarray
    y: np.ndarray
    ids: list[int]
    labels: list[str]
    ranks: list[int]
    counts: list[int | None]
    edges: list[tuple[int, int]]

    @property
    def depth(self) -> int:
        return int(self.y.max() - self.y.min()) if len(self.y) else 0


def merge_tree(tok: Tokenizer, token_id: int) -> MergeTree:
    """The merges that build ``token_id`` (for rank-semantics tokenizers: the canonical merge list)."""
    if not 0 <= token_id < tok.n_vocab or tok.vocab.get(token_id) is None:
        raise TokenizerError(f"Token id {token_id} is not in the vocabulary (0..{tok.n_vocab - 1}).")
    if token_id in tok.special_tokens.values():
        raise TokenizerError(f"Token id {token_id} is a special token; it is not built by merges.")
    ranks = merge_index(tok)
    merges = tok.merge_list
    counts = tok.merge_counts

    def build(i: int, depth: int) -> TreeNode:
        r = int(ranks[i])
        node = TreeNode(i, tok.id_to_token(i), r, None if r < 0 or counts is None else int(counts[r]))
        if r >= 0 and depth < 64:
            left, right, _ = merges[r]
            node.children = [build(int(left), depth + 1), build(int(right), depth + 1)]
        return node

    root = build(token_id, 0)
    xs: list[float] = []
    ys: list[float] = []
    nodes: list[TreeNode] = []
    edges: list[tuple[int, int]] = []
    leaf_x = [0.0]

    def place(node: TreeNode, depth: int) -> int:
        index = len(nodes)
        nodes.append(node)
        xs.append(0.0)
        ys.append(-float(depth))
        if not node.children:
            xs[index] = leaf_x[0]
            leaf_x[0] += 1.0
        else:
            kids = [place(child, depth + 1) for child in node.children]
            xs[index] = sum(xs[k] for k in kids) / len(kids)
            edges.extend((index, k) for k in kids)
        return index

    place(root, 0)
    return MergeTree(root, np.array(xs), np.array(ys), [n.id for n in nodes], [n.text for n in nodes],
                     [n.rank for n in nodes], [n.count for n in nodes], edges)


# -- replay ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayStep:
    """``text`` segmented with the first ``step`` merges; ``merge``: the merge made at this step (the last one
    applied), with its training count when known."""

    step: int
    n_merges: int
    segmentation: Segmentation
    merge: tuple[bytes, bytes] | None
    merge_count: int | None


def replay_step(tok: Tokenizer, text: str, step: int) -> ReplayStep:
    """Segment ``text`` as the tokenizer would have after its first ``step`` merges."""
    n = len(tok.merge_list)
    if not 0 <= step <= n:
        raise TokenizerError(f"step must be between 0 and {n} (the number of merges), got {step}.")
    seg = segment(tok, text, max_merges=step)
    merge = count = None
    if step > 0:
        a, b, _ = tok.merge_list[step - 1]
        merge = (tok.id_to_token(int(a)), tok.id_to_token(int(b)))
        if tok.merge_counts is not None:
            count = int(tok.merge_counts[step - 1])
    return ReplayStep(step, n, seg, merge, count)
