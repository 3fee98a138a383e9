"""The training data of the tiny MoE: the seven domains and their tagged sources, the train/held-out split of
the shipped corpora, the tokenizer trained on it, token streams per tag, and the windows a step or an evaluation
reads (see `workbench.routing.train` for the split)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.errors import RoutingError

DOMAINS: dict[str, tuple[str, ...]] = {
    "english": ("prose_en", "en"),
    "code": ("code",),
    "latin": ("de", "es", "fr", "it", "pt", "tr", "vi"),
    "cyrillic_greek": ("ru", "uk", "el"),
    "arabic_hebrew": ("ar", "fa", "he"),
    "indic_thai": ("hi", "th"),
    "cjk": ("zh", "ja", "ko"),
}
DOMAIN_OF = {tag: domain for domain, tags in DOMAINS.items() for tag in tags}
HELD_OUT_PASSAGES = 4


def source_texts(split: str = "train") -> dict[str, list[str]]:
    """The documents of every tag in ``split`` ("train" or "heldout"): tag -> list of texts (see the
    `workbench.routing.train` docstring)."""
    from workbench.data import load_corpus
    from workbench.data.corpora import parallel_texts

    if split not in ("train", "heldout"):
        raise RoutingError(f"split must be 'train' or 'heldout', got {split!r}")
    train = split == "train"
    prose = load_corpus("prose_en").read_text()
    cut = prose.rfind("\n\n", 0, int(len(prose) * 0.95)) + 2
    out = {"prose_en": [prose[:cut] if train else prose[cut:]], "code": []}
    for path in sorted(load_corpus("code").paths, key=lambda p: p.name):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        cut = int(len(lines) * 0.9)
        out["code"].append("".join(lines[:cut] if train else lines[cut:]))
    passages = parallel_texts()
    for tag in DOMAIN_OF:
        if tag in passages:
            p = passages[tag]
            out[tag] = ["\n\n".join(p[:-HELD_OUT_PASSAGES] if train else p[-HELD_OUT_PASSAGES:])]
    return out


def train_tokenizer(vocab_size: int = 4096, *, parallel_weight: int = 4, show_progress: bool = False):
    """Byte-level BPE (GPT-2 pre-tokenizer) trained on the training split of every tag; the parallel text
    counts ``parallel_weight`` times so the 19 small languages get tokens of their own. Deterministic."""
    from workbench.tokenization.trainer import train_bpe

    docs = []
    for tag, texts in source_texts("train").items():
        docs += texts * (1 if tag in ("prose_en", "code") else parallel_weight)
    return train_bpe(docs, vocab_size, show_progress=show_progress, name="tiny-moe")


@dataclass
class TokenData:
    """Token streams per tag: ``train[tag]`` / ``heldout[tag]`` int64 [n] (documents joined by a blank
    line)."""

    train: dict[str, np.ndarray]
    heldout: dict[str, np.ndarray]
    vocab_size: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> TokenData:
        def encode(split):
            return {tag: np.asarray(tokenizer.encode("\n\n".join(texts)), dtype=np.int64)
                    for tag, texts in source_texts(split).items()}

        return cls(encode("train"), encode("heldout"), int(tokenizer.n_vocab))

    def domain_tokens(self, split: str = "train") -> dict[str, int]:
        streams = self.train if split == "train" else self.heldout
        return {d: int(sum(streams[t].size for t in tags if t in streams)) for d, tags in DOMAINS.items()}


class DomainSampler:
    """Random windows of ``length`` tokens from one domain: a tag drawn in proportion to its tokens, then a
    start."""

    def __init__(self, data: TokenData, length: int, rng: np.random.Generator):
        self.length, self.rng = length, rng
        self.streams = {}
        for domain, tags in DOMAINS.items():
            streams = [data.train[t] for t in tags if t in data.train and data.train[t].size > length]
            if not streams:
                raise RoutingError(f"domain {domain!r} has no training text longer than {length} tokens")
            sizes = np.array([s.size - length for s in streams], np.float64)
            self.streams[domain] = (streams, sizes / sizes.sum())

    def sample(self, domain: str, n: int) -> np.ndarray:
        """int64 [n, length] windows from ``domain``."""
        streams, weights = self.streams[domain]
        which = self.rng.choice(len(streams), size=n, p=weights)
        starts = [int(self.rng.integers(0, streams[w].size - self.length)) for w in which]
        return np.stack([streams[w][s:s + self.length] for w, s in zip(which, starts)])


def heldout_windows(data: TokenData, length: int, max_windows: int) -> tuple[np.ndarray, list[str]]:
    """Non-overlapping held-out windows, at most ``max_windows`` per tag -> (int64 [W, length], tag per
    window)."""
    windows, tags = [], []
    for tag, stream in data.heldout.items():
        n = min(max_windows, stream.size // length)
        windows += [stream[i * length:(i + 1) * length] for i in range(n)]
        tags += [tag] * n
    if not windows:
        raise RoutingError(f"no held-out text is {length} tokens long")
    return np.stack(windows), tags
