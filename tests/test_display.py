"""How a run's free-text corrections, new fates and judges' verdicts are shown: the word diff
(trace, viewer, review queue, HTML report), the fates in summaries and queries, unsure samples
first in the review queue. The run directory is written through RunStore.save as the pipeline
writes it (graph/robustft_run.py ``_saver``, then ``set_fates``); pages in real headless
Chromium."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from robustft.cli.render import sample_story, summary_table
from robustft.schemas import KEPT, Fate, Sample
from robustft.store.reviews import QUEUE_FATES, Review, ReviewStore, effective, queue_ids
from robustft.store.runstore import RunStore
from robustft.viewer.data import response_diff, sample_detail
from robustft.viewer.server import Viewer, write_report
from tests.conftest import ARTIFACTS, ROOT, wait

FACTS = ("Lindenau lies on the {side} bank of the river Saale and was founded in {year} by "
         "salt merchants who needed a safe crossing for their carts. ")
FILLER = ("Its old market square is lined with timber-framed houses, a town hall with a "
          "painted clock and a fountain where farmers still sell cheese on Saturdays. "
          "Visitors walk the riverside path to the mill, climb the bell tower for a view of "
          "the vineyards and end the day in one of the cellar taverns near the bridge. ")


def long_response(side: str, year: str) -> str:
    """About 300 words; ``side`` and ``year`` are the two facts a correction may change."""
    return FACTS.format(side=side, year=year) + FILLER * 5 + "Come in spring, when it blooms."


WRONG, RIGHT = long_response("north", "1889"), long_response("south", "1887")
XSS = 'Fine <script>window.pwned=1</script> town <img src=x onerror="window.pwned=2"> indeed.'
XSS_FIXED = XSS.replace("Fine", "Lovely")


def _judge(ref: str, verdict: str, p: float | None, reason: str) -> dict:
    return {"ref": ref, "verdict": verdict, "reason": reason, "p_contradiction": p,
            "how": "judge"}


# id: (response, fate, final, entropy, judgements)
ROWS = {
    "clean1": ("A calm little town.", Fate.CLEAN, "A calm little town.", None,
               [_judge("direct", "consistent", 0.03, "a valid alternative")]),
    "long1": (WRONG, Fate.RELABELED_KEPT, RIGHT, 0.21,
              [_judge("direct", "contradicts", 0.91, "the town lies on the south bank"),
               _judge("reasoning", "contradicts", 0.84, "founded in 1887, not 1889")]),
    "conf1": ("A market town with a mill.", Fate.CONFIRMED, "A market town with a mill.", None,
              [_judge("direct", "contradicts", 0.55, "mentions no river")]),
    "uns1": ("The best season is autumn.", Fate.UNSURE, "The best season is autumn.", None,
             [_judge("direct", "unsure", None, "a matter of taste")]),
    "unsd1": ("Go by train.", Fate.UNSURE_DROPPED, None, None,
              [_judge("direct", "unsure", 0.4, "the prompt does not say from where")]),
    "xss1": (XSS, Fate.RELABELED_KEPT, XSS_FIXED, 0.35,
             [_judge("direct", "contradicts", 0.7, "<b>not</b> fine")]),
    "drop1": ("It has ten towers.", Fate.RELABELED_DROPPED, "It has two towers.", 0.95,
              [_judge("direct", "contradicts", 0.6, "two towers")]),
}


def fate_run(path: Path) -> Path:
    """A RobustFT run of free-text rows with every kind of fate, saved as the pipeline does."""
    store = RunStore(path)
    store.set_meta("method", "robustft")
    for row, (sid, (response, fate, _final, entropy, judgements)) in enumerate(ROWS.items(), 1):
        s = Sample(id=sid, row=row, source=f"town.jsonl:{row}", question=f"Describe town {sid}.",
                   label=response, long_form=True)
        verdict = {Fate.CLEAN: "clean", Fate.UNSURE: "unsure",
                   Fate.UNSURE_DROPPED: "unsure"}.get(fate, "noisy")
        data = {"sample": s.model_dump(), "verdict": verdict, "judgements": judgements,
                "verdict_reason": "; ".join(j["reason"] for j in judgements),
                "experts": {"direct": "An expert's own answer.", "reasoning": None}}
        stage = "detected" if verdict != "noisy" else "relabeled"
        store.save(sid, row, s.source, stage, data, verdict=verdict, original=s.label,
                   final=s.label if fate == Fate.CLEAN else None, entropy=entropy,
                   entropy_source="correction" if entropy is not None else None,
                   fate=Fate.CLEAN if fate == Fate.CLEAN else None)
    store.set_fates([(sid, str(f), f"because {f}", final) for sid, (_, f, final, _, _) in
                     ROWS.items() if f != Fate.CLEAN])
    store.save("err1", len(ROWS) + 1, "town.jsonl:8", "error", {"errors": ["bad row"]},
               verdict="error", fate="error", reason="bad row")
    store.close()
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return fate_run(tmp_path_factory.mktemp("display") / "run")


def test_diff_of_a_long_correction_names_the_two_changed_words():
    d = response_diff(WRONG, RIGHT)
    assert len(WRONG.split()) > 250
    assert d["words"] == 2
    assert d["changes"] == [["north", "south"], ["1889", "1887"]]
    deleted = [t for k, t in d["ops"] if k == "delete"]
    assert deleted == ["north", "1889"]
    assert "".join(t for k, t in d["ops"] if k != "delete") == RIGHT
    assert response_diff(WRONG, WRONG) is None and response_diff(WRONG, None) is None
    assert response_diff("a b c", "a c")["changes"] == [["b", ""]]


def test_queue_puts_unsure_first_and_holds_confirmed(run):
    store = RunStore.reader(run)
    try:
        ids = queue_ids(store.db, {}, "robustft")
        assert ids[:2] == ["uns1", "unsd1"]  # unsure first, in input order (no entropy)
        assert ids[2:] == ["drop1", "xss1", "long1", "conf1", "err1"]  # entropy, highest first
        assert queue_ids(store.db, {"fate": "confirmed"}, "robustft") == ["conf1"]
        assert "clean1" not in ids and set(QUEUE_FATES) >= {"confirmed", "unsure"}
        assert store.ids_with_fate(("unsure", "confirmed"), 10) == ["conf1", "uns1"]
        assert store.entropies() == [0.21, 0.35, 0.95]  # relabels only
        _, rows = store.page({"fate": "relabeled-kept"}, "row", False, 0, 10)
        assert [r["changed"] for r in rows] == [1, 1] and len(rows[0]["original"]) == 161
        detail = sample_detail(store, "long1")
        assert detail["original"] == WRONG and detail["diff"]["words"] == 2
        assert sample_detail(store, "conf1")["diff"] is None
    finally:
        store.close()


@pytest.mark.parametrize("action, fate, final, want", [
    (None, "unsure-dropped", None, (False, None)),  # held out until a person decides
    ("accept", "unsure-dropped", None, (False, None)),  # accept: the agents' decision
    ("restore", "unsure-dropped", None, (True, "orig")),  # restore keeps the original
    ("accept", "unsure", "orig", (True, "orig")),
    ("drop", "unsure", "orig", (False, "orig")),
    ("accept", "confirmed", "orig", (True, "orig")),
    ("edit", "confirmed", "orig", (True, "mine")),
    ("restore", "relabeled-kept", "fixed", (True, "orig")),
])
def test_reviews_of_the_new_fates(action, fate, final, want):
    review = (Review("s", action, {"edit": "mine", "restore": "orig"}.get(action), None, "ann",
                     0.0, fate, final, 1) if action else None)
    assert effective(fate, final, "orig", review, KEPT) == want


def _text(renderable, **console) -> str:
    out = io.StringIO()
    Console(file=out, width=120, **console).print(renderable)
    return out.getvalue()


def test_summary_lists_every_fate(run):
    store = RunStore.reader(run)
    try:
        text = _text(summary_table(store.totals()))
    finally:
        store.close()
    for fate in Fate:
        assert fate in text
    assert "unfinished" not in text
    line = next(x for x in text.splitlines() if "unsure-dropped" in x)
    assert line.split("│")[2].strip() == "1"


def test_trace_shows_the_diff_and_the_judges(run):
    done = subprocess.run([sys.executable, "-m", "robustft.cli.main", "trace", str(run), "long1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    out = done.stdout  # a pipe: no colour, the plain marks
    assert "[-north-]{+south+}" in out and "[-1889-]{+1887+}" in out
    assert "2 words changed" in out and "salt merchants" in out
    assert "contradicts" in out and "founded in 1887, not 1889" in out and "0.91" in out
    store = RunStore.reader(run)
    try:  # on a colour terminal: struck through (SGR 9) and no marks
        colour = _text(sample_story(store, "long1"), force_terminal=True, color_system="truecolor")
        assert re.search(r"\x1b\[(\d+;)*9(;\d+)*mnorth", colour)
        assert "[-north-]" not in colour
        assert "<script>" in _text(sample_story(store, "xss1", plain=True))
    finally:
        store.close()


def _words(driver, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, selector)]


def test_viewer_diff_judgements_fates_and_queue(browser, run):
    from selenium.webdriver.common.by import By

    reviews = ReviewStore(run)
    reviews.save("conf1", "edit", "A market town with a mill. It has a river.", None, "ann",
                 "confirmed", "A market town with a mill.", 0)
    v = Viewer(run, 0).start()
    try:
        browser.get(v.url)
        wait(browser, lambda d: d.find_elements(By.ID, "count-unsure-dropped"))
        assert browser.find_element(By.ID, "count-confirmed").text.startswith("1")
        options = _words(browser, "#fate-filter option")
        assert {"confirmed", "unsure", "unsure-dropped", "relabeled"} <= set(options)

        browser.get(v.url + "#/sample/long1")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#diff .difftext"))
        assert _words(browser, "#diff .difftext del") == ["north", "1889"]
        assert _words(browser, "#diff .difftext ins") == ["south", "1887"]
        summary = browser.find_element(By.CSS_SELECTOR, "#diff .diff-summary").text
        assert summary.startswith("2 words changed: north → south · 1889 → 1887")
        assert "salt merchants" in browser.find_element(By.CSS_SELECTOR, "#diff").text
        rows = browser.find_elements(By.CSS_SELECTOR, "#judgements tbody tr")
        assert [r.get_attribute("data-verdict") for r in rows] == ["contradicts"] * 2
        assert "0.91" in rows[0].text and "south bank" in rows[0].text
        browser.save_screenshot(str(ARTIFACTS / "display-diff.png"))

        browser.get(v.url + "#/sample/conf1")  # a person's edit, against the original
        wait(browser, lambda d: d.find_elements(By.ID, "review-diff"))
        assert _words(browser, "#review-diff .difftext ins") == ["It has a river."]
        assert not browser.find_elements(By.ID, "diff")  # confirmed: nothing changed

        browser.get(v.url + "#/sample/xss1")
        wait(browser, lambda d: d.find_elements(By.ID, "diff"))
        time.sleep(0.2)
        assert browser.execute_script("return window.pwned === undefined")
        assert "<script>window.pwned=1</script>" in browser.find_element(By.ID, "diff").text
        assert not browser.find_elements(By.CSS_SELECTOR, "#sample script, #sample img, "
                                                          "#sample b")

        browser.get(v.url + "#/review/0")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#queue[data-id]"))
        queue = browser.find_element(By.ID, "queue")
        assert queue.get_attribute("data-id") == "uns1" and "unsure first" in queue.text
        assert "unsure" in _words(browser, "#queue-fate option")
        browser.find_element(By.ID, "queue-next").click()
        wait(browser, lambda d: d.find_element(By.ID, "queue").get_attribute("data-id") ==
             "unsd1")
        browser.get(v.url + "#/review/4")  # the long correction, in the queue with its diff
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#queue[data-id] #diff"))
        assert browser.find_element(By.ID, "queue").get_attribute("data-id") == "long1"
        assert _words(browser, "#queue #diff .difftext del") == ["north", "1889"]
        assert "2 word(s) changed" in browser.find_element(By.ID, "review").text
        browser.save_screenshot(str(ARTIFACTS / "display-queue.png"))
    finally:
        v.stop()
        reviews.db.execute("DELETE FROM reviews")
        reviews.close()


def test_report_shows_the_diff_and_the_new_fates(browser, run, tmp_path):
    from selenium.webdriver.common.by import By

    out = tmp_path / "report.html"
    assert write_report(run, out) == 6  # long1, xss1, drop1 changed; conf1, uns1, unsd1
    html = out.read_text()
    assert "<script>window.pwned" not in html  # inlined as JSON, "</" escaped
    browser.get(out.as_uri() + "#/sample/long1")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#diff .difftext"))
    assert _words(browser, "#diff .difftext ins") == ["south", "1887"]
    browser.get(out.as_uri() + "#/sample/xss1")
    wait(browser, lambda d: d.find_elements(By.ID, "diff"))
    assert browser.execute_script("return window.pwned === undefined")
    assert "<script>window.pwned=1</script>" in browser.find_element(By.ID, "diff").text


def test_a_curated_run_traces_its_correction_and_queues_unsure_first(tmp_path, serve):
    """The same views over a run the pipeline wrote (tests/test_open_ended's scripted
    judge and corrector, through the real HTTP server)."""
    from robustft.graph.runner import curate
    from tests.conftest import write_jsonl
    from tests.test_graph import cfg_for
    from tests.test_open_ended import rows, script

    srv = serve(script)
    inp = write_jsonl(tmp_path / "in.jsonl", rows())
    asyncio.run(curate(cfg_for(srv.base_url, selection={"beta": 1.0}), inp, tmp_path / "run"))
    done = subprocess.run([sys.executable, "-m", "robustft.cli.main", "trace",
                           str(tmp_path / "run"), "wrong"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "1 word changed: [-52,000-] → {+41,000+}" in done.stdout
    assert "Calder has [-52,000-]{+41,000+} people" in done.stdout
    assert "contradicts" in done.stdout and "Calder has 41,000." in done.stdout
    store = RunStore.reader(tmp_path / "run")
    try:
        fates = {r["id"]: r["fate"] for r in store.records()}
        ids = queue_ids(store.db, {}, "robustft")
        unsure = [i for i in ids if fates[i] in ("unsure", "unsure-dropped")]
        assert unsure and ids[:len(unsure)] == unsure
        assert "confirm" in ids and "valid" not in ids
        print(f"\nfates: {fates}\nqueue: {ids}")
    finally:
        store.close()
