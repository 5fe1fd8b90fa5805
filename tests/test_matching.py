"""Checker and answer matching (whole strings, never characters)."""

import pytest

from robustft.methods.matching import answers_match, check, exact_match, normalise, token_f1


def test_normalise():
    assert normalise("The 1,200 Yards!") == ["1200", "yards"]
    assert normalise("3.0 points") == ["3", "points"]


def test_token_f1_hand_computed():
    # {"blue", "whale"} vs {"whale"}: p = 1/2, r = 1 → F1 = 2/3
    assert token_f1("the blue whale", "a whale") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0


def test_free_text_compares_whole_strings_not_characters():
    # the reference code iterated over characters: "a" would match anything containing it
    assert not answers_match("a", "banana", is_mc=False)
    assert not answers_match("Paris", "Pairs", is_mc=False)
    assert answers_match("Paris.", "paris", is_mc=False)
    assert answers_match("1,200", "1200", is_mc=False)


def test_mc_letter_match_and_none():
    assert answers_match("b", "B", is_mc=True)
    assert not answers_match(None, "B", is_mc=True)


def test_check_policies():
    assert check({"direct": "A", "reasoning": "A"}, "A", "all", True)[0] == "clean"
    assert check({"direct": "A", "reasoning": "B"}, "A", "all", True)[0] == "noisy"
    assert check({"direct": None, "reasoning": "A"}, "A", "all", True)[0] == "noisy"
    # majority needs strictly more than half
    assert check({"direct": "A", "reasoning": "B"}, "A", "majority", True)[0] == "noisy"
    three = {"direct": "A", "reasoning": "A", "other": "C"}
    assert check(three, "A", "majority", True)[0] == "clean"
    verdict, reason = check({"direct": "C", "reasoning": "C"}, "A", "all", True)
    assert verdict == "noisy" and "0/2" in reason and "direct=C" in reason


def test_exact_match_respects_order():
    assert exact_match('{"x": 1, "y": 2}', '{"x":1,"y":2}', is_mc=False)
    assert not exact_match('{"x": 1, "y": 2}', '{"x": 2, "y": 1}', is_mc=False)
    assert token_f1('{"x": 1, "y": 2}', '{"x": 2, "y": 1}') == 1.0  # the bag is the same
    assert exact_match("b", "B", is_mc=True) and not exact_match(None, "B", is_mc=True)
