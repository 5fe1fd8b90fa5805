"""The noise-audit harness: metrics by hand, the noise injector's nesting and seeding, the
simulated endpoint's accuracy and calibration, and one small audit end to end."""

from __future__ import annotations

import csv
import json
import math
import random
import sqlite3
import statistics

import numpy as np
import openai
import pytest

from eval.audit import main as audit_main
from eval.metrics import Outcome, accuracy, audit, confusion, detection, pr_vs_beta
from eval.noise import CORRUPTIONS, corrupt_responses, corrupt_text, flip_choices
from eval.sim_server import SimParams, SimServer, Simulator

# ---- metrics, hand-computed -------------------------------------------------------------


def test_detection_by_hand():
    # flagged rows 0,1,2; noisy rows 1,2,3,4 -> tp 2, P = 2/3, R = 2/4, F1 = 2·(2/3)(1/2)/(7/6)
    d = detection([1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 0])
    assert d["precision"] == pytest.approx(2 / 3)
    assert d["recall"] == pytest.approx(0.5)
    assert d["f1"] == pytest.approx(4 / 7)
    nothing = detection([0, 0], [1, 0])
    assert math.isnan(nothing["precision"]) and nothing["recall"] == 0 and nothing["f1"] == 0


def test_audit_metrics_by_hand():
    o = [Outcome("a", "clean", "A", "A", "A"),            # clean, right
         Outcome("b", "clean", "B", "B", "C"),            # missed noise: kept wrong
         Outcome("c", "relabeled-kept", "D", "C", "C"),   # caught, fixed, kept
         Outcome("d", "relabeled-dropped", "A", "B", "C"),  # caught, wrong relabel, dropped
         Outcome("e", "relabeled-kept", "A", "B", "A"),   # false alarm, broken label kept
         Outcome("f", "error", "A", None, "A")]
    m = audit(o)
    assert m["rows"] == 6 and m["noise_rate"] == pytest.approx(3 / 6)
    assert m["flagged"] == 3
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["relabel_acc"] == pytest.approx(1 / 3)       # c right; d, e wrong
    assert m["relabel_acc_kept"] == pytest.approx(1 / 2)  # c right, e wrong
    assert m["curated_acc"] == pytest.approx(2 / 4)       # a, c right; b, e wrong
    assert m["retention"] == pytest.approx(4 / 6) and m["errors"] == 1
    assert accuracy([], []) != accuracy([], [])  # NaN for no rows


def test_pr_vs_beta_by_hand():
    # entropies sorted: 0.1 (right), 0.2 (wrong), 0.3 (right), 0.4 (right)
    e, right = [0.3, 0.1, 0.4, 0.2], [True, True, True, False]
    p, r = pr_vs_beta(e, right, [0.25, 0.5, 1.0])
    np.testing.assert_allclose(p, [1.0, 0.5, 0.75])
    np.testing.assert_allclose(r, [1 / 3, 1 / 3, 1.0])


def test_confusion_by_hand():
    m = confusion(["A", "A", "B", "B", "C", "Z"], ["A", "B", "B", None, "Q", "A"],
                  ["A", "B", "C"])
    assert m.tolist() == [[1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 1]]


# ---- noise injection --------------------------------------------------------------------


def _mc(n: int, seed: int = 0):
    rng = random.Random(seed)
    letters = [list("ABCD") if i % 5 else list("ABC") for i in range(n)]
    return [rng.choice(x) for x in letters], letters


def test_flips_are_nested_seeded_and_exact():
    labels, letters = _mc(200)
    by_rate = {r: flip_choices(labels, letters, r, seed=7) for r in (0.0, 0.3, 0.5, 0.7, 1.0)}
    flipped = {r: {i for i, (a, b) in enumerate(zip(labels, v, strict=True)) if a != b}
               for r, v in by_rate.items()}
    assert [len(flipped[r]) for r in (0.0, 0.3, 0.5, 0.7, 1.0)] == [0, 60, 100, 140, 200]
    assert flipped[0.3] <= flipped[0.5] <= flipped[0.7]
    for i in flipped[0.3]:  # a row flips to the same wrong label at every rate
        assert by_rate[0.3][i] == by_rate[0.7][i] == by_rate[1.0][i]
    for i, lab in enumerate(by_rate[1.0]):
        assert lab in letters[i] and lab != labels[i]
    assert flip_choices(labels, letters, 0.3, seed=7) == by_rate[0.3]
    assert flip_choices(labels, letters, 0.3, seed=8) != by_rate[0.3]
    with pytest.raises(ValueError):
        flip_choices(labels, letters, 1.5, seed=7)


def test_free_text_corruptions_nested_and_each_changes_the_text():
    texts = [f"The river is {i * 3} km long and flows north" for i in range(1, 41)]
    out30, kinds30 = corrupt_responses(texts, 0.3, seed=1)
    out60, kinds60 = corrupt_responses(texts, 0.6, seed=1)
    changed30 = {i for i, (a, b) in enumerate(zip(texts, out30, strict=True)) if a != b}
    changed60 = {i for i, (a, b) in enumerate(zip(texts, out60, strict=True)) if a != b}
    assert len(changed30) == 12 and len(changed60) == 24 and changed30 <= changed60
    assert all(out30[i] == out60[i] and kinds30[i] in CORRUPTIONS for i in changed30)
    assert corrupt_responses(texts, 0.3, seed=1) == (out30, kinds30)
    rng = random.Random(0)
    t = "The answer is 42 apples"
    assert corrupt_text(t, "number", "x", rng) != t and "42" not in corrupt_text(t, "number",
                                                                                  "x", rng)
    assert corrupt_text(t, "truncate", "x", rng) == "The answer"
    assert corrupt_text(t, "negate", "x", rng) == "The answer is not 42 apples"
    assert corrupt_text(t, "swap", "other", rng) == "other"
    assert corrupt_text("no digits", "number", "other", rng) == "other"  # falls back to swap


# ---- simulated endpoint -----------------------------------------------------------------


def _sim_truth(n: int = 400):
    rng = random.Random(3)
    return {f"Question number {i}?": (rng.choice("ABCD"), list("ABCD")) for i in range(n)}


def _ask(client, model: str, q: str, **kw):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"Question: {q}\nA. a\nB. b"}],
        logprobs=True, top_logprobs=4, **kw)


def test_sim_accuracy_and_calibration_follow_parameters():
    truth = _sim_truth()
    sim = Simulator(truth, SimParams(accuracy=0.8, role_accuracy={"reviewer": 0.5},
                                     calibration=1.0, seed=1))
    with SimServer(sim) as s:
        c = openai.OpenAI(base_url=s.base_url, api_key="x", max_retries=0)
        res = {"direct": [], "reviewer": []}
        for q, (t, _) in truth.items():
            for role in res:
                r = _ask(c, f"sim-{role}", q, temperature=0)
                last = r.choices[0].logprobs.content[-1]
                res[role].append((r.choices[0].message.content.endswith(f"Answer: {t}"),
                                  math.exp(last.logprob)))
        again = _ask(c, "sim-direct", next(iter(truth)), temperature=0)
        with pytest.raises(openai.BadRequestError, match="unknown"):
            _ask(c, "sim-direct", "not in the data")
    acc = {r: statistics.mean(ok for ok, _ in v) for r, v in res.items()}
    assert abs(acc["direct"] - 0.8) < 0.06 and abs(acc["reviewer"] - 0.5) < 0.08
    right = [p for ok, p in res["direct"] if ok]
    wrong = [p for ok, p in res["direct"] if not ok]
    assert min(right) >= 0.6 - 1e-6 and max(wrong) <= 0.6 + 1e-6  # calibration 1: separated
    assert res["direct"][0][0] == again.choices[0].message.content.endswith(
        f"Answer: {truth[next(iter(truth))][0]}")  # temperature 0: deterministic


def test_sim_sampled_requests_differ_and_certainty_judges():
    truth = {"Only question?": ("B", list("ABCD"))}
    sim = Simulator(truth, SimParams(accuracy=0.5, unsure=0.0, seed=2))
    with SimServer(sim) as s:
        c = openai.OpenAI(base_url=s.base_url, api_key="x", max_retries=0)
        answers = {_ask(c, "sim-sampler", "Only question?", temperature=1.0)
                   .choices[0].message.content[-1] for _ in range(30)}
        assert len(answers) > 1  # identical sampled requests get independent draws
        perfect = Simulator(truth, SimParams(accuracy=1.0, unsure=0.0))
        for said, verdict in (("B", "A"), ("C", "B")):
            body = {"model": "sim-certainty", "messages": [{"role": "user", "content":
                    f"Question: Only question?\nProposed response: {said}\nIs it correct?"}]}
            assert perfect(body).text.endswith(f"Answer: {verdict}")
        body = {"model": "sim-judge", "messages": [{"role": "user", "content":
                "Question: Only question?\nResponse A (original): D\n"
                "Response B (candidate): B\nWhich is better?"}]}
        assert perfect(body).text.endswith("Answer: B")


def test_sim_hard_questions_fail_every_role():
    truth = {f"Q{i}?": ("B", list("ABCD")) for i in range(200)}
    sim = Simulator(truth, SimParams(accuracy=1.0, hard_share=0.3, hard_accuracy=0.0, seed=4))
    hard = [q for q in truth if sim.p.hard(q)]
    assert 40 <= len(hard) <= 80  # a seeded ~30%
    for q in list(truth)[:40]:
        for role in ("direct", "context", "reviewer"):
            body = {"model": f"sim-{role}", "messages": [{"role": "user",
                                                          "content": f"Question: {q}"}]}
            right = sim(body).text.endswith("Answer: B")
            assert right == (q not in hard)  # the same questions are hard for every role


# ---- one audit end to end ---------------------------------------------------------------


def test_audit_on_arc_subset_with_the_simulator(arc_dir, tmp_path, capsys):
    out = tmp_path / "audit"
    audit_main(["--clean", str(arc_dir / "labeled.csv"), "--noisy",
                str(arc_dir / "noisy30.csv"), "--sim", "--accuracy", "0.9", "--limit", "40",
                "--concurrency", "32", "--out", str(out),
                "--methods", "no-curation", "robustft", "wo-context", "wo-reviewer",
                "clear-filter"])
    results = json.loads((out / "results.json").read_text())
    r = results["results"]
    assert results["meta"]["rows"] == 40 and "simulation" in results["meta"]["setting"]
    base = r["no-curation"]
    assert base["curated_acc"] == pytest.approx(1 - base["noise_rate"]) and base["flagged"] == 0
    assert r["robustft"]["recall"] > 0.8 and r["robustft"]["curated_acc"] > base["curated_acc"]
    assert r["wo-context"]["sent"] < r["robustft"]["sent"]  # detection came from the cache
    assert r["clear-filter"]["retention"] < 1
    roles = {m: {row[0] for row in sqlite3.connect(out / m / "run.sqlite").execute(
        "SELECT DISTINCT role FROM calls")} for m in ("robustft", "wo-context", "wo-reviewer")}
    assert roles["robustft"] == {"direct", "reasoning", "reflection", "context", "reviewer"}
    assert "context" not in roles["wo-context"] and "reviewer" not in roles["wo-reviewer"]
    with (out / "wo-reviewer" / "decisions.csv").open() as f:
        relabeled = [d for d in csv.DictReader(f) if d["fate"].startswith("relabeled")]
    assert relabeled and all(d["final_label"] == d["context_answer"] and d["entropy"]
                             for d in relabeled)
    report = (out / "report.md").read_text()
    assert "| robustft |" in report and "simulation" in report
    for png in ("entropy.png", "pr_vs_beta.png", "confidence.png", "confusion_robustft.png"):
        assert (out / png).stat().st_size > 5000
    assert "| clear-filter |" in capsys.readouterr().out
