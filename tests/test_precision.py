"""Selection at a precision target: the estimator on hand-made probe sets, values computed by
hand (Wilson bound, z = 1.2816:
lower(k of n) = (p + z²/2n − z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n))."""

import math

import numpy as np
import pytest

from robustft.methods.precision import isotonic_blocks, precision_cutoff, wilson_lower

SCORES = [round(0.01 * i, 2) for i in range(1, 101)]  # 0.01 .. 1.00


def test_wilson_lower_by_hand():
    # 60 of 60: z²/n = 0.027375, centre 1.0136875, spread 0.0136875 -> 1 / 1.027375
    assert wilson_lower(np.array([60]), np.array([60]))[0] == pytest.approx(0.97335, abs=1e-5)
    # 80 of 100: (0.8082125 - 0.0519180) / 1.016425
    assert wilson_lower(np.array([80]), np.array([100]))[0] == pytest.approx(0.74407, abs=1e-5)
    assert wilson_lower(np.array([3]), np.array([3]))[0] == pytest.approx(0.64620, abs=1e-5)
    assert wilson_lower(np.array([0]), np.array([0]))[0] == 0.0


def test_isotonic_pools_every_rise():
    hi, acc, n, k = isotonic_blocks([0.1, 0.2, 0.3, 0.4], [True, False, True, False])
    # 1 | 0,1 -> 0.5 | 0: blocks (0.1, 1.0), (0.3, 0.5), (0.4, 0.0)
    assert hi.tolist() == [0.1, 0.3, 0.4] and acc.tolist() == [1.0, 0.5, 0.0]
    assert n.tolist() == [1, 2, 1] and k.tolist() == [1, 1, 0]


def test_perfectly_separable():
    right = [s <= 0.60 for s in SCORES]  # 60 right below 0.6, 40 wrong above
    cut = precision_cutoff(SCORES, right, [0.9, 0.05, 0.55, 0.3, 0.65], 0.95)
    assert [(c[0], c[1], c[3]) for c in cut.curve] == [(0.60, 1.0, 60), (1.00, 0.0, 40)]
    # 3 kept: estimate 1.0 (lower bound 0.97335); a 4th (block 2, accuracy 0) gives 0.75
    assert (cut.cutoff, cut.kept, cut.estimate) == (0.55, 3, 1.0)
    assert cut.lower == pytest.approx(0.97335, abs=1e-5)
    assert cut.probe_accuracy == 0.6 and "0.5500" in cut.reason and "60 of 100" in cut.reason
    # at 0.75 the 4th is kept too (estimate 3/4), not the 5th (3/5)
    assert precision_cutoff(SCORES, right, [0.9, 0.05, 0.55, 0.3, 0.65], 0.75).kept == 4


def test_inseparable_keeps_what_the_target_allows():
    right = [i % 5 != 0 for i in range(100)]  # wrong at 0.01, 0.06, ...: one 0.8 block
    cut = precision_cutoff(SCORES, right, [0.1, 0.2, 0.3], 0.95)
    assert [(c[0], c[1], c[3]) for c in cut.curve] == [(1.00, 0.8, 100)]
    assert cut.cutoff is None and cut.kept == 0
    assert "best estimate is 0.800 (90% lower bound 0.744" in cut.reason
    low = precision_cutoff(SCORES, right, [0.1, 0.2, 0.3], 0.70)
    assert (low.cutoff, low.kept, low.estimate) == (0.3, 3, pytest.approx(0.8))


def test_too_few_probes_keep_none():
    cut = precision_cutoff([0.1, 0.2, 0.3], [True, True, True], [0.1, 0.2], 0.95)
    assert cut.kept == 0 and cut.cutoff is None and "fewer than the 20" in cut.reason
    assert cut.curve == [(0.3, 1.0, pytest.approx(0.64620, abs=1e-5), 3)]
    # 20 probes: 10 right at low scores, 10 wrong above; a relabel in the first block alone
    # rests on 10 probes (unsupported), one in the second on all 20
    few = precision_cutoff([i / 20 for i in range(20)], [i < 10 for i in range(20)],
                           [0.1, 0.9], 0.5)
    assert few.kept == 2 and few.estimate == 0.5
    empty = precision_cutoff([], [], [0.1], 0.95)
    assert empty.kept == 0 and "no probes" in empty.reason


def test_all_right_and_all_wrong():
    cut = precision_cutoff(SCORES, [True] * 100, [0.5, 3.0, math.nan], 0.95)
    # one block 100/100, bound 1/1.016425 = 0.98384; above every probe: the last block;
    # the unknown entropy is never kept
    assert (cut.cutoff, cut.kept, cut.estimate) == (3.0, 2, 1.0)
    assert cut.lower == pytest.approx(0.98384, abs=1e-5)
    wrong = precision_cutoff(SCORES, [False] * 100, [0.5], 0.5)
    assert wrong.kept == 0 and "best estimate is 0.000" in wrong.reason


def test_equal_scores_share_their_fate():
    right = [s <= 0.60 for s in SCORES]
    # three candidates at 0.6 (accuracy 1) and two at 0.7 (accuracy 0): the cut may not
    # split a tie, so the five kept give 3/5 = 0.6 and four (3/4) are never an option
    cut = precision_cutoff(SCORES, right, [0.6, 0.6, 0.6, 0.7, 0.7], 0.6)
    assert (cut.cutoff, cut.kept) == (0.7, 5)
    cut = precision_cutoff(SCORES, right, [0.6, 0.6, 0.6, 0.7, 0.7], 0.65)
    assert (cut.cutoff, cut.kept) == (0.6, 3)
