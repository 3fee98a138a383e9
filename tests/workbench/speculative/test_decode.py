"""End-to-end speculative decoding on SmolLM2: greedy output identical to plain greedy decoding for every drafter
and builder x 64 new tokens, on 9 prompts in CI (code in five languages, prose, open questions, Russian, Chinese)
and on all 22 in the `slow` tier; a SpecRun that saves and loads; bad input."""

import numpy as np
import pytest

from workbench.errors import SpeculativeError
from workbench.speculative import SpecRun, generate
from workbench.speculative.prompts import all_prompts

pytestmark = pytest.mark.model

N_NEW = 64
NEAR_TIE = 1e-4
# one prompt of every kind and script: Python, JavaScript, C, English prose, two open questions, Russian, Chinese
CI_PROMPTS = (0, 3, 5, 7, 8, 10, 13, 19, 20)
ALL_PROMPTS = tuple(range(len(all_prompts())))

# (drafter, drafter params, builder, builder params): every drafter natively, every builder on a drafter that
# offers candidates (the n-gram model, or the early-exit model where the builder needs real probabilities)
CONFIGS = [
    ("prompt_lookup", {}, None, {}),
    ("suffix", {}, None, {}),
    ("recycling", {}, None, {}),
    ("corpus_ngram", {}, None, {}),
    ("early_exit", {"layers": 8, "max_draft": 3}, None, {}),
    ("corpus_ngram", {}, "chain", {"gamma": 4}),
    ("corpus_ngram", {}, "kary", {"k": 2, "depth": 3}),
    ("recycling", {}, "medusa", {"acceptance": [[0.6, 0.2, 0.1], [0.5, 0.2, 0.1], [0.4, 0.1, 0.1]]}),
    ("recycling", {}, "sequoia", {"acceptance": [0.6, 0.2, 0.1, 0.05], "max_depth": 5}),
    ("corpus_ngram", {}, "eagle2", {"topk": 3, "depth": 3}),
    ("corpus_ngram", {}, "dyspec", {}),
    ("prompt_lookup", {}, "goose", {"branch": "corpus_ngram"}),
    # the early-exit model behind a dynamic tree: ~2x the cost of a plain step, so outside CI
    pytest.param("early_exit", {"layers": 8}, "eagle2", {"topk": 2, "depth": 3}, marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def runner(default_model):
    from workbench.models import ModelRunner

    return ModelRunner(*default_model)


@pytest.fixture(scope="module")
def references(runner):
    """Per prompt index, computed once on first use: (prompt, ids, plain greedy continuation, top-1 minus top-2 logit
    gap at each output position)."""
    cache = {}

    def reference(i):
        if i not in cache:
            p = all_prompts()[i]
            ids = runner.encode_chat(p.text) if p.chat else runner.encode(p.text)
            out = runner.greedy_cached(ids, N_NEW, eos=True)[len(ids):]
            s = runner.session()
            first = s.prefill(ids)
            rows = np.vstack([first[None], s.extend(out[:-1])]) if len(out) > 1 else first[None]
            top2 = np.sort(rows, axis=1)[:, -2:]
            cache[i] = (p, ids, out, top2[:, 1] - top2[:, 0])
        return cache[i]

    return reference


def _check_identical(run, ref_out, gaps, label):
    got = run.output_ids
    n = min(len(got), len(ref_out))
    diff = np.flatnonzero(got[:n] != ref_out[:n])
    if diff.size:
        j = int(diff[0])
        assert gaps[j] < NEAR_TIE, (f"{label}: token {j} differs ({got[j]} vs plain {ref_out[j]}) and the plain run's "
                                    f"top-2 logit gap there is {gaps[j]:.2e}, not a near-tie")
        return "tie"
    assert len(got) == len(ref_out), f"{label}: {len(got)} tokens vs {len(ref_out)} in the plain run"
    return "same"


_CONFIG_IDS = [f"{c[0]}-{c[2] or 'native'}" if isinstance(c, tuple) else f"{c.values[0]}-{c.values[2]}"
               for c in CONFIGS]


def _assert_identical_on(prompts, runner, references, drafter, dparams, builder, bparams):
    outcomes, accepted = [], 0
    for i in prompts:
        p, ids, ref_out, gaps = references(i)
        run = generate(ids, drafter=drafter, drafter_params=dparams, builder=builder, builder_params=bparams,
                       max_new_tokens=N_NEW, runner=runner)
        outcomes.append(_check_identical(run, ref_out, gaps, f"{drafter}/{builder}/{p.name}"))
        accepted += run.summary()["accepted"]
    # a near-tie may flip a token (then the rest of that output legitimately differs): at most 1 prompt in 10
    assert outcomes.count("same") >= len(outcomes) - max(1, len(outcomes) // 10), outcomes
    assert accepted > 0, "the drafter never had a token accepted: it is not drafting"


@pytest.mark.parametrize("drafter,dparams,builder,bparams", CONFIGS, ids=_CONFIG_IDS)
def test_greedy_speculative_output_equals_plain_greedy(runner, references, drafter, dparams, builder, bparams):
    _assert_identical_on(CI_PROMPTS, runner, references, drafter, dparams, builder, bparams)


@pytest.mark.slow
@pytest.mark.parametrize("drafter,dparams,builder,bparams", CONFIGS, ids=_CONFIG_IDS)
def test_greedy_speculative_output_equals_plain_greedy_on_all_22_prompts(runner, references, drafter, dparams, builder,
                                                                         bparams):
    _assert_identical_on(ALL_PROMPTS, runner, references, drafter, dparams, builder, bparams)


def _ids(runner, i):
    p = all_prompts()[i]
    return runner.encode_chat(p.text) if p.chat else runner.encode(p.text)


def test_spec_run_metrics_save_and_load(runner, tmp_path):
    ids = _ids(runner, 0)
    run = generate(ids, drafter="prompt_lookup", schedule="heuristic", max_new_tokens=N_NEW, runner=runner)
    s = run.summary()
    drafts = [st for st in run.steps if st.tree.size]
    assert s["mean_acceptance_length"] == pytest.approx(1 + sum(st.n_accepted for st in drafts) / len(drafts))
    assert s["tokens_per_step"] == pytest.approx(len(run.output_ids) / run.n_steps)
    assert s["mean_acceptance_length"] > 1.5            # a code rewrite copies the prompt
    assert 1 <= s["expected_tree_length"] and 1 <= s["expected_chain_length"]
    acc = run.rank_acceptance(4)
    assert acc[0] > 0 and acc.sum() <= 1 + 1e-9
    assert run.token_sources().shape == run.output_ids.shape
    assert run.histogram().sum() == len(drafts)
    pp = run.per_position()
    assert 0 <= np.nanmin(pp) and np.nanmax(pp) <= 1
    for st in run.steps:
        states = st.node_states()
        assert (states == 2).sum() == st.n_accepted
        np.testing.assert_array_equal(st.tokens, np.concatenate([st.tree.tokens[st.accepted], [st.bonus]]))
    path = run.save(tmp_path / "run.safetensors")
    back = SpecRun.load(path)
    assert back.output_ids.tolist() == run.output_ids.tolist() and back.text == run.text
    assert back.summary()["mean_acceptance_length"] == s["mean_acceptance_length"]
    for a, b in zip(run.steps, back.steps):
        assert a.tree.tokens.tolist() == b.tree.tokens.tolist() and a.accepted.tolist() == b.accepted.tolist()
        assert a.target_top.tolist() == b.target_top.tolist() and a.bonus == b.bonus
    with pytest.raises(SpeculativeError, match="exists"):
        run.save(path)
    run.save(path, overwrite=True)
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(SpeculativeError, match="could not read"):
        SpecRun.load(tmp_path / "bad.safetensors")


def test_sampling_runs_are_reproducible(runner):
    ids = _ids(runner, 10)
    a = generate(ids, drafter="prompt_lookup", temperature=0.8, seed=3, max_new_tokens=24, runner=runner)
    b = generate(ids, drafter="prompt_lookup", temperature=0.8, seed=3, max_new_tokens=24, runner=runner)
    assert a.output_ids.tolist() == b.output_ids.tolist() and a.params["verifier"] == "sequoia"
    assert a.params["lossless"] is True


def test_bad_input(runner):
    with pytest.raises(SpeculativeError, match="empty"):
        generate("   ", runner=runner)
    with pytest.raises(SpeculativeError, match="empty"):
        generate([], runner=runner)
    with pytest.raises(SpeculativeError, match="max_new_tokens"):
        generate("Hello there", max_new_tokens=0, runner=runner)
    with pytest.raises(SpeculativeError, match="temperature"):
        generate("Hello there", temperature=-1, runner=runner)
    with pytest.raises(SpeculativeError, match="context"):
        generate(np.ones(runner.max_positions, np.int64), max_new_tokens=8, runner=runner)
    with pytest.raises(SpeculativeError, match="vocabulary"):
        generate([1, runner.vocab_size + 5], runner=runner)
    with pytest.raises(SpeculativeError, match="unknown drafter"):
        generate("Hello there", drafter="oracle", runner=runner)
    with pytest.raises(SpeculativeError, match="greedy"):
        generate("Hello there", verifier="specinfer", runner=runner)
    with pytest.raises(SpeculativeError, match="sampling"):
        generate("Hello there", verifier="greedy", temperature=0.7, runner=runner)

    class Rogue:
        name = "rogue"

        def reset(self, ids):
            pass

        def propose(self, ctx, budget):
            from workbench.speculative import DraftTree

            return DraftTree.chain([runner.vocab_size + 1])

    from workbench.speculative.drafter import DRAFTERS

    DRAFTERS["rogue"] = Rogue
    try:
        with pytest.raises(SpeculativeError, match="outside the model's vocabulary"):
            generate("Hello there", drafter="rogue", runner=runner)
    finally:
        del DRAFTERS["rogue"]
