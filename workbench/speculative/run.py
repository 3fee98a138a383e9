"""`SpecRun`: everything one speculative decode did, step by step, so that widgets can replay it; and its metrics.

A step is one verification pass of the target model: the draft tree proposed below the root (the last decided
token), the path the verifier accepted, the token the target added after it (the *bonus*: a correction after a
rejection or a free token after a fully accepted path) and the times spent drafting and verifying. A step whose
drafter had nothing to propose is a plain decoding step (an empty tree, one token out).

Metrics follow vLLM's definitions (``vllm/v1/spec_decode/metrics.py``):

* ``mean_acceptance_length = 1 + accepted / drafts`` over the steps that had a draft (bonus token included);
* ``draft_acceptance_rate = accepted / drafted tokens`` (tree nodes, for trees);
* ``per_position``: at draft depth i, the share of drafts reaching depth i whose token at depth i was accepted;
* ``tokens_per_step``: the sequence-normalised variant, generated tokens / all verification passes (steps with no
  draft included): the figure that speedup follows, and the one users usually mean.

Example::

    run = generate("Rewrite this code ...", drafter="prompt_lookup", max_new_tokens=64)
    run.summary()["mean_acceptance_length"], run.text
    run.save("run.safetensors"); SpecRun.load("run.safetensors")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.errors import SpeculativeError
from workbench.saving import atomic_path, refuse_existing
from workbench.speculative.tree import DraftTree

FORMAT = "workbench-specrun-1"


@dataclass
class StepRecord:
    """One verification pass. ``target_prob`` [N]: the target's probability of each drafted token given its parent's
    path (at the run's temperature; 1/0 for argmax agreement at temperature 0); ``target_top`` [N + 1]: the target's
    most likely next token after the root and each node."""

    tree: DraftTree
    accepted: np.ndarray
    bonus: int
    draft_seconds: float
    verify_seconds: float
    target_prob: np.ndarray
    target_top: np.ndarray

    @property
    def n_accepted(self) -> int:
        return int(len(self.accepted))

    @property
    def tokens(self) -> np.ndarray:
        return np.concatenate([self.tree.tokens[self.accepted], [self.bonus]]).astype(np.int64)

    def node_states(self) -> np.ndarray:
        """int8 [N]: 2 accepted, 1 reached and rejected (its parent was accepted or it hangs below the root, but it
        was not), 0 never reached (below a rejected node). What the draft-tree view colours."""
        state = np.zeros(self.tree.size, np.int8)
        acc = np.zeros(self.tree.size, bool)
        acc[self.accepted] = True
        for i in range(self.tree.size):
            p = self.tree.parents[i]
            if acc[i]:
                state[i] = 2
            elif p < 0 or acc[p]:
                state[i] = 1
        return state


@dataclass
class SpecRun:
    """A whole speculative decode (see the module docstring)."""

    prompt_ids: np.ndarray
    output_ids: np.ndarray
    steps: list[StepRecord]
    params: dict = field(default_factory=dict)
    prefill_seconds: float = 0.0
    token_strings: list[str] | None = None
    text: str = ""

    # -- metrics ------------------------------------------------------------------------------------------------
    @property
    def n_steps(self) -> int:
        return len(self.steps)

    @property
    def seconds(self) -> float:
        return self.prefill_seconds + sum(s.draft_seconds + s.verify_seconds for s in self.steps)

    def acceptance_lengths(self) -> np.ndarray:
        """Accepted draft tokens per step (int [steps])."""
        return np.array([s.n_accepted for s in self.steps], np.int64)

    def per_position(self, max_depth: int | None = None) -> np.ndarray:
        """Acceptance rate at each draft depth 1..D (vLLM's per-position rate): accepted at depth i / drafts that
        proposed something at depth i. NaN where no draft reached that depth."""
        depth = max([s.tree.max_depth for s in self.steps] + [0]) if max_depth is None else max_depth
        reached = np.zeros(depth)
        acc = np.zeros(depth)
        for s in self.steps:
            d = min(s.tree.max_depth, depth)
            reached[:d] += 1
            acc[:min(s.n_accepted, depth)] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(reached > 0, acc / np.maximum(reached, 1), np.nan)

    def rank_acceptance(self, width: int = 8) -> np.ndarray:
        """Sequoia's positional acceptance vector measured on this run: ``p[i]`` (i = 0..width-1) is the share of
        verified nodes with children (the root and every accepted node that had children) whose accepted child
        was the (i+1)-th in rank order. Feed it to `builders.SequoiaBuilder` / `sequoia.choose_budget`."""
        from workbench.speculative.tree import tree_children

        hits = np.zeros(width)
        visits = 0
        for s in self.steps:
            if not s.tree.size:
                continue
            ptr, child = tree_children(s.tree.parents)
            slots = [0] + [int(a) + 1 for a in s.accepted]
            for depth, slot in enumerate(slots):
                kids = child[ptr[slot]:ptr[slot + 1]]
                if kids.size == 0:
                    continue
                visits += 1
                if depth < len(s.accepted):
                    rank = int(np.flatnonzero(kids == s.accepted[depth])[0])
                    if rank < width:
                        hits[rank] += 1
        return hits / visits if visits else hits

    def expected_tree_length(self) -> float:
        """The tree expectation next to the measured mean acceptance length: the mean over steps with a draft of
        Sequoia's expected accepted tokens (bonus included) of the tree actually drafted, under this run's own
        measured positional acceptance vector (`rank_acceptance`)."""
        from workbench.speculative.sequoia import expected_accepted, sibling_ranks

        width = max([int(sibling_ranks(s.tree.parents).max()) + 1 for s in self.steps if s.tree.size] + [1])
        acc = self.rank_acceptance(width)
        vals = [expected_accepted(s.tree.parents, None, acc) for s in self.steps if s.tree.size]
        return float(np.mean(vals)) if vals else 1.0

    def histogram(self) -> np.ndarray:
        """Count of steps with a draft by number of accepted tokens (index = accepted)."""
        acc = np.array([s.n_accepted for s in self.steps if s.tree.size], np.int64)
        return np.bincount(acc) if acc.size else np.zeros(1, np.int64)

    def summary(self) -> dict:
        drafts = [s for s in self.steps if s.tree.size]
        accepted = sum(s.n_accepted for s in drafts)
        drafted = sum(s.tree.size for s in drafts)
        chain_drafted = sum(s.tree.max_depth for s in drafts)
        n_out = len(self.output_ids)
        draft_t = sum(s.draft_seconds for s in self.steps)
        verify_t = sum(s.verify_seconds for s in self.steps)
        alpha = accepted / chain_drafted if chain_drafted else 0.0
        mean_gamma = chain_drafted / len(drafts) if drafts else 0.0
        return {
            "new_tokens": n_out,
            "steps": self.n_steps,
            "drafts": len(drafts),
            "accepted": accepted,
            "drafted_nodes": drafted,
            "mean_acceptance_length": 1 + accepted / len(drafts) if drafts else 1.0,
            "draft_acceptance_rate": accepted / drafted if drafted else 0.0,
            "tokens_per_step": n_out / self.n_steps if self.n_steps else 0.0,
            "path_acceptance_rate": alpha,
            "expected_chain_length": expected_chain_length(alpha, mean_gamma) if drafts else 1.0,
            "expected_tree_length": self.expected_tree_length(),
            "per_position": [None if np.isnan(x) else float(x) for x in self.per_position()],
            "seconds": self.seconds,
            "draft_seconds": draft_t,
            "verify_seconds": verify_t,
            "tokens_per_second": n_out / self.seconds if self.seconds > 0 else 0.0,
            **{k: v for k, v in self.params.items() if isinstance(v, (str, int, float, bool))},
        }

    # -- views ------------------------------------------------------------------------------------------------
    def token_sources(self) -> np.ndarray:
        """int8 [new tokens]: how each output token was produced: 2 accepted draft token, 1 bonus token after a
        draft (correction or free token), 0 plain decoding (a step with no draft)."""
        out = []
        for s in self.steps:
            out += [2] * s.n_accepted + [1 if s.tree.size else 0]
        return np.asarray(out[:len(self.output_ids)], np.int8)

    # -- persistence ------------------------------------------------------------------------------------------
    def save(self, path, *, overwrite: bool = False) -> Path:
        """One safetensors file (flat arrays + JSON metadata). Refuses to replace a file unless ``overwrite``."""
        from safetensors.numpy import save_file

        path = refuse_existing(path, overwrite=overwrite, error=SpeculativeError)
        sizes = np.array([s.tree.size for s in self.steps], np.int64)
        n_acc = np.array([s.n_accepted for s in self.steps], np.int64)

        def cat(xs, dtype):
            return np.concatenate([np.asarray(x, dtype) for x in xs]) if xs else np.zeros(0, dtype)

        arrays = {
            "prompt_ids": np.asarray(self.prompt_ids, np.int64), "output_ids": np.asarray(self.output_ids, np.int64),
            "sizes": sizes, "n_accepted": n_acc,
            "tokens": cat([s.tree.tokens for s in self.steps], np.int64),
            "parents": cat([s.tree.parents for s in self.steps], np.int32),
            "draft_prob": cat([s.tree.draft_prob for s in self.steps], np.float32),
            "target_prob": cat([s.target_prob for s in self.steps], np.float32),
            "target_top": cat([s.target_top for s in self.steps], np.int64),
            "accepted": cat([s.accepted for s in self.steps], np.int32),
            "bonus": np.array([s.bonus for s in self.steps], np.int64),
            "draft_seconds": np.array([s.draft_seconds for s in self.steps], np.float64),
            "verify_seconds": np.array([s.verify_seconds for s in self.steps], np.float64),
        }
        meta = {"format": FORMAT, "params": json.dumps(self.params, default=str),
                "prefill_seconds": repr(float(self.prefill_seconds)), "text": self.text,
                "token_strings": json.dumps(self.token_strings),
                "tree_meta": json.dumps([s.tree.meta for s in self.steps], default=str)}
        with atomic_path(path, overwrite=overwrite, error=SpeculativeError) as tmp:
            save_file(arrays, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path) -> SpecRun:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise SpeculativeError(f"no run file at {path}")
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise SpeculativeError(f"{path} is not a workbench speculative run (no {FORMAT!r} metadata)")
                a = {k: f.get_tensor(k) for k in f.keys()}
        except SpeculativeError:
            raise
        except Exception as exc:
            raise SpeculativeError(f"could not read the run {path}: {exc}") from exc
        tree_meta = json.loads(meta["tree_meta"])
        steps = []
        n0 = a0 = 0
        for i, (n, k) in enumerate(zip(a["sizes"].tolist(), a["n_accepted"].tolist())):
            tree = DraftTree(tokens=a["tokens"][n0:n0 + n], parents=a["parents"][n0:n0 + n],
                             draft_prob=a["draft_prob"][n0:n0 + n], meta=tree_meta[i])
            top0 = n0 + i
            steps.append(StepRecord(tree=tree, accepted=a["accepted"][a0:a0 + k], bonus=int(a["bonus"][i]),
                                    draft_seconds=float(a["draft_seconds"][i]),
                                    verify_seconds=float(a["verify_seconds"][i]),
                                    target_prob=a["target_prob"][n0:n0 + n],
                                    target_top=a["target_top"][top0:top0 + n + 1]))
            n0 += n
            a0 += k
        return cls(prompt_ids=a["prompt_ids"], output_ids=a["output_ids"], steps=steps,
                   params=json.loads(meta["params"]), prefill_seconds=float(meta["prefill_seconds"]),
                   token_strings=json.loads(meta["token_strings"]), text=meta["text"])

    def __repr__(self) -> str:
        s = self.summary()
        return (f"SpecRun({s['new_tokens']} tokens in {s['steps']} steps, mean acceptance length "
                f"{s['mean_acceptance_length']:.2f}, {s['tokens_per_second']:.1f} tok/s, "
                f"drafter={self.params.get('drafter')!r}, builder={self.params.get('builder')!r})")


def expected_chain_length(alpha: float, gamma: float) -> float:
    """Expected tokens per verification of a chain of ``gamma`` drafts with per-token acceptance ``alpha``
    (Leviathan et al.): (1 - alpha^(gamma+1)) / (1 - alpha), bonus included. 0.8, 4 -> 3.36."""
    if not 0 <= alpha <= 1:
        raise SpeculativeError(f"alpha must be in [0, 1], got {alpha}")
    if gamma < 0:
        raise SpeculativeError(f"gamma must be >= 0, got {gamma}")
    if alpha >= 1:
        return float(gamma) + 1
    return float((1 - alpha ** (gamma + 1)) / (1 - alpha))
