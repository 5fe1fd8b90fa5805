"""Probes whose own label may be wrong: the label-error model and the corrected fit, on
hand-made arrays with values computed by hand."""

import numpy as np
import pytest

from robustft.methods.label_error import fit_label_model, posterior_wrong
from robustft.methods.precision import precision_cutoff
from robustft.methods.relabel_accuracy import ceiling_fit, flat_accuracy, observed


def test_posterior_wrong_by_hand():
    # k = 4, ρ = 0.7, two sources at 0.85, both repeat the label:
    # 0.7·0.05² / (0.7·0.05² + 0.3·0.85²) = 0.00175 / 0.21850
    w = posterior_wrong(np.array([0]), np.array([[0, 0]]), np.array([4]), 0.7,
                        np.array([0.85, 0.85]))
    assert w[0] == pytest.approx(0.00175 / 0.2185, rel=1e-9)
    # k = 3, three sources: 0.7·0.075³ / (0.7·0.075³ + 0.3·0.85³)
    w = posterior_wrong(np.array([2]), np.array([[2, 2, 2]]), np.array([3]), 0.7,
                        np.full(3, 0.85))
    assert w[0] == pytest.approx(0.7 * 0.075 ** 3 / (0.7 * 0.075 ** 3 + 0.3 * 0.85 ** 3))
    # both sources say B against label A (k = 4): T = A 0.3·0.05², T = B (0.7/3)·0.85²,
    # T = C or D (0.7/3)·0.05² each
    t_a, t_b, t_cd = 0.3 * 0.0025, 0.7 / 3 * 0.7225, 0.7 / 3 * 0.0025
    w = posterior_wrong(np.array([0]), np.array([[1, 1]]), np.array([4]), 0.7,
                        np.array([0.85, 0.85]))
    assert w[0] == pytest.approx(1 - t_a / (t_a + t_b + 2 * t_cd))
    # a missing answer (−1) counts for nothing: the same as one source
    one = posterior_wrong(np.array([0]), np.array([[0]]), np.array([4]), 0.7, np.array([0.85]))
    gap = posterior_wrong(np.array([0]), np.array([[-1, 0]]), np.array([4]), 0.7,
                          np.array([0.6, 0.85]))
    assert gap[0] == pytest.approx(one[0]) == pytest.approx(0.7 * 0.05 / (0.035 + 0.255))


def test_rows_with_fewer_options():
    # one row of 2 options in a batch of width 4: the options past its 2 do not count
    # k = 2: a wrong label is the other option: 0.7·0.15 / (0.7·0.15 + 0.3·0.85)
    w = posterior_wrong(np.array([1, 0]), np.array([[1], [0]]), np.array([2, 4]), 0.7,
                        np.array([0.85]))
    assert w[0] == pytest.approx(0.105 / (0.105 + 0.255))
    assert w[1] == pytest.approx(0.7 * 0.05 / (0.035 + 0.255))


@pytest.mark.parametrize(("k", "rho"), [(4, 0.7), (3, 0.7), (4, 0.3)])
def test_fit_recovers_noise_and_accuracy(k, rho):
    # seeded draws from the model itself (3 sources at 0.85, 4,000 rows): ρ and each a_j
    # within 0.03, and the share of wrong labels among rows all three sources confirm
    # within 0.002 of the model's own value for it
    rng = np.random.default_rng(7)
    n, a = 4000, 0.85
    truth = rng.integers(0, k, n)

    def wrong_of(x):
        return (x + rng.integers(1, k, x.size)) % k

    labels = np.where(rng.random(n) < rho, wrong_of(truth), truth)
    answers = np.stack([np.where(rng.random(n) < a, truth, wrong_of(truth)) for _ in range(3)], 1)
    model = fit_label_model(labels, answers, np.full(n, k))
    assert model.noise == pytest.approx(rho, abs=0.03)
    assert np.allclose(model.accuracy, a, atol=0.03)
    pool = (answers == labels[:, None]).all(axis=1)
    each = ((1 - a) / (k - 1)) ** 3
    expected = rho * each / (rho * each + (1 - rho) * a ** 3)
    assert model.wrong[pool].mean() == pytest.approx(expected, abs=0.002)
    assert model.wrong[~pool].mean() > 0.5  # rows a source disputes are mostly mislabelled


def test_observed_mixture_by_hand():
    # (1 − π)·p + π·(1 − p)·h: 0.98·0.9 + 0.02·0.1·0.5 = 0.882 + 0.001
    assert observed(np.array([0.9]), 0.02, 0.5)[0] == pytest.approx(0.883)
    assert observed(np.array([0.9]), 0.0, 0.5)[0] == 0.9


def test_flat_accuracy_undoes_the_mixture():
    # 9 of 10 judged right, π = 0.02, h = 0.5: (0.9 − 0.01) / (1 − 0.02 − 0.01) = 0.89 / 0.97
    y = np.r_[np.ones(9), 0.0]
    assert flat_accuracy(y, 0.02, 0.5) == pytest.approx(0.89 / 0.97, abs=1e-9)
    assert flat_accuracy(y) == 0.9


def _plateau():
    # 80 probes at entropy 0.01–0.5, 72 judged right (every 10th wrong); 20 past 0.8 all wrong
    s = np.r_[np.linspace(0.01, 0.5, 80), np.linspace(0.8, 1.0, 20)]
    y = np.zeros(100)
    y[:80] = 1
    y[np.arange(5, 80, 10)] = 0
    return s, y


def test_ceiling_corrected_for_wrong_labels():
    s, y = _plateau()
    c, _, b = ceiling_fit(s, y)
    assert c == pytest.approx(0.9, abs=1e-4) and b < 0
    # the plateau's judged 0.9 is (1 − π)·c + π·(1 − c)·h with π = 0.02, h = 1/3:
    # c = (0.9 − 0.02/3) / (1 − 0.02 − 0.02/3) = 0.917808
    c, _, b = ceiling_fit(s, y, label_error=0.02, chance=1 / 3)
    assert c == pytest.approx(0.893333 / 0.973333, abs=1e-4) and b < 0


def test_cutoff_with_label_error():
    s, y = _plateau()
    # uncorrected the plateau is 0.900: target 0.91 is out of reach
    plain = precision_cutoff(s, y, [0.1, 0.2, 0.3, 0.9], 0.91)
    assert plain.cutoff is None and plain.label_error == 0.0
    assert "best estimate is 0.900" in plain.reason
    # corrected for 2% wrong labels (3 options) it is 0.918 ≥ 0.91, but 80 plateau probes
    # put its 10% quantile below 0.91; at 0.85 the three plateau relabels are kept, the one
    # past the cliff not; the reason and the cut say what was assumed
    short = precision_cutoff(s, y, [0.1, 0.2, 0.3, 0.9], 0.91, label_error=0.02, chance=1 / 3)
    assert short.cutoff is None and "the estimate is 0.918 but its 10%" in short.reason
    cut = precision_cutoff(s, y, [0.1, 0.2, 0.3, 0.9], 0.85, label_error=0.02, chance=1 / 3)
    assert (cut.cutoff, cut.kept) == (0.3, 3)
    assert cut.estimate == pytest.approx(0.917808, abs=1e-4)
    assert cut.label_error == 0.02 and "probe labels 2.00% wrong, corrected for" in cut.reason
    assert cut.probe_accuracy == 0.72  # as judged, for display
