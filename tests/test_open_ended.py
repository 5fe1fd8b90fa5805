"""Open-ended responses through the real scripted HTTP server: noise means *wrong*, not
*different*. A valid alternative is kept as it was, a contradiction is flagged and corrected
minimally (every other character kept), a correction that finds nothing wrong confirms the
response, an unsure or unparseable verdict is never a contradiction, and CLEAR's similarity
is non-contradiction."""

from __future__ import annotations

import asyncio
import csv
import json
import math

import pytest

from eval.scripted_server import Reply
from robustft.agents.context import correction_focus
from robustft.graph.runner import curate
from robustft.methods.diff import changed_spans, word_diff
from robustft.methods.parsing import parse_correction
from robustft.methods.verdicts import (
    confirmation,
    p_contradiction,
    parse_judgement,
    sample_verdict,
)
from robustft.store.runstore import RunStore

from .conftest import write_jsonl
from .test_graph import cfg_for

WRONG = "Calder has 52,000 people and lies on the river Tame, which floods in spring."
FIXED = "Calder has 41,000 people and lies on the river Tame, which floods in spring."
ROWS = {  # id -> (town, the dataset's response)
    "valid": ("Bramford", "Bramford lies on the river Ouse and is known for its glassworks."),
    "wrong": ("Calder", WRONG),
    "unsure": ("Dunmore", "Dunmore is the finest town in the whole of the north country."),
    "garbled": ("Elton", "Elton has a Norman church and a weekly cattle market on Fridays."),
    "confirm": ("Fenwick", "Fenwick was founded in 1203 beside a ford over the river Wear."),
    "unfixed": ("Garth", "Garth has 9,000 people and a ruined castle above its harbour."),
}
VERDICTS = {  # town -> the scripted judge's reply against (direct, reasoning) references
    "Bramford": ("The response names other true facts: a valid alternative.\nAnswer: A",) * 2,
    "Calder": ("It says 52,000 people; Calder has 41,000.\nAnswer: B",) * 2,
    "Dunmore": ("'Finest' is a matter of taste: cannot tell.\nAnswer: C",) * 2,
    "Elton": ("Well, hmm, hard to say either way really.",) * 2,
    "Fenwick": ("It says 1203; the reference says 1230.\nAnswer: B",
                "Founded in 1203 is right.\nAnswer: A"),
    "Garth": ("Garth has 12,000 people.\nAnswer: B",) * 2,
}


def town_of(text: str) -> str:
    return next(t for t, _ in ROWS.values() if t in text)


def script(body: dict) -> Reply:
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    user = body["messages"][-1]["content"]
    town = town_of(user)
    if system.startswith("You check training data"):  # the correctness judge
        direct = "(direct view)" in user.split("Response under audit:")[0]
        reply = VERDICTS[town][0 if direct else -1]
        return Reply(reply, {"A": 0.1, "B": 0.8, "C": 0.1} if reply.endswith("B") else None)
    if system.startswith(("You correct errors", "You are the senior reviewer of a correction")):
        if town == "Calder":
            return Reply(f"The population is wrong.\nAnswer: {FIXED}")
        return Reply("Nothing in it is wrong.\nAnswer: UNCHANGED")
    view = "direct" if "answers exam questions accurately" in system else "reasoning"
    return Reply(f"Let me write it.\nAnswer: {town} is a small town worth a visit ({view} view).")


def rows() -> list[dict]:
    return [{"id": sid, "instruction": f"Introduce {town} to a visitor.", "input": "",
             "output": text} for sid, (town, text) in ROWS.items()]


@pytest.fixture
def open_run(tmp_path, serve):
    srv = serve(script)
    inp = write_jsonl(tmp_path / "in.jsonl", rows())
    summary = asyncio.run(curate(cfg_for(srv.base_url, selection={"beta": 1.0}), inp,
                                 tmp_path / "run"))
    with (tmp_path / "run" / "decisions.csv").open() as f:
        decisions = {d["id"]: d for d in csv.DictReader(f)}
    curated = {r["id"]: r for r in map(json.loads, (tmp_path / "run" / "curated.jsonl").open())}
    return summary, decisions, curated, RunStore.open_existing(tmp_path / "run"), srv


def test_valid_alternative_is_kept_as_it_was(open_run):
    _, decisions, curated, store, _ = open_run
    assert decisions["valid"]["fate"] == "clean"
    assert curated["valid"]["output"] == ROWS["valid"][1]
    judgements = store.record("valid")["judgements"]
    assert [(j["ref"], j["verdict"], j["how"]) for j in judgements] == [
        ("direct", "consistent", "judge"), ("reasoning", "consistent", "judge")]
    assert "valid alternative" in judgements[0]["reason"]


def test_contradiction_is_flagged_and_corrected_minimally(open_run):
    _, decisions, curated, store, srv = open_run
    d = decisions["wrong"]
    assert d["fate"] == "relabeled-kept" and "1 word changed" in d["reason"]
    assert curated["wrong"]["output"] == FIXED  # every other character as the user wrote it
    assert word_diff(WRONG, FIXED) == [("equal", "Calder has "), ("delete", "52,000"),
                                       ("insert", "41,000"),
                                       ("equal", FIXED[len("Calder has 41,000"):])]
    rec = store.record("wrong")
    assert rec["verdict"] == "noisy"
    assert all(j["verdict"] == "contradicts" and j["p_contradiction"] == pytest.approx(0.8)
               for j in rec["judgements"])
    assert "52,000" in rec["verdict_reason"]  # the judge's reason
    # the correction saw the dataset's response, the experts' and the judges' reasons
    asked = [b["messages"][-1]["content"] for b in srv.requests
             if b["messages"][0]["content"].startswith("You correct errors")
             and "Calder" in b["messages"][-1]["content"]]
    assert len(asked) == 1 and WRONG in asked[0] and "(reasoning view)" in asked[0]
    assert "Calder has 41,000" in asked[0]  # the problem the judge named
    assert rec["entropy_source"] == "answer-token-logprobs" and rec["entropy"] == 0.0


def test_unsure_and_unparseable_verdicts_are_kept_never_contradictions(open_run):
    summary, decisions, curated, store, _ = open_run
    for sid in ("unsure", "garbled"):
        assert decisions[sid]["fate"] == "unsure", sid
        assert curated[sid]["output"] == ROWS[sid][1]
        assert store.record(sid)["verdict"] == "unsure"
    assert [j["verdict"] for j in store.record("garbled")["judgements"]] == [None, None]
    assert summary["fates"]["unsure"] == 2


def test_confirmed_when_most_agents_find_nothing_wrong(open_run):
    _, decisions, curated, _, _ = open_run
    d = decisions["confirm"]
    assert d["fate"] == "confirmed" and "3 of 4 agents found nothing wrong" in d["reason"]
    assert curated["confirm"]["output"] == ROWS["confirm"][1]
    d = decisions["unfixed"]  # both judges: wrong; both corrections: nothing to fix
    assert d["fate"] == "relabeled-dropped" and "only 2 of 4" in d["reason"]
    assert "unfixed" not in curated


def test_open_ended_summary_counts(open_run):
    summary, *_ = open_run
    assert summary["fates"] == {"clean": 1, "relabeled-kept": 1, "unsure": 2, "confirmed": 1,
                                "relabeled-dropped": 1}


def test_unsure_can_be_held_out(tmp_path, serve):
    srv = serve(script)
    inp = write_jsonl(tmp_path / "in.jsonl", [r for r in rows() if r["id"] == "unsure"])
    cfg = cfg_for(srv.base_url, detect={"unsure": "review"})
    summary = asyncio.run(curate(cfg, inp, tmp_path / "run"))
    assert summary["fates"] == {"unsure-dropped": 1} and summary["kept"] == 0
    rec = RunStore.open_existing(tmp_path / "run").record("unsure")
    assert "held out until a person reviews it" in rec["reason"]


def clear_script(body: dict) -> Reply:
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    if system.startswith("You check training data"):
        return Reply("It says 52,000 people.\nAnswer: B", {"A": 0.3, "B": 0.6, "C": 0.1})
    if "Proposed response:" in body["messages"][-1]["content"]:  # self-reflection
        return Reply("Answer: A")
    return Reply("Let me write it.\nAnswer: Calder is a town of 41,000 people on the Tame.")


def test_clear_similarity_is_non_contradiction(tmp_path, serve):
    srv = serve(clear_script)
    inp = write_jsonl(tmp_path / "in.jsonl", [
        {"id": "c", "instruction": "Introduce Calder to a visitor.", "input": "",
         "output": WRONG}])
    cfg = cfg_for(srv.base_url, clear={"correct": False, "gamma": 0.5})
    asyncio.run(curate(cfg, inp, tmp_path / "run", options=_clear()))
    rec = RunStore.open_existing(tmp_path / "run").record("c")
    assert rec["similarities"] == pytest.approx([0.4] * 5)  # 1 − P(contradicts) = 1 − 0.6
    assert rec["observed"] == pytest.approx(0.8 * 0.4)  # α·s_i + (1 − α)·r_i, r_i = 0
    assert [j["ref"] for j in rec["judgements"]] == [f"sample {i}" for i in range(1, 6)]


def _clear():
    from robustft.config import RunOptions
    return RunOptions(method="clear")


@pytest.mark.parametrize("text, verdict", [
    ("Other true facts.\nAnswer: A", "consistent"), ("Answer: B (wrong year)", "contradicts"),
    (" C", "unsure"), ("It agrees.\nAnswer: A\n\nResponse under audit: noise", "consistent"),
    ("Looks fine.\nVerdict: consistent", "consistent"), ("Answer: contradicts", "contradicts"),
    ("", None), ("I cannot decide between them.", None), ("Answer: D", None),
])
def test_judgement_parser(text, verdict):
    p = parse_judgement(text)
    assert p.answer == verdict and (p.status == "unparsed") == (verdict is None)


def test_p_contradiction_from_verdict_logprobs():
    top = [(" A", math.log(0.3)), (" B", math.log(0.6)), ("C", math.log(0.05)),
           ("maybe", math.log(0.05))]
    assert p_contradiction("contradicts", top) == pytest.approx(0.6 / 0.95)
    assert (p_contradiction("contradicts", None), p_contradiction("consistent", None),
            p_contradiction("unsure", None), p_contradiction(None, top)) == (1.0, 0.0, 0.5, 0.5)


def test_sample_verdict_and_confirmation():
    c, w, u = "consistent", "contradicts", "unsure"
    assert sample_verdict({"d": c, "r": c}, "all") == "clean"
    assert sample_verdict({"d": c, "r": w}, "all") == "noisy"
    assert sample_verdict({"d": c, "r": u}, "all") == "unsure"
    assert sample_verdict({"d": c, "r": None}, "all") == "unsure"
    assert sample_verdict({"d": c, "r": w}, "majority") == "unsure"
    assert sample_verdict({"a": w, "b": w, "c": c}, "majority") == "noisy"
    assert confirmation([w, c], [False, False]) == (True, 1, 3)
    assert confirmation([w, w], [False, False]) == (False, 2, 2)  # a tie does not clear it
    assert confirmation([w, c], [True, False]) == (False, 2, 2)
    assert confirmation([u, None], [None, False]) == (True, 0, 1)


@pytest.mark.parametrize("text, answer", [
    ("Nothing wrong.\nAnswer: UNCHANGED", "ORIG"), ("Answer: unchanged.", "ORIG"),
    ("Fixed.\nAnswer: Calder has 41,000 people.", "Calder has 41,000 people."),
    ("", None), ("Answer:", None),
])
def test_correction_parser(text, answer):
    assert parse_correction(text, "ORIG").answer == answer


def test_correction_entropy_spans_are_the_changed_words():
    reply = f"The population is wrong.\nAnswer: {FIXED}"
    p = parse_correction(reply, WRONG)
    spans = correction_focus(WRONG)(p)
    assert [reply[s:e] for s, e in spans] == ["41,000"]
    assert changed_spans(WRONG, WRONG) == []


def test_clear_confirms_a_filtered_response_its_corrector_leaves(tmp_path, serve):
    """Filtered (γ above every confidence), the corrector finds nothing wrong and the judges
    of the sampled answers found none: confirmed, kept as it was. Where the judges said
    wrong, the same unchanged correction leaves the sample dropped."""
    def script(body: dict) -> Reply:
        system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
        user = body["messages"][-1]["content"]
        if system.startswith("You check training data"):
            return Reply("Answer: B" if "Calder" in user else "Other true facts.\nAnswer: A")
        if system.startswith("You correct errors"):
            return Reply("Nothing is wrong.\nAnswer: UNCHANGED")
        if "Proposed response:" in user:
            return Reply("Answer: C")
        return Reply(f"Let me write it.\nAnswer: {town_of(user)} is worth a visit.")

    srv = serve(script)
    inp = write_jsonl(tmp_path / "in.jsonl", [r for r in rows() if r["id"] in ("valid", "wrong")])
    cfg = cfg_for(srv.base_url, clear={"gamma": 0.99})
    summary = asyncio.run(curate(cfg, inp, tmp_path / "run", options=_clear()))
    assert summary["fates"] == {"confirmed": 1, "relabeled-dropped": 1}
    with (tmp_path / "run" / "decisions.csv").open() as f:
        d = {r["id"]: r for r in csv.DictReader(f)}
    assert "6 of 6 agents found nothing wrong" in d["valid"]["reason"]
    assert d["valid"]["final_label"] == ROWS["valid"][1]
    assert "only 1 of 6" in d["wrong"]["reason"]
