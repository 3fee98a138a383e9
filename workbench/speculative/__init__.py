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


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"workbench.speculative.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'workbench.speculative' has no attribute {name!r}")
