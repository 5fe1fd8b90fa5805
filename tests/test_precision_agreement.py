"""Selection at a precision target by entropy and by whether the two relabel agents agreed:
the accuracy model's strata and the cut, on hand-made probe sets with values computed by hand
(log-likelihoods of flat accuracies: k·ln p + (n − k)·ln(1 − p))."""

import math

import numpy as np
import pytest

from robustft.methods.precision import Z_SHIFT, agreement_shift, precision_cutoff
from robustft.methods.relabel_accuracy import CHI2_99, accuracy_model, curve_fit
from robustft.pipeline.contract import Fate
from robustft.pipeline.fates import Candidate, precision_fates

N = 50
S = np.linspace(0.01, 1.0, N)  # entropies that say nothing about the outcome below


def _probes(agree_right: int, differ_right: int):
    """N agreeing probes with ``agree_right`` right and N differing ones with
    ``differ_right`` right, spread over S so that entropy carries no signal."""
    agree = np.zeros(N)
    agree[np.linspace(0, N - 1, agree_right).round().astype(int)] = 1
    differ = np.zeros(N)
    differ[np.linspace(0, N - 1, differ_right).round().astype(int)] = 1
    return (np.r_[S, S], np.r_[agree, differ],
            np.r_[np.ones(N, dtype=bool), np.zeros(N, dtype=bool)])


def test_strata_when_agreement_matters():
    # agree 49 of 50, differ 25 of 50, pooled 74 of 100; no entropy signal anywhere
    s, y, a = _probes(49, 25)
    m = accuracy_model(s, y, a)
    l0 = 74 * math.log(0.74) + 26 * math.log(0.26)  # -57.3057
    l1 = 49 * math.log(0.98) + math.log(0.02) + 50 * math.log(0.5)  # -39.5593
    assert m.lr == pytest.approx(2 * (l1 - l0)) == pytest.approx(35.4928, abs=1e-4)
    assert m.lr >= CHI2_99[0]  # one parameter added: two flat accuracies for one
    differ, same = m.strata
    assert (differ.fit, same.fit) == (None, None) and m.pooled.fit is None
    assert (differ.flat, same.flat, m.pooled.flat) == (0.5, 0.98, 0.74)
    x = np.array([0.1, 0.9, 0.1])
    assert m.at(x, np.array([True, True, False])).tolist() == [0.98, 0.98, 0.5]
    assert m.at(x, None).tolist() == [0.74] * 3


def test_one_curve_when_agreement_does_not_matter():
    # agree 45 of 50, differ 43 of 50: L0 = −36.6925, L1 = −36.5023, LR = 0.3804 < 6.635
    s, y, a = _probes(45, 43)
    m = accuracy_model(s, y, a)
    l0 = 88 * math.log(0.88) + 12 * math.log(0.12)
    l1 = (45 * math.log(0.9) + 5 * math.log(0.1) + 43 * math.log(0.86)
          + 7 * math.log(0.14))
    assert m.lr == pytest.approx(2 * (l1 - l0)) == pytest.approx(0.3804, abs=1e-4)
    assert m.strata is None
    assert m.at(np.array([0.1, 0.2]), np.array([True, False])).tolist() == [0.88, 0.88]
    # probes in one stratum only: nothing to compare, one curve
    one = accuracy_model(s[:N], y[:N], a[:N])
    assert one.strata is None and one.lr is None and one.pooled.flat == 0.9


def test_strata_corrected_for_wrong_labels():
    # π = 0.02, h = 1/3: (share − π·h) / (1 − π − π·h) per stratum:
    # agree (0.98 − 0.02/3) / (0.98 − 0.02/3) = 1; differ (0.5 − 0.02/3) / (0.98 − 0.02/3)
    s, y, a = _probes(49, 25)
    differ, same = accuracy_model(s, y, a, 0.02, 1 / 3).strata
    assert same.flat == pytest.approx(1.0, abs=1e-3)
    assert differ.flat == pytest.approx((0.5 - 0.02 / 3) / (0.98 - 0.02 / 3), abs=1e-6)


def test_cut_keeps_the_agreeing_relabels():
    s, y, a = _probes(49, 25)
    scores, agree = [0.2, 0.5, 0.9, 0.1, 0.3], [True, True, True, False, False]
    cut = precision_cutoff(s, y, scores, 0.95, probe_agree=a, agree=agree)
    # the three agreeing relabels at 0.98; adding the two at 0.5 would give 0.788 < 0.95
    assert (cut.kept, cut.estimate, cut.accuracy, cut.cutoff) == (3, 0.98, 0.98, 0.9)
    assert [(t["name"], t["cutoff"], t["kept"], t["probes"]) for t in cut.strata] == [
        ("context and reviewer differ", None, 0, 50),
        ("context and reviewer agree", 0.9, 3, 50)]
    assert cut.reason.startswith("context and reviewer agree: entropy ≤ 0.9000, 50 probes, "
                                 "98% judged right; context and reviewer differ: none kept")
    # at 0.75: all five would give (3·0.98 + 2·0.5)/5 = 0.788, but its 10% quantile falls
    # short of 0.75 (a cut at target 0 keeps them all and reports it); four, the differing
    # relabel of lower entropy joining the agreeing three, give (3·0.98 + 0.5)/4 = 0.86
    every = precision_cutoff(s, y, scores, 0.0, probe_agree=a, agree=agree)
    assert every.kept == 5 and every.estimate == pytest.approx(0.788) and every.lower < 0.75
    assert [t["cutoff"] for t in every.strata] == [0.3, 0.9]
    low = precision_cutoff(s, y, scores, 0.75, probe_agree=a, agree=agree)
    assert low.kept == 4 and low.estimate == pytest.approx(0.86) and low.lower >= 0.75
    assert [t["cutoff"] for t in low.strata] == [0.1, 0.9]
    # entropy alone (the same probes pooled): 0.74 for every relabel, none kept at 0.95
    plain = precision_cutoff(s, y, scores, 0.95)
    assert plain.kept == 0 and plain.strata is None and "best estimate is 0.740" in plain.reason
    with pytest.raises(ValueError, match="agreement"):
        precision_cutoff(s, y, scores, 0.95, probe_agree=a)


def test_the_quantile_must_reach_the_target_and_a_plateau_is_cut_by_entropy():
    # agree 50 of 50 right, differ 38 of 50 (0.76), no entropy signal: 60 agreeing relabels
    # at 1.0 and 40 differing ones at 0.76, a plateau of equal fitted accuracy
    s, y, a = _probes(50, 38)
    xs = np.r_[np.linspace(0.01, 1.0, 60), np.linspace(0.005, 0.995, 40)]
    xa = np.r_[np.ones(60, dtype=bool), np.zeros(40, dtype=bool)]
    # all 100: (60 + 40·0.76)/100 = 0.904 meets 0.90, but resamples of the 50 differing
    # probes put its 10% quantile below it (±0.06 on 0.76, 0.4 of the set): only the part of
    # the plateau whose quantile reaches the target is kept, lowest entropy first
    assert (60 + 40 * 0.76) / 100 == pytest.approx(0.904)
    cut = precision_cutoff(s, y, xs, 0.90, probe_agree=a, agree=xa)
    differ, same = cut.strata
    k = differ["kept"]
    assert same["kept"] == 60 and 0 < k < 40 and cut.kept == 60 + k
    assert differ["cutoff"] == pytest.approx(xs[60:][k - 1])  # the k lowest entropies
    assert cut.estimate == pytest.approx((60 + 0.76 * k) / (60 + k))
    assert cut.lower >= 0.90 and cut.accuracy == pytest.approx(0.76)
    # one more differing relabel: its quantile falls short (a cut at target 0 keeps all 100
    # and reports their quantile, seeded: the same at every target)
    every = precision_cutoff(s, y, xs, 0.0, probe_agree=a, agree=xa)
    assert every.kept == 100 and every.lower < 0.90 <= every.estimate


def test_order_is_fitted_accuracy_across_strata():
    # both strata fall with entropy: the agreeing relabels right up to 0.8, the differing
    # ones up to 0.4; fitted accuracy orders them across strata
    rng = np.random.default_rng(3)
    s = np.r_[rng.uniform(0, 1, 150), rng.uniform(0, 1, 150)]
    a = np.r_[np.ones(150, dtype=bool), np.zeros(150, dtype=bool)]
    y = np.where(a, s < 0.8, s < 0.4).astype(float)
    x = np.linspace(0.02, 0.98, 25)
    xs, xa = np.r_[x, x], np.r_[np.ones(25, dtype=bool), np.zeros(25, dtype=bool)]
    cut = precision_cutoff(s, y, xs, 0.9, probe_agree=a, agree=xa)
    differ, same = cut.strata
    assert differ["cutoff"] < 0.45 and 0.7 < same["cutoff"] < 0.85
    p = accuracy_model(s, y, a).at(xs, xa)
    kept = np.where(xa, xs <= same["cutoff"], xs <= differ["cutoff"])
    assert p[kept].min() == pytest.approx(cut.accuracy) and p[kept].min() > p[~kept].max()
    assert cut.kept == kept.sum() and cut.estimate == pytest.approx(p[kept].mean())


def test_fates_follow_each_stratum_cutoff():
    s, y, a = _probes(49, 25)
    cands = [Candidate(f"r{i}", i, "A", "B", e, "option-logprobs")
             for i, e in enumerate([0.2, 0.9, 0.1, None])]
    agree = {"r0": True, "r1": True, "r2": False, "r3": True}
    cut = precision_cutoff(s, y, [0.2, 0.9, 0.1, math.nan], 0.95, probe_agree=a,
                           agree=[True, True, False, True])
    rows = precision_fates(cands, cut, agree)
    assert [r[1] for r in rows] == [Fate.RELABELED_KEPT, Fate.RELABELED_KEPT,
                                    Fate.RELABELED_DROPPED, Fate.RELABELED_DROPPED]
    assert rows[0][2] == ("label A -> B; entropy 0.2000 (option-logprobs) ≤ cutoff 0.9000 "
                          "where context and reviewer agree (fitted accuracy ≥ 0.980; kept "
                          "relabels' estimated precision 0.980 ≥ target 0.95; 10% bootstrap "
                          f"quantile {cut.lower:.3f})")
    assert rows[2][2] == ("label A -> B; entropy 0.1000 (option-logprobs); none kept where "
                          "context and reviewer differ at precision 0.95 (fitted accuracy "
                          "below 0.980)")
    assert "entropy unknown" in rows[3][2]


def test_relabels_that_agree_less_often_than_the_probes_are_flagged():
    # probes agree 30 of 40, relabels 50 of 100: pooled 80/140, se = √(4/7·3/7·(1/40 + 1/100))
    # = 0.092582, z = 0.25 / 0.092582 = 2.7003 ≥ 2.326
    shift = agreement_shift(np.r_[np.ones(30), np.zeros(10)] > 0,
                            np.r_[np.ones(50), np.zeros(50)] > 0)
    assert shift == {"probes": 0.75, "relabels": 0.5, "z": pytest.approx(2.7003, abs=1e-4)}
    assert shift["z"] >= Z_SHIFT
    # in a cut: the same probes as above (half agree), relabels mostly differing
    s, y, a = _probes(49, 25)
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95] * 4
    agree = [i % 10 == 0 for i in range(40)]  # 4 of 40 agree, against 50 of 100 probes
    cut = precision_cutoff(s, y, scores, 0.95, probe_agree=a, agree=agree)
    assert cut.agreement["relabels"] == 0.1 and cut.agreement["z"] > Z_SHIFT
    assert cut.kept == 4 and cut.reason.endswith(
        f"(z = {cut.agreement['z']:.1f}): the relabels are harder than the probes, and the "
        "estimate is likely optimistic")
    same = precision_cutoff(s, y, [0.2, 0.5], 0.95, probe_agree=a, agree=[True, False])
    assert same.agreement["z"] == 0.0 and "harder" not in same.reason


def _cliff(seed: int = 25, n: int = 60):
    """n probes right below entropy 0.95 and wrong past it, 3% wrong anywhere (seeded)."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.05, 1.1, n)
    y = (s < 0.95).astype(float)
    y[rng.random(n) < 0.03] = 0
    return s, y


def test_a_stratum_fit_starts_from_the_pooled_curve_too():
    # the EM from its own start stops at a gentle slope (a local maximum); started from a
    # steep curve it finds the cliff, a higher likelihood, and keeps that
    s, y = _cliff()
    plain = curve_fit(s, y)
    both = curve_fit(s, y, start=(0.97, 230.0, -240.0))
    assert plain.fit[2] > -20 and both.fit[2] < -100
    assert both.log_lik > plain.log_lik + 4
