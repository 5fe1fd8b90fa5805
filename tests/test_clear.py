"""CLEAR: confidence math, reply parsers, and the graph against a scripted perfect model."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from eval.scripted_server import Reply, target_question
from robustft.config import RunOptions
from robustft.demo import DEMO_INPUT, DEMO_TRUTH
from robustft.graph.runner import curate
from robustft.methods.confidence import (
    combine,
    cosine,
    observed_consistency,
    parse_verdict,
    reflection_certainty,
    threshold,
)
from robustft.store.runstore import RunStore

from .conftest import write_jsonl
from .test_cli_e2e import run_cli
from .test_graph import TRUTH, cfg_for, mc_rows

INSTRUCTIONS = Path(__file__).parent / "data" / "instructions.jsonl"


def test_confidence_math_hand_computed():
    # α = 0.8: o = (0.8·1 + 0.2·1, 0.8·0.5 + 0, 0) = (1.0, 0.4, 0.0) → O = 1.4 / 3
    assert observed_consistency([1, 0.5, 0], [1, 0, 0], 0.8) == pytest.approx(0.466667, 1e-5)
    assert math.isnan(observed_consistency([], [], 0.8))
    assert reflection_certainty(["correct", "unsure"]) == 0.75
    assert reflection_certainty(["incorrect", None]) == 0.25  # unparsed counts as not sure
    # β = 0.7: 0.7 · 0.466667 + 0.3 · 0.75 = 0.326667 + 0.225
    assert combine(1.4 / 3, 0.75, 0.7) == pytest.approx(0.551667, 1e-5)
    assert combine(float("nan"), 0.75, 0.7) == 0.75 and combine(0.4, float("nan"), 0.7) == 0.4
    assert threshold([0.2, 0.9, float("nan"), 0.5], None) == 0.5
    assert threshold([0.2, 0.9], 0.3) == 0.3
    assert cosine([1, 0], [1, 0]) == 1.0 and cosine([1, 0], [0, 1]) == 0.0
    assert cosine([1, 0], [-1, 0]) == 0.0 and cosine([1, 1], [1, 0]) == pytest.approx(0.707107,
                                                                                     1e-5)


@pytest.mark.parametrize("text,verdict", [
    ("Answer: A", "correct"), ("The response is wrong.\nAnswer: B", "incorrect"),
    ("Hmm.\nAnswer: (C)\n\nQuestion: next", "unsure"), ("I am not sure about this.", "unsure"),
    ("That is incorrect.", "incorrect"), ("Yes, this is correct", "correct"),
    (" No", "incorrect"), (" True", "correct"), (" false.", "incorrect"), ("Yes", "correct"),
    ("", None), (None, None), ("Answer: D", None), ("\x00garbage", None)])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def proposed(body: dict, field: str) -> str:
    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    return user.split(field, 1)[1].split("\n", 1)[0].strip()


def perfect(truth: dict[str, str], judge_sure: bool = True):
    """A perfect model on separate role models: samples and candidates are the truth,
    reflection says correct only for the truth, the judge prefers the truth."""
    def script(body: dict) -> Reply:
        q, role = target_question(body), body["model"]
        if role in ("m-sampler", "m-corrector"):
            return Reply(f"Thinking it through.\nAnswer: {truth[q]}")
        if role == "m-certainty":
            right = proposed(body, "Proposed response:") == truth[q]
            return Reply(f"Checked.\nAnswer: {'A' if right else 'B'}")
        if role == "m-judge":
            cand = proposed(body, "Response B (candidate):") == truth[q]
            return Reply(f"Compared.\nAnswer: {'B' if cand and judge_sure else 'A'}")
        raise AssertionError(f"unexpected role model {role}")
    return script


def clear_cfg(url: str, **clear):
    cfg = cfg_for(url, clear={"k": 3, "judge_k": 3, **clear})
    for role in ("sampler", "certainty", "corrector", "judge"):
        cfg.roles[role].model = f"m-{role}"
    return cfg


def test_perfect_model_flags_flips_and_corrects_them(tmp_path, serve):
    srv = serve(perfect({q: a for q, (a, _) in TRUTH.items()}))
    summary = asyncio.run(curate(clear_cfg(srv.base_url),
                                 write_jsonl(tmp_path / "in.jsonl", mc_rows()), tmp_path / "run",
                                 options=RunOptions(method="clear")))
    assert summary["fates"] == {"clean": 4, "relabeled-kept": 2}
    store = RunStore.open_existing(tmp_path / "run")
    recs = {r["id"]: r for r in store.records()}
    assert recs["q0"]["confidence"] == 1.0 and recs["q1"]["confidence"] == 0.0
    assert recs["q1"]["final"] == "B" and recs["q1"]["judge_confidence"] == 1.0
    assert recs["q1"]["sampled"] == ["B", "B", "B"] and recs["q1"]["verdicts"] == [
        "incorrect", "incorrect"]
    curated = [json.loads(x) for x in (tmp_path / "run" / "curated.jsonl").open()]
    assert {r["question"]: r["answer"] for r in curated} == {q: a for q, (a, _) in TRUTH.items()}


def test_unsure_judge_keeps_the_flip_dropped(tmp_path, serve):
    srv = serve(perfect({q: a for q, (a, _) in TRUTH.items()}, judge_sure=False))
    summary = asyncio.run(curate(clear_cfg(srv.base_url),
                                 write_jsonl(tmp_path / "in.jsonl", mc_rows()), tmp_path / "run",
                                 options=RunOptions(method="clear")))
    assert summary["fates"] == {"clean": 4, "relabeled-dropped": 2}
    rec = RunStore.open_existing(tmp_path / "run").record("q1")
    # judge: O = 0 (never picks the candidate), S = 1 (the candidate is right): C = 0.3 ≤ η
    assert rec["judge_confidence"] == pytest.approx(0.3) and "≤ η 0.8" in rec["reason"]


@pytest.mark.parametrize("similarity", ["match", "embedding"])
def test_free_text_instruction_data(tmp_path, serve, similarity):
    rows = [json.loads(x) for x in INSTRUCTIONS.open()]
    srv = serve(perfect({r["prompt"]: r["truth"] for r in rows}))
    cfg = clear_cfg(srv.base_url, similarity=similarity)
    cfg.data.question_column, cfg.data.answer_column = "prompt", "response"
    summary = asyncio.run(curate(cfg, INSTRUCTIONS, tmp_path / "run",
                                 options=RunOptions(method="clear")))
    assert summary["task"] == "free_text"
    curated = [json.loads(x) for x in (tmp_path / "run" / "curated.jsonl").open()]
    assert all(r["response"] == r["truth"] for r in curated)
    assert len(curated) == len(rows)  # the 3 corrupted responses were corrected
    store = RunStore.open_existing(tmp_path / "run")
    json_row = store.record("ins6")  # a JSON-formatted response, corrupted
    assert json_row["fate"] == "relabeled-kept" and json.loads(json_row["final"]) == {"x": 1,
                                                                                       "y": 2}


def test_cli_method_clear_on_the_demo_dataset(tmp_path, serve):
    truth = {json.loads(t)["id"]: json.loads(t)["answer"] for t in DEMO_TRUTH.open()}
    rows = {json.loads(r)["question"]: truth[json.loads(r)["id"]] for r in DEMO_INPUT.open()}
    srv = serve(perfect(rows))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"endpoint: {{base_url: '{srv.base_url}', model: m}}\n"
                   "roles: {sampler: {model: m-sampler}, certainty: {model: m-certainty}, "
                   "corrector: {model: m-corrector}, judge: {model: m-judge}}\n"
                   "clear: {k: 2, judge_k: 2}\n")
    run = tmp_path / "run"
    res = run_cli("curate", "-i", str(DEMO_INPUT), "-o", str(run), "-c", str(cfg),
                  "--method", "clear")
    assert res.returncode == 0, res.stderr
    from robustft.demo import score_run

    s = score_run(run)
    assert s["precision"] == s["recall"] == 1.0 and s["curated_accuracy"] == 1.0
    story = run_cli("trace", str(run), "cap002", env={"COLUMNS": "200"})
    for needle in ("sampler", "certainty", "corrector", "judge", "confidence", "γ", "Rome"):
        assert needle in story.stdout, needle
