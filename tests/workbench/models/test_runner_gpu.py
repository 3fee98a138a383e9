"""The decoding runner on CUDA gives the CPU's tree logits and the same speculative greedy output (skipped without a
GPU)."""

import numpy as np
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.model]


def test_tree_decoding_on_cuda_matches_the_cpu(default_model):
    import copy

    from workbench.models import ModelRunner
    from workbench.speculative import generate

    model, tok = default_model
    cpu = ModelRunner(model, tok)
    gpu = ModelRunner(copy.deepcopy(model).to("cuda"), tok)
    ids = cpu.encode("def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return")
    parents = np.array([-1, 0, 0, 1, 1, 2])
    tokens = np.concatenate([[ids[-1]], [11, 22, 33, 44, 55]])
    rows = []
    for r in (cpu, gpu):
        s = r.session()
        s.prefill(ids[:-1])
        rows.append(s.extend(tokens, parents))
    np.testing.assert_allclose(rows[0], rows[1], atol=2e-3, rtol=0)
    a = generate(ids, drafter="prompt_lookup", max_new_tokens=32, runner=cpu)
    b = generate(ids, drafter="prompt_lookup", max_new_tokens=32, runner=gpu)
    assert a.output_ids.tolist() == b.output_ids.tolist() and b.params["device"].startswith("cuda")
