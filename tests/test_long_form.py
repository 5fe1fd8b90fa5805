"""Long-form responses: the complete-response parser, the matcher agent's verdicts (paraphrases
agree, contradictions do not, an unparseable verdict is a disagreement, never a crash), and the
free-text entropy over the response span, with hand-computed values."""

from __future__ import annotations

import asyncio
import math

import pytest

from eval.scripted_server import Reply
from robustft.graph.runner import curate
from robustft.methods.matching import match_mode
from robustft.methods.parsing import parse_answer, parse_long
from robustft.methods.scoring import mean_token_entropy, tokens_in_span
from robustft.store.runstore import RunStore

from .conftest import write_jsonl
from .test_graph import cfg_for


@pytest.mark.parametrize("text, expected", [
    ("Let me think.\nAnswer: Dear Ann,\nthe meeting moves to 3 pm.\nBest, Bo",
     "Dear Ann,\nthe meeting moves to 3 pm.\nBest, Bo"),
    ("Answer: first\nmore thought\n**Answer:** def f():\n    return 1\n",
     "def f():\n    return 1"),
    ("The sky is blue because of Rayleigh scattering.",
     "The sky is blue because of Rayleigh scattering."),
])
def test_long_parser_keeps_the_whole_response(text, expected):
    p = parse_long(text)
    assert (p.answer, p.status) == (expected, "ok") and text[p.start:p.end] == expected
    assert parse_answer(text, [], long_form=True) == p


@pytest.mark.parametrize("text", ["", None, "   ", "Answer:", "Answer:   \n  "])
def test_long_parser_empty_is_unparsed(text):
    p = parse_long(text)
    assert p.answer is None and p.status == "unparsed"


def test_match_mode():
    assert match_mode("auto", True, True) == "letter"
    assert match_mode("auto", False, False) == "f1"
    assert match_mode("auto", False, True) == "judge"
    assert match_mode("exact", False, True) == "exact"


def test_free_text_entropy_over_the_response_span():
    """Tokens of 'Reason.\\nAnswer: It is red.'; the span is 'It is red.' (4 tokens) with
    top distributions {0.5, 0.5}, {1}, {0.25 ×4}, {1}: H = (ln 2 + 0 + ln 4 + 0) / 4."""
    tokens = ["Reason", ".\n", "Answer", ":", " It", " is", " red", "."]
    text = "".join(tokens)
    p = parse_long(text)
    span = tokens_in_span(tokens, p.start, p.end)
    assert span == [4, 5, 6, 7]
    tops = {4: [(" It", math.log(0.5)), (" This", math.log(0.5))], 5: [(" is", 0.0)],
            6: [(w, math.log(0.25)) for w in (" red", " blue", " green", " pink")],
            7: [(".", 0.0)]}
    h = mean_token_entropy([tops[i] for i in span])
    assert h == pytest.approx((math.log(2) + math.log(4)) / 4) == pytest.approx(0.519860, 1e-5)


PARAPHRASES = {  # given response -> is it right (the scripted judge's view)
    "Water boils at 100 °C at sea level, so the pasta water is ready then.": True,
    "At sea level the pasta water is ready once it boils, at 100 degrees Celsius.": True,
    "Water boils at 90 °C at sea level, so the pasta water is ready then.": False,
}
TRUTH = "At sea level water boils at 100 degrees Celsius, which is when pasta water is ready."
FIXED = "Water boils at 100 °C at sea level, so the pasta water is ready then."


def test_judge_mode_paraphrases_contradictions_and_garbage(tmp_path, serve):
    """Paraphrases are valid alternatives, a wrong number is corrected in place, a judge
    reply that does not parse leaves the sample unsure (kept), never noisy."""
    questions = {f"When is pasta water ready (version {i})?": given
                 for i, given in enumerate([*PARAPHRASES, "UNPARSEABLE judge, please"])}

    def script(body):
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        if "Response under audit:" in user:
            given = user.split("Response under audit:", 1)[1].strip()
            if given.startswith("UNPARSEABLE"):
                return Reply("Hmm, hard to say, both have merits.")
            return Reply("Compared.\nAnswer: " + ("A" if PARAPHRASES[given] else "B"))
        if "Response to correct:" in user:
            return Reply(f"The temperature is wrong.\nAnswer: {FIXED}")
        return Reply(f"Thinking it over.\nAnswer: {TRUTH}")

    srv = serve(script)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": f"w{i}", "question": q, "answer": a}
                                              for i, (q, a) in enumerate(questions.items())])
    summary = asyncio.run(curate(cfg_for(srv.base_url, selection={"beta": 1.0}), inp,
                                 tmp_path / "run"))
    assert summary["fates"] == {"clean": 2, "relabeled-kept": 1, "unsure": 1}
    store = RunStore.open_existing(tmp_path / "run")
    recs = {r["id"]: r for r in store.records()}
    assert [recs[f"w{i}"]["verdict"] for i in range(4)] == ["clean", "clean", "noisy", "unsure"]
    assert [j["verdict"] for j in recs["w3"]["judgements"]] == [None, None]
    assert recs["w2"]["final"] == FIXED  # the complete response, corrected in place
    assert recs["w3"]["final"] == "UNPARSEABLE judge, please"  # kept as it was
    roles = [c.role for _, c in store.calls("w0")]
    assert roles.count("matcher") == 2  # the trace shows the judge's verdicts
