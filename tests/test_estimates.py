"""The audit estimates (robustft.methods.estimates) against hand-computed values, and the
seeded draw of the audit sample (robustft.pipeline.audit.draw)."""

from __future__ import annotations

import pytest

from robustft.methods.estimates import (
    Part,
    curated_accuracy,
    detection_estimates,
    share,
    wilson,
)
from robustft.pipeline.audit import draw


def test_wilson_by_hand():
    # 0 of 50: centre = half = (z²/2n)/(1 + z²/n) = 0.0192073/1.0768292 = 0.0356370
    lo, hi = wilson(0, 50)
    assert lo == 0.0 and hi == pytest.approx(0.071348, abs=1e-5)
    # 45 of 50: centre (0.9 + 0.0384146)/1.0768292 = 0.871461;
    # half 1.820125 · sqrt(0.0018 + 0.0003841) = 0.085063
    lo, hi = wilson(45, 50)
    assert lo == pytest.approx(0.786398, abs=1e-5) and hi == pytest.approx(0.956524, abs=1e-5)
    assert share(0, 0).value is None and share(45, 50).value == 0.9
    # 1 event in 50: Wilson's lower bound (0.00354) is too high; the exact Poisson one is
    # -ln(0.975)/50 = 0.000506; the other end stays Wilson's (0.10495); mirrored at 49 of 50
    lo, hi = wilson(1, 50)
    assert lo == pytest.approx(0.0253178 / 50, rel=1e-4) and hi == pytest.approx(0.104954, abs=1e-5)
    assert wilson(49, 50) == pytest.approx((1 - hi, 1 - lo))
    assert wilson(3, 50)[0] == pytest.approx(0.020615, abs=1e-5)  # 3 in 50: Wilson's own


def test_detection_estimates_by_hand():
    # 200 flagged, 40 of 50 judged wrong (P 0.8); 800 unflagged, 5 of 50 wrong (q 0.1):
    # noisy 160 + 80 = 240 of 1000; recall 160/240
    e = detection_estimates(200, 800, 40, 50, 5, 50, seed=3)
    assert e["precision"].value == 0.8 and e["missed_noise"].value == 0.1
    assert e["noisy"].value == pytest.approx(240) and e["noise_rate"].value == pytest.approx(0.24)
    assert e["recall"].value == pytest.approx(2 / 3)
    for k in ("precision", "missed_noise", "noisy", "noise_rate", "recall"):
        assert e[k].low < e[k].value < e[k].high
    # the noise rate's interval: P and q each within their own Wilson intervals
    (plo, phi), (qlo, qhi) = wilson(40, 50), wilson(5, 50)
    assert 0.2 * plo + 0.8 * qlo < e["noise_rate"].low
    assert e["noise_rate"].high < 0.2 * phi + 0.8 * qhi
    # recall is high when unflagged noise is low; the interval is ~ [0.45, 0.85] here
    assert 0.4 < e["recall"].low < 0.55 and 0.78 < e["recall"].high < 0.9
    # seeded: the same draw gives the same interval; another seed nearly the same
    assert detection_estimates(200, 800, 40, 50, 5, 50, seed=3) == e
    other = detection_estimates(200, 800, 40, 50, 5, 50, seed=4)["recall"]
    assert other != e["recall"] and abs(other.low - e["recall"].low) < 0.03


def test_detection_estimates_edges():
    # nobody found an error among the unflagged: recall 1, but the interval reaches down
    e = detection_estimates(100, 900, 45, 50, 0, 50)
    assert e["recall"].value == 1.0 and e["recall"].high == 1.0 and e["recall"].low < 0.7
    assert e["missed_noise"].low == 0.0
    # a stratum with rows but no judged row: no derived figure yet
    e = detection_estimates(100, 900, 45, 50, 0, 0)
    assert e["precision"].value == 0.9 and e["recall"].value is None
    assert e["noise_rate"].value is None
    # nothing flagged: recall 0 (no flagged term), the noise rate from q alone
    e = detection_estimates(0, 1000, 0, 0, 10, 50)
    assert e["precision"].value is None and e["recall"].value == 0.0
    assert e["noise_rate"].value == pytest.approx(0.2)
    # no error anywhere: no recall to speak of
    assert detection_estimates(10, 10, 0, 5, 0, 5)["recall"].value is None


def test_curated_accuracy_by_hand():
    # 780 kept unflagged, 45 of 50 right; 20 confirmed, 8 of 10 right; 100 changed and kept,
    # 30 of 40 final responses right: (702 + 16 + 75) / 900
    parts = [Part(780, 45, 50), Part(20, 8, 10), Part(100, 30, 40)]
    a = curated_accuracy(parts, seed=1)
    assert a.value == pytest.approx(793 / 900)
    assert a.low < a.value < a.high and a.high - a.low < 0.2
    # dominated by the big part: about as wide as its own share's interval, not wider
    lo, hi = wilson(45, 50)
    assert a.high - a.low < hi - lo + 0.02
    assert curated_accuracy([Part(0, 0, 0), Part(10, 10, 10)]).value == 1.0
    assert curated_accuracy([Part(5, 0, 0), Part(10, 10, 10)]).value is None  # unjudged part
    assert curated_accuracy([]).value is None


def test_draw_is_seeded_mixed_and_extends_as_a_prefix():
    ids = {"flagged": [f"f{i}" for i in range(30)], "unflagged": [f"u{i}" for i in range(200)]}
    sizes = {"flagged": 10, "unflagged": 10}
    a = draw(ids, sizes, 7, {})
    assert a == draw(ids, sizes, 7, {}) and a != draw(ids, sizes, 8, {})
    assert sorted(s for _, s in a) == ["flagged"] * 10 + ["unflagged"] * 10
    assert len({sid for sid, _ in a}) == 20
    # the strata are mixed in the order shown (not all flagged rows first)
    assert [s for _, s in a] != sorted(s for _, s in a)
    # growing the sample adds rows; the first ones stay (the same permutation's prefix)
    taken = {"flagged": {i for i, s in a if s == "flagged"},
             "unflagged": {i for i, s in a if s == "unflagged"}}
    more = draw(ids, {"flagged": 12, "unflagged": 15}, 7, taken)
    bigger = draw(ids, {"flagged": 12, "unflagged": 15}, 7, {})
    assert {i for i, _ in a} | {i for i, _ in more} == {i for i, _ in bigger}
    # a stratum smaller than its size is taken whole; a full sample draws nothing more
    small = draw({"flagged": ["x", "y"], "unflagged": []}, sizes, 0, {})
    assert sorted(small) == [("x", "flagged"), ("y", "flagged")]
    assert draw(ids, sizes, 7, taken) == []
