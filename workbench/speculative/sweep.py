"""Acceptance sweeps: every configuration (drafter, builder, schedule ...) on every prompt, with vLLM's acceptance
figures, here or fanned out over a Dask cluster (``client=``), each worker loading the default model once.

A point is one greedy `generate` run; its row holds what the run decided (tokens out, steps, drafts, accepted and
drafted nodes, and a digest of the output ids) and how long it took. The decisions are the same wherever a point
runs, given the same torch thread count (``threads``: set it for both sides; a different reduction order can flip a
near-tie), for configurations that do not plan from measured time: the ``thompson`` schedule and the
hardware-aware Sequoia budget read the machine's clock, so their rows depend on where they ran.

`measured_speedups` times one prompt at several fixed draft lengths against plain greedy decoding (the lab's
"Speedup" tab): timings, so it runs here.

>>> from workbench.speculative.prompts import task_prompts
>>> sweep = acceptance_sweep(task_prompts("grounded")[:2], {"lookup": {"drafter": "prompt_lookup"}},
...                          max_new_tokens=16)                                              # doctest: +SKIP
>>> sweep.by_config()[["mean_acceptance_length", "tokens_per_step"]]                         # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from workbench.errors import SpeculativeError
from workbench.progress import Progress, Reporter

#: The columns that hold what a run decided (the same wherever it ran); the others are timings.
DECIDED = ("config", "prompt", "new_tokens", "steps", "drafts", "accepted", "drafted_nodes", "output_digest")

#: Every drafter with its own proposal, for the lab's sweep.
DRAFTER_CONFIGS = {name: {"drafter": name, "schedule": "fixed", "schedule_params": {"gamma": 8}}
                   for name in ("prompt_lookup", "suffix", "recycling", "corpus_ngram")}


@dataclass
class AcceptanceSweep:
    """``table``: one row per (config, prompt) in the order asked for (columns `DECIDED` + ``seconds``,
    ``tokens_per_s``, ``mean_acceptance_length``, ``tokens_per_step``, ``threads``, ``where``)."""

    table: object  # pandas.DataFrame

    def by_config(self):
        """One row per configuration, pooled over its prompts with vLLM's definitions: ``mean_acceptance_length`` =
        1 + accepted / drafts, ``draft_acceptance_rate`` = accepted / drafted nodes, ``tokens_per_step``, and
        ``tokens_per_s`` = all tokens / all seconds."""
        import pandas as pd

        rows = []
        for config, g in self.table.groupby("config", sort=False):
            drafts, acc, nodes = g["drafts"].sum(), g["accepted"].sum(), g["drafted_nodes"].sum()
            rows.append({"config": config, "prompts": len(g),
                         "mean_acceptance_length": 1 + acc / drafts if drafts else 1.0,
                         "draft_acceptance_rate": acc / nodes if nodes else 0.0,
                         "tokens_per_step": g["new_tokens"].sum() / g["steps"].sum(),
                         "tokens_per_s": g["new_tokens"].sum() / g["seconds"].sum()})
        return pd.DataFrame(rows).set_index("config")

    def decided(self):
        """The table's `DECIDED` columns: what must be identical wherever the sweep ran."""
        return self.table[list(DECIDED)]


def _digest(ids) -> str:
    return hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:16]


def sweep_point(prompt: str, chat: bool, prompt_name: str, label: str, config: dict, max_new_tokens: int,
                threads: int | None = None, runner=None) -> dict:
    """One run of the sweep on ``runner`` (default: this process's default model, loaded once per process): its row."""
    import torch

    from workbench.models import default_runner
    from workbench.speculative.decode import generate

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        run = generate(prompt, runner=runner or default_runner(), chat=chat, max_new_tokens=max_new_tokens, **config)
    finally:
        torch.set_num_threads(before)
    s = run.summary()
    return {"config": label, "prompt": prompt_name, "new_tokens": s["new_tokens"], "steps": s["steps"],
            "drafts": s["drafts"], "accepted": s["accepted"], "drafted_nodes": s["drafted_nodes"],
            "output_digest": _digest(run.output_ids), "seconds": run.seconds,
            "tokens_per_s": s["new_tokens"] / run.seconds if run.seconds else 0.0,
            "mean_acceptance_length": s["mean_acceptance_length"], "tokens_per_step": s["tokens_per_step"],
            "threads": int(threads) if threads else before}


def _prompts(prompts) -> list[tuple[str, bool, str]]:
    """(text, chat, name) of each prompt: a `TaskPrompt` (its own chat flag) or a str (chat template on)."""
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            if not p:
                raise SpeculativeError("an empty prompt cannot be swept")
            out.append((p, True, f"prompt {i}"))
        elif hasattr(p, "text") and hasattr(p, "chat"):
            out.append((p.text, bool(p.chat), getattr(p, "name", f"prompt {i}")))
        else:
            raise SpeculativeError(f"prompts must be str or TaskPrompt, got {type(p).__name__}")
    if not out:
        raise SpeculativeError("give at least one prompt")
    return out


def acceptance_sweep(prompts: Sequence, configs: Mapping[str, dict], *, max_new_tokens: int = 64, client=None,
                     threads: int | None = None, progress: Callable[[Progress], None] | None = None,
                     runner=None) -> AcceptanceSweep:
    """Run every configuration (label -> `generate` keyword arguments) on every prompt (`TaskPrompt` or str), greedy,
    ``max_new_tokens`` each, here or on the workers of a Dask ``client`` (`workbench.distributed.connect`; each
    worker loads the default model once, all of them at the start). ``threads``: torch's thread count for every run
    (None: each process's own). ``progress``: a `Progress` (stage ``"sweep"``) after each run. ``runner``: a `ModelRunner` for a local
    sweep (default: the default model). Bad configurations fail here, before any work is sent."""
    import pandas as pd

    if not isinstance(configs, Mapping) or not configs:
        raise SpeculativeError("configs must be a non-empty dict of label -> generate() keyword arguments")
    for label, config in configs.items():
        if not isinstance(config, Mapping) or {"runner", "prompt", "chat", "max_new_tokens"} & set(config):
            raise SpeculativeError(f"config {label!r}: give generate()'s drafter/builder/verifier/schedule "
                                   "arguments only (the sweep sets the prompt, the runner and max_new_tokens)")
        if config.get("temperature", 0):
            raise SpeculativeError(f"config {label!r}: the sweep is greedy (temperature 0)")
    if client is not None and runner is not None:
        raise SpeculativeError("with a Dask client each worker uses its own default model; pass runner=None")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
        raise SpeculativeError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    points = [(text, chat, name, label, dict(config), max_new_tokens, threads)
              for label, config in configs.items() for text, chat, name in _prompts(prompts)]
    report = Reporter(progress, "sweep", len(points))
    if client is None:
        rows = []
        for point in points:
            rows.append({**sweep_point(*point, runner=runner), "where": "here"})
            report(len(rows))
    else:
        rows = _on_cluster(client, points, report)
    return AcceptanceSweep(pd.DataFrame(rows))


def _warm() -> int:
    """Load the default model on this worker (once per process) and compile the lab's kernels."""
    from workbench.models import default_runner
    from workbench.speculative import warm_up

    runner = default_runner()
    warm_up()
    runner.greedy_cached(runner.encode("warm up"), 2)
    return 1


def _on_cluster(client, points, report) -> list[dict]:
    from workbench.distributed import require_distributed

    distributed = require_distributed()
    client.run(_warm)   # every worker loads the model now, in parallel, not on its first point
    futures = [client.submit(sweep_point, *point, pure=False) for point in points]
    done = 0
    try:
        for fut in distributed.as_completed(futures):
            if fut.status == "error":
                fut.result()
            done += 1
            report(done)
    except BaseException:
        client.cancel(futures)
        raise
    return [{**row, "where": "dask"} for row in client.gather(futures)]


# -- draft length against speedup ------------------------------------------------------------------------------
def measured_speedups(prompt, gammas, *, drafter: str = "prompt_lookup", max_new_tokens: int = 48, runner=None,
                      chat: bool = False) -> dict:
    """Measured speedup of fixed-length chain drafts over plain greedy decoding on ``prompt``, one decode per length
    in ``gammas`` (identical outputs): ``{"gammas", "speedup", "tokens_per_s", "plain_tokens_per_s", "alpha"}``,
    ``alpha`` the per-token acceptance pooled over the runs (for `expected_speedups`): the geometric model's
    maximum-likelihood estimate, accepted tokens / (accepted tokens + rejections)."""
    from workbench.speculative.decode import generate, prompt_ids_for

    if runner is None:
        from workbench.models import default_runner

        runner = default_runner()
    ids = prompt_ids_for(runner, prompt, chat)
    gammas = [int(g) for g in gammas]
    if not gammas or min(gammas) < 1:
        raise SpeculativeError("gammas must be positive draft lengths")
    runner.greedy_cached(ids, 2)                                   # warm this context length up
    t = time.perf_counter()
    plain = runner.greedy_cached(ids, max_new_tokens, eos=True)
    plain_tps = (len(plain) - len(ids)) / (time.perf_counter() - t)
    tps, acc, rejected = [], 0, 0
    for g in gammas:
        run = generate(ids, drafter=drafter, schedule="fixed", schedule_params={"gamma": g},
                       max_new_tokens=max_new_tokens, runner=runner)
        s = run.summary()
        tps.append(s["new_tokens"] / run.seconds)
        acc += s["accepted"]
        rejected += sum(1 for st in run.steps if st.tree.size and st.n_accepted < st.tree.max_depth)
    return {"gammas": gammas, "tokens_per_s": tps, "plain_tokens_per_s": plain_tps,
            "speedup": [x / plain_tps for x in tps], "alpha": acc / (acc + rejected) if acc + rejected else 0.0}
