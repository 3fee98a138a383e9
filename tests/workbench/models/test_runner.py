"""The shared model runner: tree attention equals running each root-to-node path as a plain sequence, and a
committed path leaves the cache exactly as plain incremental decoding would."""

import numpy as np
import pytest

from workbench.errors import ModelError
from workbench.models import ModelRunner

pytestmark = pytest.mark.model

PROMPT = "def fibonacci(n):\n    if n < 2:\n        return n\n    return"


@pytest.fixture(scope="module")
def runner(default_model):
    return ModelRunner(*default_model)


def _path(parents, node):
    out = []
    while node >= 0:
        out.append(node)
        node = parents[node]
    return out[::-1]


def test_tree_logits_equal_each_path_run_as_a_sequence(runner):
    ids = runner.encode(PROMPT)
    rng = np.random.default_rng(0)
    parents = np.array([-1, 0, 0, 0, 1, 1, 2, 4, 4, 6, 9])
    tokens = np.concatenate([[ids[-1]], rng.integers(0, runner.vocab_size, len(parents) - 1)])
    s = runner.session()
    s.prefill(ids[:-1])
    tree = s.extend(tokens, parents)
    assert tree.shape == (len(tokens), runner.vocab_size) and tree.dtype == np.float32
    for node in range(len(tokens)):
        plain = runner.session()
        plain.prefill(ids[:-1])
        seq = plain.extend(tokens[_path(parents, node)])
        np.testing.assert_allclose(tree[node], seq[-1], atol=1e-4, rtol=0)


def test_commit_then_next_step_equals_plain_incremental_decoding(runner):
    ids = runner.encode(PROMPT)
    parents = np.array([-1, 0, 0, 2, 2, 4])
    tokens = np.array([ids[-1], 11, 22, 33, 44, 55])
    s = runner.session()
    s.prefill(ids[:-1])
    s.extend(tokens, parents)
    s.commit([0, 2, 4, 5])
    assert s.ids == list(ids[:-1]) + [int(ids[-1]), 22, 44, 55] and s.length == len(ids) + 3
    nxt = s.extend([77, 88])
    plain = runner.session()
    plain.prefill(np.concatenate([ids[:-1], tokens[[0, 2, 4, 5]]]))
    ref = plain.extend([77, 88])
    np.testing.assert_allclose(nxt, ref, atol=1e-4, rtol=0)
    # an uncommitted extend is rolled back by the next one
    again = s.extend([77, 88])
    np.testing.assert_allclose(again, nxt, atol=1e-5, rtol=0)


def test_cached_greedy_equals_hugging_face_generate(runner):
    ids = runner.encode(PROMPT)
    ours = runner.greedy_cached(ids, 24)
    ref = runner.greedy(ids, 24)
    assert ours.tolist() == ref.tolist()


def test_logits_equal_hugging_face_forward(runner):
    """The runner's pass (oneDNN linears with packed weights on a CPU, its own SDPA) against the model's own forward
    (``F.linear``, transformers' attention): the same logits to float32 rounding, a prefill and one cached step."""
    import torch

    from workbench.models.runner import MODEL_LOCK

    ids = runner.encode(PROMPT)
    s = runner.session()
    last = s.prefill(ids[:-1])
    step = s.extend(ids[-1:])[-1]
    with MODEL_LOCK, torch.no_grad():
        ref = runner.model(torch.as_tensor(ids[None])).logits[0].float().numpy()
    np.testing.assert_allclose(last, ref[-2], atol=1e-4, rtol=0)
    np.testing.assert_allclose(step, ref[-1], atol=1e-4, rtol=0)


def test_verify_cost_curve_is_measured_on_the_runner(runner):
    from workbench.errors import SpeculativeError
    from workbench.speculative.costs import verify_cost_curve

    curve = verify_cost_curve(runner, [8, 0, 3], context_tokens=40, repeats=2)
    assert list(curve) == [0, 3, 8]
    assert all(np.isfinite(v) and 0 < v < 10 for v in curve.values())
    with pytest.raises(SpeculativeError, match="non-negative"):
        verify_cost_curve(runner, [-1, 2])
    with pytest.raises(SpeculativeError, match="repeats"):
        verify_cost_curve(runner, [0], repeats=0)
    with pytest.raises(SpeculativeError, match="statistic"):
        verify_cost_curve(runner, [0], statistic="mean")
    fastest = verify_cost_curve(runner, [0, 4], context_tokens=40, repeats=2, statistic="min")
    assert list(fastest) == [0, 4] and all(v > 0 for v in fastest.values())


def test_early_exit_session_runs_the_first_layers(runner):
    import torch

    ids = runner.encode("The capital of France is")
    s = runner.session(layers=6)
    got = s.extend(ids)
    m = runner.model
    with torch.no_grad():
        hs = m(torch.as_tensor(ids[None]), output_hidden_states=True).hidden_states[6]
        ref = m.lm_head(m.model.norm(hs))[0].float().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_bad_input_raises_model_errors(runner):
    s = runner.session()
    with pytest.raises(ModelError, match="vocabulary"):
        s.prefill([1, runner.vocab_size])
    with pytest.raises(ModelError, match="at least one token"):
        s.prefill([])
    s.prefill([1, 2, 3])
    with pytest.raises(ModelError, match="commit without"):
        s.commit([0])
    with pytest.raises(ModelError, match="malformed tree"):
        s.extend([4, 5], parents=[1, 0])
    s.extend([4, 5, 6], parents=[-1, 0, -1])
    with pytest.raises(ModelError, match="root-to-node"):
        s.commit([0, 2])
    with pytest.raises(ModelError, match="outside"):
        s.commit([5])
    with pytest.raises(ModelError, match="context"):
        runner.session().prefill(np.ones(runner.max_positions + 1, np.int64))
    with pytest.raises(ModelError, match="layers"):
        runner.session(layers=0)
    with pytest.raises(ModelError, match="empty"):
        runner.encode("  ")
