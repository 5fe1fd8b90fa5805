"""Planted errors (canaries): the pure draws and figures (hand-computed), the corruptor's
parser, and whole runs against the scripted server: canaries are flagged and fixed like any
row, never reach an output, never move a real row's fate, and no prompt reveals one."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from eval.scripted_server import Reply, mc_reply, target_question
from eval.sim_server import SimParams, SimServer, Simulator
from robustft.agents.corruptor import parse_corruption
from robustft.config import RunOptions
from robustft.data.files import load_samples
from robustft.graph.methods import METHODS
from robustft.graph.runner import curate
from robustft.llm.prompt_files import load_prompts
from robustft.methods.canaries import (
    CanaryOutcome,
    canary_count,
    canary_report,
    describe,
    draw_sources,
    other_answer,
    wilson_interval,
    wrong_option,
)
from robustft.pipeline.plan import plan_calls
from robustft.store.canaries import CanaryStore
from robustft.store.runstore import RunStore

from .conftest import long_form_script, noisy_mc_file, sim_curate, write_jsonl
from .test_graph import cfg_for


def test_canary_count_rounds_the_share_and_caps_it():
    assert canary_count(1778, 0.02, 300) == 36  # 35.56
    assert canary_count(100_000, 0.02, 300) == 300
    assert canary_count(24, 0.02, 300) == 0 and canary_count(25, 0.02, 300) == 1  # 0.48, 0.5
    assert canary_count(1778, 0.0, 300) == 0 and canary_count(1778, 0.02, 0) == 0


def test_draws_are_seeded_nested_and_in_pool_order():
    pool = [f"r{i}" for i in range(50)]
    five = draw_sources(pool, 5, seed=0)
    assert five == draw_sources(pool, 5, seed=0) and len(five) == 5
    assert five == sorted(five, key=pool.index)
    assert set(five) < set(draw_sources(pool, 6, seed=0))
    assert five != draw_sources(pool, 5, seed=1)
    assert draw_sources(pool[:3], 5, seed=0) == pool[:3]


def test_wrong_option_is_uniform_among_the_wrong_ones():
    picks = Counter(wrong_option("B", "ABCD", 0, f"s{i}") for i in range(3000))
    assert set(picks) == {"A", "C", "D"}
    assert all(abs(n / 3000 - 1 / 3) < 0.04 for n in picks.values())
    assert wrong_option("A", "A", 0, "s") is None
    assert wrong_option("a", "AB", 0, "s") == "B"


def test_other_answer_never_matches_the_label():
    answers = ["Paris", "paris.", "Lyon", "Marseille", ""]
    picks = {other_answer("Paris", answers, 0, f"s{i}") for i in range(200)}
    assert picks == {"Lyon", "Marseille"}
    assert other_answer("Paris", ["Paris", "The Paris"], 0, "s") is None


def test_wilson_interval_by_hand():
    # 20/40: centre (0.5 + z²/80)/(1 + z²/40) = 0.5, half-width 1.788227·0.0827662 = 0.148004
    lo, hi = wilson_interval(20, 40)
    assert lo == pytest.approx(0.351996, abs=1e-5) and hi == pytest.approx(0.648004, abs=1e-5)
    lo, hi = wilson_interval(0, 5)  # (z²/10)/(1 + z²/5) = 0.217241 either side
    assert lo == 0.0 and hi == pytest.approx(0.43448, abs=1e-5)
    assert wilson_interval(3, 3)[1] == 1.0 and wilson_interval(0, 0) is None


def test_report_counts_recall_over_finished_and_fixed_over_relabeled():
    out = [CanaryOutcome("choice", "noisy", "A", "A", True),  # flagged, fixed
           CanaryOutcome("choice", "noisy", "B", "C", True),  # flagged, wrong relabel
           CanaryOutcome("choice", "noisy", "B", None, False),  # flagged, relabel failed
           CanaryOutcome("short", "clean", "Paris"),  # missed
           CanaryOutcome("long", "noisy", "The box is red.", "the box is red", True),
           CanaryOutcome("choice", "error", "A")]  # not in any denominator
    r = canary_report(out, planned=7)
    assert r["recall"]["k"] == 4 and r["recall"]["n"] == 5 and r["recall"]["share"] == 0.8
    assert r["fixed"]["k"] == 2 and r["fixed"]["n"] == 3
    assert r["by_kind"] == {"choice": 4, "short": 1, "long": 1} and r["planned"] == 7
    assert r["recall"]["ci95"] == pytest.approx(list(wilson_interval(4, 5)))
    lines = describe(r)
    assert "recall (share flagged): 0.800 (4/5" in lines[1] and "upper bound" in lines[3]


@pytest.mark.parametrize("reply, expected", [
    ("Changed the year.\n<changed>Rome was founded in 953 BC.</changed>",
     "Rome was founded in 953 BC."),  # clean
    ("<changed>\nRome was founded\nin 953 BC.\n</changed>\n\nLet me know if you need more!",
     "Rome was founded\nin 953 BC."),  # trailing noise, multi-line response
    ("Rome was founded in 953 BC.</changed>", "Rome was founded in 953 BC."),  # base prompt
    ("<changed>first</changed> then <changed>Rome was founded in 953 BC.</changed> ok",
     "Rome was founded in 953 BC."),  # the last one wins
    ("", None), (None, None), ("<changed>  </changed>", None),  # empty
    ("<changed>Rome was founded in 953 BC.", None),  # malformed: never closed
    ("Here it is: Rome was founded in 953 BC.", None),  # malformed: no tags
    ("<changed>rome was founded in 753 BC</changed>", None),  # nothing changed
])
def test_corruption_parser(reply, expected):
    p = parse_corruption(reply, "Rome was founded in 753 BC.")
    assert p.answer == expected
    assert p.status == ("ok" if expected else "unparsed")
    if expected:
        assert reply[p.start:p.end] == expected
    else:
        assert p.reasoning == (reply or "").strip()  # the raw text is kept


# ---- whole runs ---------------------------------------------------------------------------
MC = {f"Q{i}: which letter is number {i}?": "ABCD"[i * 7 % 4] for i in range(60)}
MC_FLIPS = {i for i in range(60) if i % 6 == 0}


def mc_file(tmp_path):
    rows = [{"id": f"r{i}", "question": q, "options": ["w", "x", "y", "z"],
             "answer": "ABCD"[("ABCD".index(t) + 1) % 4] if i in MC_FLIPS else t}
            for i, (q, t) in enumerate(MC.items())]
    return write_jsonl(tmp_path / "in.jsonl", rows)


def mc_truth(body: dict) -> Reply:
    return mc_reply(MC[target_question(body)], list("ABCD"), confidence=0.9)


def test_mc_canaries_are_flagged_and_fixed_and_stay_out_of_every_output(tmp_path, serve):
    srv = serve(mc_truth)
    inp = mc_file(tmp_path)
    cfg = cfg_for(srv.base_url, audit={"canaries": 0.1}, selection={"beta": 1.0})
    summary = asyncio.run(curate(cfg, inp, tmp_path / "run"))
    c = summary["canaries"]
    assert c["planted"] == c["planned"] == 6 and c["by_kind"] == {"choice": 6}
    assert (c["recall"]["k"], c["recall"]["n"]) == (6, 6)
    assert (c["fixed"]["k"], c["fixed"]["n"]) == (6, 6)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["canaries"] == c
    # the agents cannot tell: no request mentions a canary, and a canary's neighbours
    # leave its source row out (the same question would otherwise be shown with its answer)
    assert not any("canary" in json.dumps(b).lower() for b in srv.requests)
    store = RunStore.open_existing(tmp_path / "run")
    canaries = CanaryStore(store).all()
    assert len(canaries) == 6 and all(x["stage"] == "done" for x in canaries.values())
    for cid, x in canaries.items():
        assert x["sample"]["label"] != x["original"]  # planted: another option
        context = [call for _, call in store.calls(cid) if call.role == "context"]
        text = context[0].messages[-1]["content"]
        assert text.count(x["sample"]["question"]) == 1
        # the experts' requests repeat the source row's: served from the cache
        assert all(call.cached for _, call in store.calls(cid)
                   if call.role in ("direct", "reasoning", "reflection"))
    assert store.sample_count() == 60 and sum(summary["fates"].values()) == 60
    store.close()
    # the dry-run plan counts the canaries' endpoint calls (their experts' are cache hits)
    samples, _, _ = load_samples(inp, cfg.data)
    planned = {(r["role"], r["prompt"]): r["calls"] for r in plan_calls(
        cfg, load_prompts(None), samples, METHODS["robustft"]) if r["stage"].startswith("canary")}
    sent = Counter((call.role, call.prompt) for cid in canaries
                   for _, call in RunStore.open_existing(tmp_path / "run").calls(cid)
                   if not call.cached)
    assert planned == dict(sent) == {("context", "context"): 6, ("reviewer", "reviewer"): 6}
    # no output holds a canary, and every real row's fate is what a run without them gives
    off = asyncio.run(curate(cfg_for(srv.base_url, audit={"canaries": 0},
                                     selection={"beta": 1.0}), inp, tmp_path / "off"))
    assert "canaries" not in off and off["fates"] == summary["fates"]
    for name in ("decisions.csv", "curated.jsonl", "sft.jsonl"):
        assert (tmp_path / "run" / name).read_text() == (tmp_path / "off" / name).read_text()


def test_a_rerun_reuses_the_canaries_and_zero_turns_them_off(tmp_path, serve):
    srv = serve(mc_truth)
    inp = mc_file(tmp_path)
    cfg = cfg_for(srv.base_url, audit={"canaries": 0.05})
    first = asyncio.run(curate(cfg, inp, tmp_path / "run"))
    n = len(srv.requests)
    again = asyncio.run(curate(cfg, inp, tmp_path / "run"))
    assert len(srv.requests) == n and again["canaries"] == first["canaries"]
    off = asyncio.run(curate(cfg_for(srv.base_url, audit={"canaries": 0}), inp,
                             tmp_path / "run"))
    assert "canaries" not in off


LONG = {f"Describe box {i}.": f"Box {i} is a small red box made of oak wood." for i in range(30)}


def long_script(body: dict) -> Reply:
    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    if "Correct response:" in user:  # the corruptor
        response = user.split("Correct response:\n", 1)[1].strip()
        return Reply("Changed the colour.\n<changed>" + response.replace("red", "green")
                     + "</changed>\nHope this helps.")
    return long_form_script(LONG)(body)


def test_long_form_canaries_carry_one_changed_fact_from_the_corruptor(tmp_path, serve):
    srv = serve(long_script)
    rows = [{"id": f"d{i}", "question": q, "answer": a} for i, (q, a) in enumerate(LONG.items())]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = cfg_for(srv.base_url, audit={"canaries": 0.1})
    summary = asyncio.run(curate(cfg, inp, tmp_path / "run"))
    c = summary["canaries"]
    assert c["by_kind"] == {"long": 3} and c["recall"]["k"] == c["recall"]["n"] == 3
    assert c["fixed"]["k"] == c["fixed"]["n"] == 3
    assert summary["fates"] == {"clean": 30}
    store = RunStore.open_existing(tmp_path / "run")
    for x in CanaryStore(store).all().values():
        assert x["sample"]["label"] == x["original"].replace("red", "green")
        roles = [call.role for _, call in store.calls(x["id"])]
        assert roles.count("corruptor") == 1 and roles.count("matcher") == 2
    assert summary["by_role"]["corruptor"]["calls"] == 3


def test_a_source_the_corruptor_cannot_change_is_replaced_by_the_next_draw(tmp_path, serve):
    def script(body):
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        box = int(user.split("Describe box ", 1)[1].split(".", 1)[0])
        if "Correct response:" in user and box % 2 == 0:
            return Reply("I would rather not change anything.")  # malformed: not planted
        return long_script(body)

    srv = serve(script)
    rows = [{"id": f"d{i}", "question": q, "answer": a} for i, (q, a) in enumerate(LONG.items())]
    summary = asyncio.run(curate(cfg_for(srv.base_url, audit={"canaries": 0.2}),
                                 write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "run"))
    c = summary["canaries"]
    assert c["planned"] == c["planted"] == c["recall"]["n"] == 6 and c["unplanted"] >= 1
    store = RunStore.open_existing(tmp_path / "run")
    kept = [x for x in CanaryStore(store).all().values() if x["stage"] == "done"]
    assert all(int(x["source"][1:]) % 2 == 1 for x in kept)


def test_short_answer_canaries_get_another_rows_answer(tmp_path, serve):
    capitals = {f"What is the capital of country {i}?": f"City{i}" for i in range(40)}

    def script(body):
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        q = user.rsplit("Question: ", 1)[-1].split("\n", 1)[0].strip()
        return Reply(f"Answer: {capitals[q]}")

    srv = serve(script)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": f"c{i}", "question": q, "answer": a}
                                              for i, (q, a) in enumerate(capitals.items())])
    summary = asyncio.run(curate(cfg_for(srv.base_url, audit={"canaries": 0.1}), inp,
                                 tmp_path / "run"))
    c = summary["canaries"]
    assert c["by_kind"] == {"short": 4} and c["recall"]["share"] == 1.0
    assert c["fixed"]["share"] == 1.0
    store = RunStore.open_existing(tmp_path / "run")
    for x in CanaryStore(store).all().values():
        assert x["sample"]["label"] in capitals.values()
        assert x["sample"]["label"] != x["original"]


@pytest.mark.parametrize("correct", [True, False])
def test_clear_canaries_come_from_rows_above_gamma(tmp_path, correct):
    path, _, truth = noisy_mc_file(tmp_path, 80, 3, lambda i: i % 5 == 0)
    with SimServer(Simulator(truth, SimParams(accuracy=1.0, unsure=0.0))) as srv:
        summary = sim_curate(path, tmp_path / "run", srv.base_url, RunOptions(method="clear"),
                             audit={"canaries": 0.1}, clear={"correct": correct})
    c = summary["canaries"]
    assert c["planted"] == 8 and c["recall"]["share"] == 1.0
    assert (c["fixed"]["k"], c["fixed"]["n"]) == ((8, 8) if correct else (0, 0))
    store = RunStore.open_existing(tmp_path / "run")
    gamma = float(store.get_meta("gamma"))
    for x in CanaryStore(store).all().values():
        src = store.record(x["source"])
        assert src["confidence"] >= gamma and src["fate"] == "clean"
        assert x["confidence"] < gamma


def test_viewer_and_report_show_the_canaries_and_list_none(browser, serve, tmp_path):
    from selenium.webdriver.common.by import By

    from robustft.viewer.server import Viewer, write_report

    from .conftest import ARTIFACTS, wait

    srv = serve(mc_truth)
    asyncio.run(curate(cfg_for(srv.base_url, audit={"canaries": 0.1}), mc_file(tmp_path),
                       tmp_path / "run"))
    v = Viewer(tmp_path / "run", 0).start()
    try:
        browser.get(v.url)
        wait(browser, lambda d: d.find_elements(By.ID, "canary-recall"))
        assert browser.find_element(By.ID, "canary-recall").text.startswith("1.000 (6/6; 95% CI")
        assert browser.find_element(By.ID, "canary-fixed").text.startswith("1.000 (6/6;")
        assert "upper bound" in browser.find_element(By.ID, "canaries").text
        assert browser.find_element(By.ID, "count-samples").text.startswith("60")
        browser.save_screenshot(str(ARTIFACTS / "viewer-canaries.png"))
    finally:
        v.stop()
    write_report(tmp_path / "run", tmp_path / "report.html")
    browser.get((tmp_path / "report.html").as_uri())
    wait(browser, lambda d: d.find_elements(By.ID, "canary-recall"))
    assert browser.find_element(By.ID, "canary-recall").text.startswith("1.000 (6/6;")
    assert "canary:" not in (tmp_path / "report.html").read_text()  # no canary sample in it
