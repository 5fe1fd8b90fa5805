"""Entropy, confidence fallback and selection math against hand-computed values."""

import math

import numpy as np
import pytest

from robustft.methods.scoring import (
    agreement_entropy,
    answer_entropy,
    mean_nll,
    mean_token_entropy,
    option_distribution,
    shannon_entropy,
    token_at,
    tokens_in_span,
)
from robustft.methods.selection import n_keep, select_lowest

LN = math.log


def test_option_distribution_merges_variants_and_renormalises():
    top = [(" B", LN(0.5)), ("B", LN(0.1)), (" A", LN(0.2)), (" the", LN(0.2))]
    p = option_distribution(top, ["A", "B", "C"])
    # letters carry 0.2 (A) and 0.6 (B) of 0.8 → [0.25, 0.75, 0]
    assert p == pytest.approx([0.25, 0.75, 0.0])


def test_option_distribution_without_letters_is_nan():
    assert np.isnan(option_distribution([(" the", -0.1)], ["A", "B"])).all()


def test_shannon_entropy_hand_computed():
    assert shannon_entropy([0.5, 0.5]) == pytest.approx(0.693147, abs=1e-6)
    # -(0.7 ln 0.7 + 0.2 ln 0.2 + 0.1 ln 0.1) = 0.249672 + 0.321888 + 0.230259
    assert shannon_entropy([0.7, 0.2, 0.1]) == pytest.approx(0.801819, abs=1e-6)
    assert shannon_entropy([1.0, 0.0]) == 0.0
    assert math.isnan(shannon_entropy([]))


def test_answer_entropy_methods():
    top = [(" A", LN(0.5)), (" B", LN(0.5))]
    e, src, dist = answer_entropy("options", ["A", "B"], top, 0.3, None)
    assert (round(e, 6), src, dist) == (0.693147, "option-logprobs", {"A": 0.5, "B": 0.5})
    assert answer_entropy("robustft-official", ["A", "B"], top, 0.3, None)[:2] == (0.3,
                                                                                 "mean-nll")
    e, src, _ = answer_entropy("options", ["A"], None, None, None)
    assert math.isnan(e) and src == "none"
    assert answer_entropy("options", [], None, None, 0.2)[:2] == (0.2, "answer-token-logprobs")


def test_token_entropies_and_mean_nll():
    assert mean_token_entropy([[("a", LN(0.5)), ("b", LN(0.5))], [("c", 0.0)]]) == \
        pytest.approx(0.693147 / 2, abs=1e-6)
    assert mean_nll([-1.0, -2.0, -3.0]) == 2.0


def test_agreement_entropy_fallback():
    assert agreement_entropy(["A", "A", "A"]) == 0.0
    # 2-vs-1: -(2/3 ln 2/3 + 1/3 ln 1/3) = 0.636514
    assert agreement_entropy(["A", "B", "A"]) == pytest.approx(0.636514, abs=1e-6)
    assert agreement_entropy(["A", None, None]) == pytest.approx(math.log(3))


def test_token_alignment():
    toks = ["Answer", ":", " B", "\n"]
    assert token_at(toks, 8) == 2 and token_at(toks, 0) == 0 and token_at(toks, 99) is None
    assert tokens_in_span(toks, 7, 9) == [1, 2] or tokens_in_span(toks, 7, 9) == [2]


def test_n_keep_rounds_up():
    assert [n_keep(n, 0.5) for n in (0, 1, 2, 3, 10)] == [0, 1, 1, 2, 5]
    assert n_keep(10, 0.0) == 0 and n_keep(10, 1.0) == 10 and n_keep(10, 0.3) == 3
    with pytest.raises(ValueError):
        n_keep(3, 1.5)


def test_select_lowest_ties_and_nan():
    e = [0.9, 0.1, math.nan, 0.1, 0.5]
    assert select_lowest(e, 0.4).tolist() == [False, True, False, True, False]
    # ties at 0.1 break by position; NaN sorts last
    assert select_lowest(e, 0.2).tolist() == [False, True, False, False, False]
    assert select_lowest(e, 1.0).tolist() == [True] * 5
    assert select_lowest(e, 0.8).tolist() == [True, True, False, True, True]
    assert select_lowest([], 0.5).tolist() == []
