"""Answer parsers: clean, trailing noise, empty, malformed — they never raise."""

import pytest

from robustft.methods.parsing import parse_answer, parse_choice, parse_free

L4 = ["A", "B", "C", "D"]


@pytest.mark.parametrize("text,expected", [
    ("Answer: B", "B"),
    ("Reasoning...\nAnswer: C", "C"),
    ("**Answer:** (d)", "D"),
    ("Answer: B. Because plants need light.", "B"),
    ("The answer is: A", "A"),
    ("C", "C"),
    ("(B)", "B"),
    ("Answer: A\nWait, that is wrong.\nAnswer: D", "D"),  # the last answer wins
    ("Answer: B\n\nQuestion: what next?\nSome trailing noise", "B"),
])
def test_choice_clean_and_noisy(text, expected):
    p = parse_choice(text, L4)
    assert (p.answer, p.status) == (expected, "ok")
    assert text[p.start:p.end].upper() == expected


@pytest.mark.parametrize("text", ["", None, "   \n", "Answer:", "Answer: E", "I cannot tell.",
                                  "Answer: all of the above", "Answer: 42", "\x00\x01garbage"])
def test_choice_empty_and_malformed(text):
    p = parse_choice(text, L4)
    assert p.answer is None and p.status == "unparsed"
    assert p.reasoning == (text or "").strip()


def test_choice_reasoning_is_text_before_answer_line():
    p = parse_choice("Step 1: x\nStep 2: y\nAnswer: A", L4)
    assert p.reasoning == "Step 1: x\nStep 2: y"


def test_choice_skips_letters_outside_options():
    assert parse_choice("Answer: C\nAnswer: E", ["A", "B", "C"]).answer == "C"


@pytest.mark.parametrize("text,expected", [
    ("Answer: 1,200 yards", "1,200 yards"),
    ("They scored twice.\nAnswer: two touchdowns.", "two touchdowns."),
    ("**Answer:** Paris", "Paris"),
    ("Paris", "Paris"),
    ("Answer: Paris\nanswer: Lyon", "Lyon"),
])
def test_free_clean_and_noisy(text, expected):
    p = parse_free(text)
    assert (p.answer, p.status) == (expected, "ok")
    assert text[p.start:p.end] == expected


@pytest.mark.parametrize("text", ["", None, "Answer:   ", "line one\nline two without answer",
                                  " ".join(["word"] * 30)])
def test_free_empty_and_malformed(text):
    assert parse_free(text).status == "unparsed"


def test_parse_answer_dispatches_on_letters():
    assert parse_answer("Answer: B", L4).answer == "B"
    assert parse_answer("Answer: B", []).answer == "B"
    assert parse_answer("Answer: blue whale", []).answer == "blue whale"
