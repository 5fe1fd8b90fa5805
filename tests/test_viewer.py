"""The trace viewer and the static report, driven in real headless Chromium (Debian's chromium
and chromium-driver, installed by scripts/test.sh). Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request

import pytest

from eval.bench_review import fake_run
from eval.scripted_server import mc_reply, target_question
from robustft.config import Config
from robustft.graph.runner import curate
from robustft.store.runstore import RunStore
from robustft.viewer.server import Viewer, write_report
from tests.conftest import ARTIFACTS, wait


def _table_ready(driver, info: str = "") -> bool:
    """The sample table has finished its latest load and its page info contains ``info``."""
    from selenium.webdriver.common.by import By

    ready = driver.find_elements(By.CSS_SELECTOR, '#table[data-busy="0"]')
    return bool(ready) and info in driver.find_element(By.ID, "page-info").text


def _sums(n: int = 60):
    """Multiple-choice arithmetic: (rows with every third label flipped, id -> true label)."""
    rng = random.Random(5)
    rows, truth = [], {}
    for i in range(n):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        opts = [a + b, a + b + 1, a + b - 1, a + b + 10]
        rng.shuffle(opts)
        right = "ABCD"[opts.index(a + b)]
        given = right if i % 3 else "ABCD"[(opts.index(a + b) + 1) % 4]
        rows.append({"id": f"s{i:03d}", "question": f"What is {a} plus {b}?",
                     "options": [str(o) for o in opts], "answer": given})
        truth[f"What is {a} plus {b}?"] = right
    return rows, truth


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from eval.scripted_server import ScriptedServer

    rows, truth = _sums()
    d = tmp_path_factory.mktemp("viewer")
    data = d / "sums.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def script(body):
        q = target_question(body)
        conf = 0.55 + (sum(map(ord, q)) % 40) / 100  # varied entropies
        return mc_reply(truth[q], list("ABCD"), conf, reasoning="Add the two numbers.")

    with ScriptedServer(script, models=["scripted"]) as srv:  # the model: its only one
        cfg = Config()
        cfg.endpoint.base_url, cfg.concurrency = srv.base_url, 8
        asyncio.run(curate(cfg, data, d / "run"))
    return d / "run", {r["id"]: truth[r["question"]] for r in rows}


def test_api_pages_filters_and_rejects_bad_sorts(run_dir):
    run, _ = run_dir
    v = Viewer(run, 0).start()
    try:
        def get(path):
            return json.loads(urllib.request.urlopen(v.url.rstrip("/") + path).read())
        page = get("/api/samples?fate=relabeled&sort=entropy&order=asc&size=5")
        assert page["total"] == 20 and len(page["rows"]) == 5
        ent = [r["entropy"] for r in page["rows"]]
        assert ent == sorted(ent)
        assert get("/api/samples?page=2&size=50")["rows"][0]["row"] == 51
        with pytest.raises(urllib.error.HTTPError, match="400"):
            urllib.request.urlopen(v.url + "api/samples?sort=data")
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(v.url + "api/sample?id=nope")
        assert "cdn" not in urllib.request.urlopen(v.url).read().decode().lower()
    finally:
        v.stop()


def test_browser_summary_filter_and_sample_timeline(browser, run_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    run, truth = run_dir
    v = Viewer(run, 0).start()
    try:
        browser.get(v.url)
        wait(browser, lambda d: _table_ready(d, "60 matching"))
        assert browser.find_element(By.ID, "count-samples").text.startswith("60")
        assert browser.find_element(By.ID, "count-relabeled-kept")
        browser.save_screenshot(str(ARTIFACTS / "viewer-summary.png"))

        Select(browser.find_element(By.ID, "fate-filter")).select_by_value("relabeled-kept")
        wait(browser, lambda d: _table_ready(d, "10 matching"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#samples tbody tr")
        assert len(rows) == 10 and all("relabeled-kept" in r.text for r in rows)
        sid = rows[0].get_attribute("data-id")
        rows[0].click()
        wait(browser, lambda d: d.find_elements(By.ID, "sample"))
        assert browser.find_element(By.ID, "reviewer-answer").text == truth[sid]
        assert browser.find_element(By.ID, "final-label").text == truth[sid]
        neighbours = browser.find_elements(By.CSS_SELECTOR, "#neighbours tbody tr")
        assert len(neighbours) == 3 and all("plus" in n.text for n in neighbours)
        roles = [c.get_attribute("data-role") for c in
                 browser.find_elements(By.CSS_SELECTOR, ".call")]
        assert {"direct", "reasoning", "reflection", "context", "reviewer"} <= set(roles)
        reviewer = browser.find_element(By.CSS_SELECTOR, '.call[data-role="reviewer"]')
        assert "answer-token probabilities" in reviewer.text and truth[sid] in reviewer.text
        browser.save_screenshot(str(ARTIFACTS / "viewer-sample.png"))

        browser.find_element(By.ID, "back").click()  # back to the table, filter kept
        wait(browser, lambda d: _table_ready(d, "10 matching"))
    finally:
        v.stop()


def test_static_report_is_self_contained(browser, run_dir, tmp_path):
    from selenium.webdriver.common.by import By

    run, truth = run_dir
    out = tmp_path / "report.html"
    n = write_report(run, out)
    html = out.read_text()
    assert n == 20 and "http://" not in html.split("window.STATIC_RUN")[0]
    assert 'src="/static' not in html and 'href="/static' not in html
    browser.get(out.as_uri())
    wait(browser, lambda d: _table_ready(d, "20 matching"))
    row = browser.find_element(By.CSS_SELECTOR, "#samples tbody tr")
    sid = row.get_attribute("data-id")
    row.click()
    wait(browser, lambda d: d.find_elements(By.ID, "sample"))
    assert browser.find_element(By.ID, "reviewer-answer").text == truth[sid]
    browser.save_screenshot(str(ARTIFACTS / "report-sample.png"))


def test_table_stays_responsive_at_100k_samples(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    run = tmp_path / "big"
    fake_run(run, 100_000)
    v = Viewer(run, 0).start()
    try:
        t0 = time.perf_counter()
        browser.get(v.url)
        wait(browser, lambda d: _table_ready(d, "100000 matching"))
        load = time.perf_counter() - t0
        Select(browser.find_element(By.ID, "fate-filter")).select_by_value("relabeled-kept")
        t1 = time.perf_counter()
        wait(browser, lambda d: _table_ready(d, " matching") and "100000" not in d.find_element(
            By.ID, "page-info").text)
        assert "relabeled-kept" in browser.find_element(By.CSS_SELECTOR, "#samples tbody tr").text
        browser.find_element(By.CSS_SELECTOR, 'th[data-col="entropy"]').click()
        wait(browser, lambda d: _table_ready(d) and "▲" in d.find_element(
            By.CSS_SELECTOR, 'th[data-col="entropy"]').text)
        filtered = time.perf_counter() - t1
        first = browser.find_element(By.CSS_SELECTOR, "#samples tbody tr td:nth-child(6)").text
        lowest = RunStore.reader(run).db.execute(
            "SELECT MIN(entropy) FROM samples WHERE fate='relabeled-kept'").fetchone()[0]
        assert first == f"{lowest:.4f}"
        browser.save_screenshot(str(ARTIFACTS / "viewer-100k.png"))
        print(f"\n100k samples: summary + first table page {load:.2f} s; "
              f"filter + sort by entropy {filtered:.2f} s")
    finally:
        v.stop()
