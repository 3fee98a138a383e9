"""Draft-length schedules and the PEARL timeline simulation."""

import numpy as np
import pytest

from workbench.errors import SpeculativeError
from workbench.speculative.costs import monotone_costs
from workbench.speculative.pearl import pearl_timeline
from workbench.speculative.schedules import make_schedule, relative_costs
from workbench.speculative.tree import DraftTree


def test_fixed_and_hugging_face_heuristic():
    assert make_schedule("fixed", gamma=3).length() == 3 and make_schedule(7).length() == 7
    h = make_schedule("heuristic", start=5)
    h.update(5, 5)
    assert h.length() == 7            # all accepted: +2
    h.update(7, 2)
    assert h.length() == 6            # a rejection: -1
    for _ in range(10):
        h.update(h.length(), 0)
    assert h.length() == 1            # never below 1


def test_specdecpp_cuts_paths_when_rejection_becomes_likely():
    s = make_schedule("specdecpp", threshold=0.5)
    t = DraftTree.from_parents([1, 2, 3, 4, 5], [-1, 0, 1, 2, -1], [0.9, 0.9, 0.3, 0.9, 0.2],
                               model_based=True)
    cut = s.trim(t)
    # calibration starts at 1: survival 0.9, 0.81, 0.243 (cut), below it cut too; the second root child 0.2 (cut)
    assert cut.tokens.tolist() == [1, 2]
    s.update(10, 2)                    # poorly calibrated drafter: even the first steps get cut
    assert s.trim(t).tokens.tolist() == [1]


def test_thompson_sampling_drafts_longer_when_acceptance_is_high():
    hi, lo = make_schedule("thompson", seed=1), make_schedule("thompson", seed=1)
    for _ in range(50):
        hi.update(4, 4)
        lo.update(4, 0)
    assert np.mean([hi.length() for _ in range(20)]) > np.mean([lo.length() for _ in range(20)]) + 3
    # a drafter that is never right: plain steps (length 0) win over drafting
    assert [lo.length() for _ in range(20)].count(0) >= 18


def test_thompson_follows_the_verify_cost_curve():
    # the interpolation: measured sizes exact, between them linear, past the last one its last slope
    rel = relative_costs({0: 0.02, 4: 0.025, 8: 0.04}, 10)
    assert rel[[0, 4, 8]] == pytest.approx([1.0, 1.25, 2.0])
    assert rel[2] == pytest.approx(1.125) and rel[10] == pytest.approx(2.375)
    # a flat curve up to 4 nodes and a cliff after it (an MKL CPU): a drafter right 3 times in 4 drafts 4 tokens,
    # while the constant-overhead model drafts as long as it may
    cliff = make_schedule("thompson", costs={0: 1.0, 4: 1.05, 5: 1.9, 16: 2.4}, seed=3)
    const = make_schedule("thompson", costs=None, seed=3)      # 1 + verify_overhead for every length
    for s in (cliff, const):
        for _ in range(300):
            s.update(4, 3)
    assert {cliff.length() for _ in range(20)} == {4}
    assert min(const.length() for _ in range(20)) >= 10
    # "measured" (the default) binds to the runner's curve; before binding it falls back to the constant
    m = make_schedule("thompson")
    assert m.pass_costs()[1] == pytest.approx(1.3)

    class Runner:            # a runner whose curve was already measured
        _verify_costs = {0: 0.02, 1: 0.02, 2: 0.021, 16: 0.06}

    m.bind(Runner())
    assert m.pass_costs()[2] == pytest.approx(1.05)
    with pytest.raises(SpeculativeError, match="plain step"):
        relative_costs({1: 0.02, 4: 0.03}, 4)


def test_measured_costs_are_made_non_decreasing():
    got = monotone_costs({6: 0.04, 0: 0.04, 4: 0.045, 2: 0.039})
    assert list(got) == [0, 2, 4, 6]
    assert list(got.values()) == pytest.approx([0.039, 0.039, 0.04, 0.04])
    assert monotone_costs({0: 0.02, 8: 0.03}) == {0: 0.02, 8: 0.03}


def test_schedule_bad_input():
    with pytest.raises(SpeculativeError, match="unknown schedule"):
        make_schedule("nope")
    with pytest.raises(SpeculativeError, match="gamma"):
        make_schedule("fixed", gamma=0)
    with pytest.raises(SpeculativeError, match="threshold"):
        make_schedule("specdecpp", threshold=1.5)
    with pytest.raises(SpeculativeError, match="unexpected keyword"):
        make_schedule("fixed", depth=3)


def test_pearl_overlaps_drafting_with_verification():
    tl = pearl_timeline([4, 4, 4], [4, 0, 2], draft_seconds=0.01, verify_seconds=0.04)
    assert tl.sequential_seconds == pytest.approx(0.24)
    assert tl.pearl_seconds == pytest.approx(0.20)       # step 1's draft was made during step 0's verification
    assert tl.speedup > 1
    # lanes never overlap themselves in the sequential schedule
    ends = [e for e in tl.sequential if e[0] == "verify"]
    assert all(a[2] <= b[1] for a, b in zip(ends, ends[1:]))
    # nothing accepted and long drafts: pre-verify stops each draft after its first token
    rej = pearl_timeline([8] * 5, [0] * 5, 0.01, 0.02)
    assert rej.pearl_seconds < rej.sequential_seconds
    with pytest.raises(SpeculativeError):
        pearl_timeline([1, 2], [2, 0], 0.01, 0.02)
