"""The specialization measure (`workbench.routing.specialization`) on hand-made traces: disjoint expert pairs give
one bit, alike routing zero, groups merge tags, untagged tokens are left out, the bias in the trace's meta
re-routes."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import RoutingError
from workbench.routing import RoutingTrace
from workbench.routing.specialization import specialization


def _trace(logits, tags, meta=None) -> RoutingTrace:
    logits = np.asarray(logits, np.float32)
    n = logits.shape[1]
    return RoutingTrace(logits=logits, token_ids=np.arange(n), positions=np.arange(n),
                        sequence_ids=np.zeros(n, int), tags=tags,
                        meta=meta or {"router": "topk_softmax", "top_k": 2})


def test_specialization_of_disjoint_domains_is_one_bit():
    # tag a always picks experts {0, 1}, tag b {2, 3} (k=2 of 4)
    a, b = [3.0, 2.0, 0.0, -1.0], [0.0, -1.0, 3.0, 2.0]
    tr = _trace([[a, a, b, b, b, b]], ["a", "a", "b", "b", "b", "b"])
    s = specialization(tr)
    assert s.groups == ["a", "b"]
    np.testing.assert_allclose(s.distributions[0], [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(s.kl_bits, [[1.0, 1.0]])
    assert s.score == pytest.approx(1.0)
    np.testing.assert_allclose(s.topk_share, [[1.0, 1.0]])
    np.testing.assert_allclose(s.group_max_violation, [[1.0, 1.0]])  # inside a tag: 2 of 4 experts busy
    # all tokens: loads [2, 2, 4, 4] -> MaxVio (4 - 3) / 3
    np.testing.assert_allclose(s.max_violation, [1 / 3])
    np.testing.assert_array_equal(s.counts[0], [[2, 2, 0, 0], [0, 0, 4, 4]])


def test_specialization_is_zero_when_every_domain_routes_alike_and_groups_merge_tags():
    a, b = [3.0, 2.0, 0.0, -1.0], [0.0, -1.0, 3.0, 2.0]
    tr = _trace([[a, b, a, b], [a, a, b, b]], ["x", "x", "y", "y"])
    s = specialization(tr)
    assert s.mutual_information_bits[0] == pytest.approx(0.0)
    assert s.mutual_information_bits[1] == pytest.approx(1.0)
    merged = specialization(tr, groups={"x": "all", "y": "all"})
    assert merged.groups == ["all"] and merged.score == pytest.approx(0.0)
    # untagged tokens are left out
    s2 = specialization(_trace([[a, b, a]], ["x", "", "x"]))
    assert s2.counts.sum() == 4


def test_specialization_reroutes_with_the_bias_in_meta():
    logits = np.zeros((1, 4, 4), np.float32)
    meta = {"router": "deepseek_v3", "top_k": 1, "bias": [[0.0, 0.0, 1.0, 0.0]]}
    s = specialization(_trace(logits, ["a"] * 4, meta))
    np.testing.assert_array_equal(s.counts[0, 0], [0, 0, 4, 0])
    with pytest.raises(RoutingError, match="bias"):
        specialization(_trace(logits, ["a"] * 4), bias=np.zeros(3))
    with pytest.raises(RoutingError, match="no token"):
        specialization(_trace(logits, [""] * 4))
