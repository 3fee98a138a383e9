"""Acceptance sweeps (`workbench.speculative.sweep`) on SmolLM2: pooled figures follow vLLM's definitions, greedy
outputs do not depend on the drafter, bad configurations fail before any run, and on a 2-worker Dask cluster every
run decides exactly what it decides here."""

from __future__ import annotations

import pytest

from workbench.errors import SpeculativeError
from workbench.speculative.prompts import task_prompts
from workbench.speculative.sweep import DECIDED, acceptance_sweep

pytestmark = pytest.mark.model

CONFIGS = {"lookup": {"drafter": "prompt_lookup", "schedule": "fixed", "schedule_params": {"gamma": 6}},
           "suffix": {"drafter": "suffix", "schedule": "fixed", "schedule_params": {"gamma": 6}}}


@pytest.fixture(scope="module")
def prompts():
    return task_prompts("grounded")[:1] + task_prompts("open")[:1]


@pytest.fixture(scope="module")
def local(prompts, default_model):
    return acceptance_sweep(prompts, CONFIGS, max_new_tokens=16, threads=1)


def test_rows_and_pooled_figures(local, prompts, default_model):
    from workbench.models import default_runner
    from workbench.speculative.sweep import _digest

    t = local.table
    assert list(t["config"]) == ["lookup", "lookup", "suffix", "suffix"] and set(t["new_tokens"]) == {16}
    runner = default_runner()
    for p in prompts:   # greedy: every drafter's output is plain greedy decoding's
        ids = runner.encode_chat(p.text) if p.chat else runner.encode(p.text)
        plain = runner.greedy_cached(ids, 16, eos=True)[len(ids):]
        assert set(t.loc[t["prompt"] == p.name, "output_digest"]) == {_digest(plain)}
    pooled = local.by_config()
    g = t[t["config"] == "lookup"]
    assert pooled.loc["lookup", "mean_acceptance_length"] == 1 + g["accepted"].sum() / g["drafts"].sum()
    assert pooled.loc["lookup", "tokens_per_step"] == g["new_tokens"].sum() / g["steps"].sum()
    assert list(local.decided().columns) == list(DECIDED)


def test_bad_sweeps_fail_before_any_run(prompts):
    with pytest.raises(SpeculativeError, match="non-empty dict"):
        acceptance_sweep(prompts, {})
    with pytest.raises(SpeculativeError, match="the sweep sets the prompt"):
        acceptance_sweep(prompts, {"x": {"drafter": "suffix", "max_new_tokens": 3}})
    with pytest.raises(SpeculativeError, match="greedy"):
        acceptance_sweep(prompts, {"x": {"drafter": "suffix", "temperature": 0.7}})
    with pytest.raises(SpeculativeError, match="positive integer"):
        acceptance_sweep(prompts, CONFIGS, max_new_tokens=0)
    with pytest.raises(SpeculativeError, match="empty prompt"):
        acceptance_sweep([""], CONFIGS)


def test_on_a_dask_cluster_every_run_decides_the_same(local, prompts):
    pytest.importorskip("distributed")
    from workbench.distributed import connect

    client = connect(workers=2)
    try:
        seen = []
        remote = acceptance_sweep(prompts, CONFIGS, max_new_tokens=16, threads=1, client=client,
                                  progress=lambda p: seen.append(p.done))
    finally:
        client.close()
    assert remote.decided().equals(local.decided())
    assert set(remote.table["where"]) == {"dask"} and seen[-1] == 4
