"""The open-ended world, its dataset generator and the simulated endpoint that answers the
free-text prompts (through the real HTTP server and the real prompt files)."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import openai
import pytest

from eval.open_sim import OpenParams, OpenSimServer, OpenSimulator, section
from eval.open_world import World, default_world, write_dataset
from robustft.agents.corruptor import parse_corruption
from robustft.config import DataConfig
from robustft.data.files import load_samples
from robustft.llm.prompt_files import load_prompts
from robustft.methods.parsing import parse_long

SAMENESS = Path(__file__).resolve().parent.parent / "eval" / "prompts_sameness"
WORLD = default_world()
PROMPTS = load_prompts()
FREE = {"options": [], "letters": "", "long_answer": True}


def _truth(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# ---- the world and its datasets ----------------------------------------------------------

def test_valid_rows_state_only_true_facts_wrong_rows_exactly_one(tmp_path):
    data, truth = write_dataset(WORLD, tmp_path, 300, 0.3, seed=3)
    assert sum(not t["valid"] for t in truth) == 90
    lengths = set()
    for t in truth:
        stated, errors = WORLD.stated(t["response"]), WORLD.errors(t["entity"], t["response"])
        assert len(stated) == 3
        lengths.add(len(t["response"]))
        if t["valid"]:
            assert errors == []
        else:
            assert [(e.attribute, e.value) for e in errors] == [(t["attribute"], t["wrong"])]
            assert WORLD.entities[t["entity"]][t["attribute"]] == t["true"] != t["wrong"]
    assert len(lengths) > 50  # responses differ, not one template
    # two valid responses about one entity differ in content, not only wording
    by_entity: dict[str, set] = {}
    for t in truth:
        if t["valid"]:
            by_entity.setdefault(t["entity"], set()).add(
                frozenset(f.attribute for f in WORLD.stated(t["response"])))
    assert any(len(v) > 1 for v in by_entity.values())


def test_dataset_is_seeded_and_nested(tmp_path):
    a, _ = write_dataset(WORLD, tmp_path / "a", 100, 0.3, seed=5)
    b, _ = write_dataset(WORLD, tmp_path / "b", 100, 0.3, seed=5)
    c, _ = write_dataset(WORLD, tmp_path / "c", 100, 0.3, seed=6)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    low = _truth(tmp_path / "a" / "truth.jsonl")
    _, high = write_dataset(WORLD, tmp_path / "d", 100, 0.5, seed=5)
    for x, y in zip(low, high, strict=True):
        assert x["valid"] or x == y  # wrong at 30% -> wrong the same way at 50%
    assert World.load(tmp_path / "a" / "world.json").to_dict() == WORLD.to_dict()


@pytest.mark.parametrize("shape", ["alpaca", "messages"])
def test_both_shapes_detected_as_long_form_without_config(tmp_path, shape):
    data, truth = write_dataset(WORLD, tmp_path, 40, 0.3, seed=1, shape=shape)
    samples, errors, detected = load_samples(data, DataConfig())
    assert errors == [] and detected.format == shape and detected.long_form
    assert [s.id for s in samples] == [t["id"] for t in truth]
    assert [s.label for s in samples] == [t["response"] for t in truth]
    assert all(WORLD.entity_in(s.question) == t["entity"]
               for s, t in zip(samples, truth, strict=True))


def test_ambiguous_worlds_are_refused():
    attrs = {"river": {"values": ["Oder", "Elbe", "Rhine"], "sentences": ["On the {value}."]},
             "sight": {"values": ["Elbe Bridge", "Tower", "Gate"],
                       "sentences": ["See the {value}."]}}
    ents = {"Xa": {"river": "Oder", "sight": "Tower"}}
    with pytest.raises(ValueError, match="'Elbe' occurs inside 'Elbe Bridge'"):
        World("town", attrs, ents, ["Tell me about {name}."], facts=(1, 2))
    attrs["sight"]["values"][0] = "Old Bridge"
    with pytest.raises(ValueError, match="template .* contains the world string 'Oder'"):
        World("town", attrs, ents, ["Tell me about {name} on the Oder."], facts=(1, 2))


# ---- another world, judged in phrasing we did not write ----------------------------------

PLANETS = World(
    "planet",
    {"moons": {"values": ["2 moons", "5 moons", "no moons"], "sentences": ["It has {value}."]},
     "colour": {"values": ["crimson", "teal", "amber"],
                "sentences": ["{name} glows {value}."]},
     "discoverer": {"values": ["Ilse Varga", "Tomas Reyes", "Mei Tanaka"],
                    "sentences": ["{value} found it."]}},
    {"Qorvath": {"moons": "5 moons", "colour": "teal", "discoverer": "Mei Tanaka"},
     "Zelune": {"moons": "no moons", "colour": "amber", "discoverer": "Ilse Varga"}},
    ["Explain {name} to a child."], facts=(2, 3))


def test_facts_are_read_from_any_phrasing():
    text = ("Astronomers credit MEI TANAKA with spotting Qorvath; through a telescope the\n"
            "planet looks Crimson and is circled by 5 moons, a 5 moonshot aside.")
    assert [(f.attribute, f.value) for f in PLANETS.stated(text)] == [
        ("discoverer", "Mei Tanaka"), ("colour", "crimson"), ("moons", "5 moons")]
    [err] = PLANETS.errors("Qorvath", text)
    fixed = PLANETS.replace(text, err, "teal")
    assert fixed == text.replace("Crimson", "Teal") and PLANETS.is_right("Qorvath", fixed)


def test_shipped_worlds_validate():
    paths = sorted((Path(__file__).resolve().parent.parent / "eval" / "worlds").glob("*.json"))
    assert paths
    for path in paths:
        assert len(World.load(path).entities) >= 20  # load validates


def test_data_someone_else_wrote_is_judged_by_the_world(tmp_path):
    from eval.open_audit import truth_of

    rows = [{"instruction": "Tell a child about Qorvath, please.", "output":
             "Mei Tanaka spotted it first, and its 5 moons shine teal... well, it is teal."},
            {"instruction": "Zelune in one line?", "output": "Amber skies, NO MOONS at all."},
            {"instruction": "And Zelune again?", "output": "Zelune glows crimson."}]
    path = tmp_path / "theirs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = [(t["entity"], t["valid"]) for t in truth_of(PLANETS, path)]
    assert got == [("Qorvath", True), ("Zelune", True), ("Zelune", False)]


# ---- the simulated endpoint through HTTP -------------------------------------------------

def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


def _ask(client, role: str, messages, **kw):
    r = client.chat.completions.create(model=f"sim-{role}", messages=messages, logprobs=True,
                                       top_logprobs=3, temperature=kw.pop("temperature", 0),
                                       **kw)
    return r.choices[0]


def _pair(world: World, entity: str, seed: int) -> tuple[str, str, str]:
    """(question, a valid response, the same response with one wrong fact)."""
    rng = random.Random(seed)
    question = "\n\n".join(x for x in world.prompt(entity, rng) if x)
    valid = world.compose(entity, rng)
    return question, valid, world.corrupt(entity, valid, rng)[0]


def _verify(question, reference, response, prompts=PROMPTS):
    return prompts["verify"].render(question=question, reference=reference, response=response,
                                    **FREE)


def _letter_prob(choice) -> float:
    content = choice.logprobs.content
    i = max(i for i, t in enumerate(content) if t.token.strip() in "ABC" and t.token.strip())
    return math.exp(content[i].logprob)


def test_verdict_says_contradicts_on_a_wrong_response_and_names_the_fact():
    sim = OpenSimulator(WORLD, OpenParams(accuracy=1.0))
    ent = "Ashford"
    q, valid, wrong = _pair(WORLD, ent, 1)
    [err] = WORLD.errors(ent, wrong)
    with OpenSimServer(sim) as s:
        c = _client(s)
        other = WORLD.compose(ent, random.Random(9))  # a valid alternative as the reference
        bad = _ask(c, "matcher", _verify(q, other, wrong))
        good = _ask(c, "matcher", _verify(q, wrong, valid))  # a wrong reference: still A
    assert bad.message.content.endswith("Answer: B") and err.value in bad.message.content
    assert WORLD.entities[ent][err.attribute] in bad.message.content
    assert good.message.content.endswith("Answer: A")
    assert _letter_prob(bad) >= 0.6 and _letter_prob(good) >= 0.6


def test_verdict_accuracy_unsure_share_and_calibration_follow_parameters():
    sim = OpenSimulator(WORLD, OpenParams(accuracy=0.7, judge_unsure=0.4, calibration=1.0,
                                          seed=2))
    rows = []
    with OpenSimServer(sim) as s:
        c = _client(s)
        for i, ent in enumerate(sorted(WORLD.entities)[:100]):
            q, valid, wrong = _pair(WORLD, ent, i)
            response = wrong if i % 2 else valid
            ch = _ask(c, "matcher", _verify(q, valid, response))
            rows.append((ch.message.content[-1], "B" if i % 2 else "A", _letter_prob(ch)))
    right = [p for said, truth, p in rows if said == truth]
    wrong = [said for said, truth, _ in rows if said != truth]
    assert abs(len(right) / len(rows) - 0.7) < 0.1
    assert 0.15 < wrong.count("C") / len(wrong) < 0.7
    assert min(right) >= 0.6 and max(p for s, t, p in rows if s != t) <= 0.6 + 1e-9


def _correction(name, question, response, **extra):
    values = {"references": [], "problems": [], "examples": [], "proposal": "", **extra}
    p = PROMPTS[name]
    return p.render(question=question, response=response, **FREE,
                    **{k: v for k, v in values.items() if k in p.variables})


@pytest.mark.parametrize("role,prompt", [("context", "correct_context"),
                                         ("reviewer", "correct_review"),
                                         ("corrector", "correct_context")])
def test_correction_changes_only_the_wrong_value(role, prompt):
    sim = OpenSimulator(WORLD, OpenParams(accuracy=1.0))
    ent = "Torholm"
    q, valid, wrong = _pair(WORLD, ent, 4)
    wrong = wrong.replace(". ", ".\n\n", 1)  # multi-line: still the last section
    [err] = WORLD.errors(ent, wrong)
    examples = [{"question": "Tell me about Ashford.", "answer": WORLD.compose("Ashford",
                                                                               random.Random(1))}]
    with OpenSimServer(sim) as s:
        c = _client(s)
        fixed = _ask(c, role, _correction(prompt, q, wrong, examples=examples,
                                          references=[valid], problems=["a wrong fact"],
                                          proposal="UNCHANGED"))
        kept = _ask(c, role, _correction(prompt, q, valid, examples=examples))
    text = parse_long(fixed.message.content).answer
    want = WORLD.replace(wrong, err, WORLD.entities[ent][err.attribute])
    assert text == want and WORLD.is_right(ent, text)
    assert len(text) - len(wrong) == len(want) - len(wrong)
    assert parse_long(kept.message.content).answer == "UNCHANGED"
    # the changed words carry the confidence, every other token is near-certain
    toks = fixed.logprobs.content
    unsure = [t for t in toks if t.logprob < -0.02]
    new_value = WORLD.entities[ent][err.attribute]
    assert "".join(t.token for t in unsure).strip().lower() == new_value.lower()
    assert all(0.6 <= math.exp(t.logprob) <= 0.99 and len(t.top_logprobs) == 3 for t in unsure)


def test_wrong_corrections_miss_or_misplace_and_break_valid_responses():
    sim = OpenSimulator(WORLD, OpenParams(accuracy=0.0, miss=0.5, calibration=1.0, seed=3))
    outcomes = {"missed": 0, "other wrong": 0}
    with OpenSimServer(sim) as s:
        c = _client(s)
        for i, ent in enumerate(sorted(WORLD.entities)[:40]):
            q, valid, wrong = _pair(WORLD, ent, i)
            out = parse_long(_ask(c, "context", _correction("correct_context", q, wrong))
                             .message.content).answer
            if out == "UNCHANGED":
                outcomes["missed"] += 1
            else:
                assert len(WORLD.errors(ent, out)) == 1 and out != wrong
                outcomes["other wrong"] += 1
            broken = parse_long(_ask(c, "context", _correction("correct_context", q, valid))
                                .message.content).answer
            assert len(WORLD.errors(ent, broken)) == 1  # a valid response made wrong
    assert min(outcomes.values()) >= 8


def test_generation_answers_the_entity_with_the_given_accuracy():
    sim = OpenSimulator(WORLD, OpenParams(accuracy=0.7, seed=5))
    right = []
    with OpenSimServer(sim) as s:
        c = _client(s)
        for ent in sorted(WORLD.entities)[:100]:
            q = f"Write a short paragraph about {ent} for a travel guide."
            role = "direct" if len(right) % 2 else "reasoning"
            ch = _ask(c, role, PROMPTS[role].render(question=q, **FREE))
            text = parse_long(ch.message.content).answer
            assert len(WORLD.stated(text)) == 3 and len(WORLD.errors(ent, text)) <= 1
            right.append(WORLD.is_right(ent, text))
        sampled = {parse_long(_ask(c, "sampler", [{"role": "user", "content": "Question: "
                                                  "Tell me about Ashford."}],
                                   temperature=1.0).message.content).answer for _ in range(8)}
        with pytest.raises(openai.BadRequestError, match="no entity"):
            _ask(c, "direct", [{"role": "user", "content": "Question: Tell me about Paris."}])
        q, valid, _ = _pair(WORLD, "Ashford", 3)
        planted = []
        for seed_text in (valid, valid + "\n\nEnjoy."):
            ch = _ask(c, "corruptor", PROMPTS["corrupt"].render(question=q, response=seed_text,
                                                                 **FREE))
            planted.append(parse_corruption(ch.message.content, seed_text).answer)
    assert abs(statistics.mean(right) - 0.7) < 0.1
    assert len(sampled) > 1  # identical sampled requests get independent draws
    for text in planted:  # the corruptor (accuracy 0.7 here) plants one wrong fact, or none
        assert text is None or len(WORLD.errors("Ashford", text)) == 1
    assert any(planted)


def test_clear_certainty_and_judge_read_multi_line_responses():
    sim = OpenSimulator(WORLD, OpenParams(accuracy=1.0, unsure=0.0))
    ent = "Halstead"
    q, valid, wrong = _pair(WORLD, ent, 7)
    valid, wrong = valid + "\n\nSee you there.", wrong + "\n\nSee you there."
    with OpenSimServer(sim) as s:
        c = _client(s)
        for name in ("clear_reflect", "clear_reflect_sure"):
            for response, verdict in ((valid, "A"), (wrong, "B")):
                ch = _ask(c, "certainty", PROMPTS[name].render(question=q, response=response,
                                                               **FREE))
                assert ch.message.content.endswith(f"Answer: {verdict}")
        for original, candidate, pick in ((wrong, valid, "B"), (valid, wrong, "A")):
            ch = _ask(c, "judge", PROMPTS["clear_judge"].render(
                question=q, original=original, candidate=candidate, **FREE))
            assert ch.message.content.endswith(f"Answer: {pick}")


def test_old_sameness_prompts_ask_for_the_same_claims_and_fresh_answers():
    old = load_prompts(SAMENESS)
    sim = OpenSimulator(WORLD, OpenParams(accuracy=1.0))
    ent = "Wynford"
    rng = random.Random(3)
    q = f"Introduce {ent} to a visitor."
    a = WORLD.compose(ent, rng)
    facts = {f.attribute for f in WORLD.stated(a)}
    b = next(t for t in (WORLD.compose(ent, rng) for _ in range(50))
             if {f.attribute for f in WORLD.stated(t)} != facts)
    reworded = next(t for t in (WORLD.compose(ent, rng) for _ in range(500))
                    if {f.attribute for f in WORLD.stated(t)} == facts and t != a)
    with OpenSimServer(sim) as s:
        c = _client(s)
        assert _ask(c, "matcher", _verify(q, b, a, old)).message.content.endswith("Answer: B")
        assert _ask(c, "matcher", _verify(q, reworded, a, old)).message.content.endswith(
            "Answer: A")
        for role, name in (("context", "correct_context"), ("reviewer", "correct_review")):
            msgs = old[name].render(question=q, examples=[], references=[b], proposal=a,
                                    **FREE)
            assert "Response to correct" not in json.dumps(msgs)
            fresh = parse_long(_ask(c, role, msgs).message.content).answer
            assert fresh != "UNCHANGED" and WORLD.is_right(ent, fresh)
            assert len(WORLD.stated(fresh)) == 3


def test_section_reads_up_to_the_next_known_header():
    text = "Prompt:\nTell me.\n\nReference response:\nOne.\nTwo.\n\nResponse under audit:\n" \
           "Three.\nQuestion: not a header here"
    assert section(text, "Prompt:") == "Tell me."
    assert section(text, "Reference response:") == "One.\nTwo."
    assert section(text, "Response under audit:") == "Three.\nQuestion: not a header here"
    assert section(text, "Proposed response:") is None


# ---- the audit end to end ---------------------------------------------------------------

def test_open_audit_end_to_end_perfect_endpoint(tmp_path, capsys):
    """A perfect simulated endpoint: the correctness judge keeps every valid alternative
    and flags every wrong row; the old sameness prompts flag valid alternatives."""
    from eval.open_audit import main as audit_main

    audit_main(["--noise", "0.3", "--rows", "24", "--accuracy", "1.0", "--methods",
                "robustft", "robustft-old", "--out", str(tmp_path), "--concurrency", "16"])
    printed = capsys.readouterr().out
    assert "| RobustFT (default) |" in printed and "### 30% noise" in printed
    res = json.loads((tmp_path / "results.json").read_text())["results"]["30% noise"]
    new, old = res["robustft"], res["robustft-old"]
    assert new["valid"] + new["wrong"] == 24 and new["wrong"] == 8  # 4 of 12 per shape
    assert new["valid rows kept unchanged"] == 1.0 and new["valid rows rewritten"] == 0.0
    assert new["wrong rows flagged"] == 1.0 and new["wrong rows kept unchanged"] == 0.0
    assert old["valid rows kept unchanged"] < 0.5  # valid alternatives "differ"
    assert 0 < new["calls_per_row"] < 20
