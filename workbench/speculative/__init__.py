"""Speculative decoding lab core: one draft-tree representation (`DraftTree`), drafters (`make_drafter`), tree
builders (`make_builder`), lossless verifiers (`make_verifier`), draft-length schedules (`make_schedule`), and
end-to-end decoding on the real model (`generate` -> `SpecRun`, with vLLM's metrics).

Names are imported lazily, so ``import workbench.speculative.tree`` stays light."""

import importlib

_WHERE = {
    "BUILDERS": "builders", "make_builder": "builders",
    "DRAFTERS": "drafter", "Drafter": "drafter", "make_drafter": "drafter",
    "generate": "decode",
    "Timeline": "pearl", "pearl_timeline": "pearl", "run_timeline": "pearl",
    "SpecRun": "run", "StepRecord": "run", "expected_chain_length": "run",
    "SCHEDULES": "schedules", "make_schedule": "schedules",
    "DraftTree": "tree",
    "VERIFIERS": "verify", "Verdict": "verify", "make_verifier": "verify",
}

__all__ = sorted(_WHERE)


def warm_up() -> None:
    """Compile (or load from Numba's cache) every kernel of the lab on tiny inputs: the tree functions, the
    drafters' kernels, Sequoia's DP and the verifiers (``workbench prepare`` and the dashboard call this)."""
    import numpy as np

    from workbench.speculative import sequoia, tree, verify
    from workbench.speculative.drafters import kernels

    parents = np.array([-1, 0, 0, 1], np.int32)
    tree.tree_depths(parents)
    tree.tree_attention_mask(parents)
    tree.tree_position_ids(parents, 3)
    tree.tree_leaf_paths(parents)
    tree.tree_children(parents)
    kernels.warm_up()
    sequoia.warm_up()
    verify.warm_up()


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"workbench.speculative.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'workbench.speculative' has no attribute {name!r}")
