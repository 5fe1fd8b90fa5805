"""Selection at a precision target: the estimator on hand-made probe sets, values computed by
hand (Wilson bound, z = 1.2816:
lower(k of n) = (p + z²/2n − z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n))."""

import math

import numpy as np
import pytest

from robustft.methods.precision import (
    isotonic_blocks,
    precision_cutoff,
    wilson_lower,
)
from robustft.methods.relabel_accuracy import ceiling_fit, fitted_accuracy, logistic_fit

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


def test_logistic_fit_by_hand():
    # one probe right at 0 and one wrong at 1: the MLE diverges; the ridge keeps it finite
    a, b = logistic_fit(np.array([0.0, 1.0]), np.array([1.0, 0.0]))
    assert math.isfinite(a) and math.isfinite(b) and b < -5
    # balanced, non-separable: 3 of 4 right at 0, 1 of 4 right at 1 -> logit ±ln 3 exactly
    s = np.array([0.0] * 4 + [1.0] * 4)
    y = np.array([1, 1, 1, 0, 1, 0, 0, 0], dtype=float)
    a, b = logistic_fit(s, y, ridge=0.0)
    assert a == pytest.approx(math.log(3), abs=1e-6) and b == pytest.approx(-2 * math.log(3),
                                                                              abs=1e-6)


def test_perfectly_separable():
    right = [s <= 0.60 for s in SCORES]  # 60 right below 0.6, 40 wrong above
    cut = precision_cutoff(SCORES, right, [0.9, 0.05, 0.55, 0.3, 0.65], 0.95)
    assert [(c[0], c[1], c[3]) for c in cut.curve] == [(0.60, 1.0, 60), (1.00, 0.0, 40)]
    # p ≈ 1 at 0.05 and 0.3, a little less at 0.55 (near the step); 0.65 and 0.9 ≈ 0
    assert (cut.cutoff, cut.kept) == (0.55, 3) and 0.95 <= cut.estimate <= 1.0
    assert 0.95 <= cut.lower <= cut.estimate and cut.fit[2] < 0
    assert cut.fit[0] == pytest.approx(1, abs=1e-3)  # no slips: the ceiling is 1
    assert cut.probe_accuracy == 0.6 and "0.5500" in cut.reason
    # the 4th (0.65, p ≈ 0) would leave the mean ≈ 3/4 ≥ 0.70, but a relabel the fit calls
    # more likely wrong than right is never kept, whatever the mean could absorb
    low = precision_cutoff(SCORES, right, [0.9, 0.05, 0.55, 0.3, 0.65], 0.70)
    assert (low.cutoff, low.kept) == (0.55, 3) and "falls below 0.5" in low.reason
    assert "falls below" not in cut.reason  # at 0.95 the target itself stopped the cut


def test_confidently_wrong_answers_cap_the_estimate():
    # below 0.6: every 10th probe wrong whatever its score (54 of 60 right: a plateau at
    # 0.9); above: all wrong. A logistic heads for 1 at low entropy; the ceiling holds 0.9.
    right = [s <= 0.60 and i % 10 != 4 for i, s in enumerate(SCORES)]
    assert sum(right) == 54
    cut = precision_cutoff(SCORES, right, [0.1, 0.2, 0.3], 0.95)
    assert cut.fit[0] == pytest.approx(0.9, abs=0.01)
    assert cut.kept == 0 and "best estimate is 0.90" in cut.reason
    low = precision_cutoff(SCORES, right, [0.1, 0.2, 0.3, 0.9], 0.85)
    assert (low.cutoff, low.kept) == (0.3, 3) and low.estimate == pytest.approx(0.9, abs=0.01)


def test_inseparable_keeps_what_the_target_allows():
    right = [i % 5 != 0 for i in range(100)]  # wrong at 0.01, 0.06, ...: no signal
    cut = precision_cutoff(SCORES, right, [0.1, 0.2, 0.3], 0.95)
    assert [(c[0], c[1], c[3]) for c in cut.curve] == [(1.00, 0.8, 100)]
    assert cut.fit is None  # accuracy does not fall with entropy: every relabel gets 0.8
    assert cut.cutoff is None and cut.kept == 0 and "best estimate is 0.800" in cut.reason
    assert "no significant signal" in cut.reason
    low = precision_cutoff(SCORES, right, [0.1, 0.2, 0.3], 0.70)
    assert (low.cutoff, low.kept, low.estimate) == (0.3, 3, pytest.approx(0.8))
    assert 0.7 <= low.lower < 0.8


def test_too_few_probes_keep_none():
    cut = precision_cutoff([0.1, 0.2, 0.3], [True, True, True], [0.1, 0.2], 0.95)
    assert cut.kept == 0 and cut.cutoff is None and "fewer than the 20" in cut.reason
    assert cut.curve == [(0.3, 1.0, pytest.approx(0.64620, abs=1e-5), 3)]
    empty = precision_cutoff([], [], [0.1], 0.95)
    assert empty.kept == 0 and "0 probes" in empty.reason


def test_estimate_without_support_keeps_none():
    # 20 probes, 19 right: the estimate 0.95 meets 0.95, but resamples with 2-3 wrong probes
    # put the 10% quantile at 0.9 < 0.95
    cut = precision_cutoff([i / 20 for i in range(20)], [i != 7 for i in range(20)], [0.1], 0.95)
    assert cut.kept == 0 and "do not support" in cut.reason


def test_all_right_and_all_wrong():
    cut = precision_cutoff(SCORES, [True] * 100, [0.5, 3.0, math.nan], 0.95)
    # flat 1.0; the unknown entropy is never kept
    assert (cut.cutoff, cut.kept, cut.estimate, cut.lower) == (3.0, 2, 1.0, 1.0)
    wrong = precision_cutoff(SCORES, [False] * 100, [0.5], 0.5)
    assert wrong.kept == 0 and "best estimate is 0.000" in wrong.reason


def test_equal_scores_share_their_fate():
    # a gentle fall: probe i of 200 at score i/200 is right iff frac(0.618·i) < 1 − 0.8·score
    s = np.arange(200) / 200
    right = ((np.arange(200) * 0.6180339887) % 1) < 1 - 0.8 * s
    p1, p2 = fitted_accuracy(s, right.astype(float), np.array([0.1, 0.6]))
    assert p1 > p2 >= 0.5  # both above the floor
    five, four = (3 * p1 + 2 * p2) / 5, (3 * p1 + p2) / 4
    # three candidates at 0.1 and two at 0.6: the cut may not split the tie, so a target
    # between the mean of four and of five keeps three
    cands = [0.1, 0.1, 0.1, 0.6, 0.6]
    cut = precision_cutoff(s, right, cands, (five + four) / 2)
    assert (cut.cutoff, cut.kept) == (0.1, 3)
    # a target the five's estimate and 10% quantile both reach keeps all five (the
    # quantiles are seeded: the same at every target)
    low = precision_cutoff(s, right, cands, 0.5).lower
    cut = precision_cutoff(s, right, cands, min(five, low) - 1e-9)
    assert (cut.cutoff, cut.kept) == (0.6, 5) and cut.estimate == pytest.approx(five)
    assert cut.lower == pytest.approx(low)


def test_a_fall_that_is_not_significant_counts_as_no_signal():
    # 60 probes, 6 wrong: 2 among the low scores, 4 among the high; the fit falls (b < 0), but
    # its likelihood ratio over the flat 54/60 (≈ 1.1) is far below the 1% χ² bound (9.21)
    s = np.linspace(0.0, 1.0, 60)
    y = np.ones(60)
    y[[5, 17, 40, 48, 52, 56]] = 0
    assert ceiling_fit(s, y)[2] < 0
    assert fitted_accuracy(s, y, np.array([0.0, 0.5, 1.0])) == pytest.approx([0.9] * 3)
    # a clear fall: 30 right at low scores, 30 wrong at high ones -> the fitted curve
    y2 = np.r_[np.ones(30), np.zeros(30)]
    p = fitted_accuracy(s, y2, np.array([0.0, 1.0]))
    assert p[0] > 0.95 and p[1] < 0.05
