"""The review queue in real headless Chromium: keyboard review (accept, restore, edit, drop)
that survives a reload and reaches the export; a second tab's conflicting save; sample text
that tries to run script stays text; a page on another origin cannot post reviews."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eval.scripted_server import Reply, ScriptedServer, mc_reply, target_question
from robustft.config import Config
from robustft.graph.runner import curate
from robustft.store.reviews import ReviewStore
from robustft.viewer.server import Viewer
from tests.conftest import ARTIFACTS, ROOT, wait
from tests.test_viewer import _sums

XSS_Q = 'What is <script>window.pwned=1</script> 3 plus <img src=x onerror="window.pwned=2"> 4?'
XSS_ANSWER = '<img src=x onerror="window.pwned=3"><b>bold?</b>'


@pytest.fixture
def mc_run(tmp_path):
    """30 sums, every third label flipped, one question and one option carrying markup."""
    rows, truth = _sums(30)
    rows[1]["question"], rows[1]["options"][0] = XSS_Q, "<script>window.pwned=4</script>"
    truth[XSS_Q] = "B"
    rows[1]["answer"] = "A"  # flipped: the agents relabel it, so it is in the queue
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def script(body):
        q = target_question(body)
        conf = 0.55 + (sum(map(ord, q)) % 40) / 100
        return mc_reply(truth[q], list("ABCD"), conf,
                        reasoning="Add <b>the</b> numbers <script>window.pwned=5</script>.")

    with ScriptedServer(script, models=["scripted"]) as srv:  # the model: its only one
        cfg = Config()
        cfg.endpoint.base_url, cfg.concurrency = srv.base_url, 8
        asyncio.run(curate(cfg, data, tmp_path / "run"))
    return tmp_path / "run", data, rows[1]["id"]


def _progress(driver) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.ID, "review-progress")
    return found[0].text if found else ""


def _at(driver) -> str | None:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, "#queue[data-id]")
    return found[0].get_attribute("data-id") if found else None


def _press(driver, *keys) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def _reviewed(n: int, total: int):
    return lambda d: _progress(d).startswith(f"{n} of {total} reviewed")


def test_keyboard_review_survives_reload_and_reaches_export(browser, mc_run, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    run, data, _ = mc_run
    v = Viewer(run, 0, reviewer="ann").start()
    try:
        browser.get(v.url + "#/review/0")
        wait(browser, lambda d: _progress(d) and _at(d))
        total = int(_progress(browser).split(" of ")[1].split()[0])
        assert total >= 8 and _progress(browser).startswith("0 of")
        seen = []
        for n, key in enumerate(["a", "r", "e", "d"], 1):
            seen.append(_at(browser))
            if key == "e":  # edit: the option list takes focus; Ctrl+Enter saves
                _press(browser, "e")
                editor = browser.find_element(By.ID, "review-edit")
                assert browser.switch_to.active_element == editor
                Select(editor).select_by_value("D")
                editor.send_keys(Keys.CONTROL, Keys.ENTER)
            else:
                _press(browser, key)
            wait(browser, _reviewed(n, total))
            wait(browser, lambda d, n=n: _at(d) not in seen)  # moved on to the next sample
        browser.save_screenshot(str(ARTIFACTS / "review-queue.png"))
        browser.refresh()
        wait(browser, _reviewed(4, total))
        _press(browser, "k")  # back to the reviewed samples: their reviews are shown
        wait(browser, lambda d: _at(d) == seen[3])
        assert browser.find_element(By.ID, "review-state").get_attribute("data-action") == "drop"
        _press(browser, Keys.ARROW_LEFT)
        wait(browser, lambda d: _at(d) == seen[2])
        state = browser.find_element(By.ID, "review-state")
        assert state.get_attribute("data-action") == "edit" and "→ D" in state.text
    finally:
        v.stop()
    reviews = ReviewStore(run).all()
    assert [reviews[i].action for i in seen] == ["accept", "restore", "edit", "drop"]
    assert reviews[seen[2]].response == "D" and reviews[seen[0]].reviewer == "ann"
    out = tmp_path / "export" / "reviewed.jsonl"
    done = subprocess.run([sys.executable, "-m", "robustft.cli.main", "export", str(run), "-o",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    given = {r["id"]: r for r in map(json.loads, Path(data).read_text().splitlines())}
    assert rows[seen[1]]["answer"] == given[seen[1]]["answer"]  # restored
    assert rows[seen[2]]["answer"] == "D" and seen[3] not in rows


def test_second_tab_gets_a_conflict_not_a_lost_update(browser, mc_run):
    from selenium.webdriver.common.by import By

    run, _, _ = mc_run
    v = Viewer(run, 0).start()
    first = browser.current_window_handle
    try:
        browser.get(v.url + "#/review/0")
        wait(browser, lambda d: _at(d))
        sid = _at(browser)
        browser.switch_to.new_window("tab")
        browser.get(v.url + "#/review/0")
        wait(browser, lambda d: _at(d) == sid)
        browser.switch_to.window(first)
        _press(browser, "a")
        wait(browser, lambda d: _at(d) != sid)
        browser.switch_to.window(browser.window_handles[-1])  # still shows version 0
        _press(browser, "d")
        wait(browser, lambda d: "conflict" in d.find_element(By.ID, "review-msg").text)
        assert "reviewed this sample first" in browser.find_element(By.ID, "review-msg").text
        browser.save_screenshot(str(ARTIFACTS / "review-conflict.png"))
        browser.close()
    finally:
        browser.switch_to.window(first)
        v.stop()
    assert ReviewStore(run).get(sid).action == "accept"  # the first save stands


def test_sample_text_renders_inert(browser, mc_run, tmp_path):
    from selenium.webdriver.common.by import By

    run, _, xss_id = mc_run
    v = Viewer(run, 0).start()
    try:
        for page in (f"#/sample/{xss_id}", "#/review/0", "#/"):
            browser.get(v.url + page)
            wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#sample, #queue, #table"))
            time.sleep(0.3)
            assert browser.execute_script("return window.pwned === undefined"), page
        browser.get(v.url + f"#/sample/{xss_id}")
        wait(browser, lambda d: d.find_elements(By.ID, "review"))
        text = browser.find_element(By.ID, "sample").text
        assert "<script>window.pwned=1</script>" in text and 'onerror="window.pwned=2"' in text
        assert not browser.find_elements(By.CSS_SELECTOR, "#sample img, #sample script")
        browser.save_screenshot(str(ARTIFACTS / "review-xss.png"))
    finally:
        v.stop()
    free = _free_text_run(tmp_path)  # a free-text response carrying markup
    v = Viewer(free, 0).start()
    try:
        browser.get(v.url + "#/review/0")
        wait(browser, lambda d: _at(d))
        assert browser.execute_script("return window.pwned === undefined")
        editor = browser.find_element(By.ID, "review-edit")
        assert editor.tag_name == "textarea"  # free text: edited in a text box
        assert not browser.find_elements(By.CSS_SELECTOR, "#queue img, #queue b")
        assert XSS_ANSWER in browser.find_element(By.ID, "queue").text
    finally:
        v.stop()


def _free_text_run(tmp_path: Path) -> Path:
    rows = [{"id": f"f{i}", "question": f"Capital of country {i}?", "answer": f"City {i}"}
            for i in range(6)]
    rows[0]["answer"] = XSS_ANSWER
    data = tmp_path / "free.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def script(body):
        q = target_question(body)
        return Reply(f"Answer: City {q.split()[3].rstrip('?')}")

    with ScriptedServer(script, models=["scripted"]) as srv:  # the model: its only one
        cfg = Config()
        cfg.endpoint.base_url = srv.base_url
        asyncio.run(curate(cfg, data, tmp_path / "free"))
    return tmp_path / "free"


def test_a_page_on_another_origin_cannot_post(browser, mc_run):
    run, _, _ = mc_run
    v = Viewer(run, 0).start()
    sid = json.loads(urllib.request.urlopen(
        v.url + "api/queue?index=0").read())["id"]
    target = v.url + "api/review"
    evil = f"""<!doctype html><form id="f" method="POST" action="{target}" enctype="text/plain">
<input name='{{"id": "{sid}", "action": "drop", "x": "' value='"}}'></form>
<script>
fetch("{target}", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
  body: JSON.stringify({{id: "{sid}", action: "drop"}})}}).finally(() => {{
  fetch("{target}", {{method: "POST", headers: {{"Content-Type": "application/json",
    "X-Robustft-Token": "guess"}}, body: JSON.stringify({{id: "{sid}", action: "drop"}})}})
    .catch(() => null).finally(() => {{ document.title = "tried"; document.getElementById("f")
      .submit(); }});
}});
</script>"""

    class Evil(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = evil.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    other = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{other.server_address[1]}/")
        # the scripts ran and the form was posted to the viewer, which answered its refusal
        wait(browser, lambda d: "api/review" in d.current_url)
        assert "refused" in browser.page_source or "token" in browser.page_source
    finally:
        other.shutdown()
        v.stop()
    assert ReviewStore(run).get(sid) is None
