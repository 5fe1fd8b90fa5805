"""The precision target's second, probe-free estimate: each relabel's posterior under the
one-coin latent-class model with the relabel agents as sources (by hand), and the cut that
the probes' fit and that support must both carry (hand-made arrays, values by hand)."""

import math

import numpy as np
import pytest

from robustft.methods.label_error import posterior_of, posterior_wrong
from robustft.methods.precision import precision_cutoff
from robustft.pipeline.contract import Fate
from robustft.pipeline.fates import Candidate, precision_fates

N = 50
S = np.linspace(0.01, 1.0, N)  # probe entropies that say nothing about the outcome
Y = np.where(np.arange(N) == N // 2, 0.0, 1.0)  # 49 of 50 right: flat accuracy 0.98
X = np.linspace(0.1, 1.0, 10)  # ten relabels, each its own entropy


def test_posterior_of_by_hand():
    # k = 4, ρ = 0.7, label A; sources B, B, A, −1 at 0.85, 0.85, 0.6, (0.9):
    # T = A: 0.3 · 0.05² · 0.6;  T = B: (0.7/3) · 0.85² · (0.4/3);
    # T = C or D: (0.7/3) · 0.05² · (0.4/3) each
    acc = np.array([0.85, 0.85, 0.6, 0.9])
    t_a = 0.3 * 0.05 ** 2 * 0.6
    t_b = 0.7 / 3 * 0.85 ** 2 * 0.4 / 3
    t_c = 0.7 / 3 * 0.05 ** 2 * 0.4 / 3
    total = t_a + t_b + 2 * t_c
    args = (np.array([0, 0]), np.array([[1, 1, 0, -1]] * 2), np.array([4, 4]), 0.7, acc)
    got = posterior_of(*args, np.array([1, 2]))
    assert got.tolist() == pytest.approx([t_b / total, t_c / total], rel=1e-9)
    # the label's own posterior is what posterior_wrong complements
    assert posterior_wrong(*args)[0] == pytest.approx(1 - t_a / total, rel=1e-9)


def _cut(support, target=0.95):
    return precision_cutoff(S, Y, X, target, support=support)


def test_support_bounds_the_kept_set():
    # the fit says 0.98 for every relabel (taken by entropy); the support says 1 for the
    # six lowest, 0.7 for the rest: the mean over the 7 lowest is 6.7/7 = 0.9571 ≥ 0.95,
    # over 8 it is 7.4/8 = 0.925: seven kept, the estimate the lower of the two means
    alone = _cut(None)
    assert alone.kept == 10 and alone.estimate == pytest.approx(0.98) and alone.support is None
    cut = _cut([1.0] * 6 + [0.7] * 4)
    assert cut.kept == 7 and cut.cutoff == pytest.approx(0.7)
    assert cut.support == pytest.approx(6.7 / 7) == cut.estimate
    assert cut.fitted == pytest.approx(0.98)
    # the support does not depend on the probes: the quantile of the lower of the two is
    # the lower of the fit's quantile and the support
    assert cut.lower == pytest.approx(min(alone.lower, 6.7 / 7))
    assert "estimated precision 0.957 (probes' fit 0.980, agreement model 0.957)" in cut.reason


def test_missing_support_takes_the_fitted_accuracy():
    # NaN (free text: no model) stands for the fit's 0.98: 6.98/7, 7.68/8 = 0.96 ≥ 0.95,
    # 8.38/9 = 0.931 below
    cut = _cut([1.0] * 6 + [math.nan] + [0.7] * 3)
    assert cut.kept == 8 and cut.support == pytest.approx(7.68 / 8)


def test_support_above_the_fit_changes_nothing_but_the_record():
    alone, cut = _cut(None), _cut([1.0] * 10)
    assert (cut.kept, cut.cutoff, cut.estimate, cut.lower) == (
        alone.kept, alone.cutoff, alone.estimate, alone.lower)
    assert cut.support == 1.0 and cut.fitted == pytest.approx(0.98)


def test_support_below_the_target_everywhere_keeps_none():
    cut = _cut([0.9] * 10)
    assert cut.cutoff is None and cut.kept == 0
    assert cut.reason.startswith("no cutoff reaches precision 0.95: the best estimate is "
                                 "0.900 (probes' fit 0.980, agreement model 0.900)")


def test_fates_name_both_estimates():
    cands = [Candidate(f"r{i}", i, "A", "B", float(e), "option-logprobs")
             for i, e in enumerate(X)]
    cut = _cut([1.0] * 6 + [0.7] * 4)
    rows = precision_fates(cands, cut)
    assert [r[1] for r in rows] == [Fate.RELABELED_KEPT] * 7 + [Fate.RELABELED_DROPPED] * 3
    assert rows[0][2] == ("label A -> B; entropy 0.1000 (option-logprobs) ≤ cutoff 0.7000 "
                          "(kept relabels' estimated precision 0.957 (probes' fit 0.980, "
                          "agreement model 0.957) ≥ target 0.95; 10% bootstrap quantile "
                          f"{cut.lower:.3f})")
