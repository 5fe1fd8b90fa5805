"""The blind audit page in real headless Chromium: nothing the agents decided reaches the page
(DOM or any response it fetched) before the person's verdict is saved; verdicts by keyboard,
then the agents' story and, for a kept row they changed, the second question; a reload keeps
every verdict; the estimates in the header and on the summary page follow the verdicts."""

from __future__ import annotations

import json

from robustft.store.audit import AuditStore
from robustft.store.reviews import ReviewStore
from robustft.store.runstore import RunStore
from robustft.viewer.server import Viewer
from tests.conftest import ARTIFACTS, wait
from tests.test_audit import audited, run  # noqa: F401  (fixtures)

# every fetch the page makes, with the text of its reply, kept in window.__seen
RECORD_FETCHES = """
window.__seen = [];
const realFetch = window.fetch;
window.fetch = async (...args) => {
  const r = await realFetch(...args);
  window.__seen.push([String(args[0]), await r.clone().text()]);
  return r;
};
"""
REVEALING = ("relabeled", "confirmed", '"fate"', "checker", "fate-")


def _state(driver) -> str | None:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, "#audit[data-state]")
    return found[0].get_attribute("data-state") if found else None


def _text(driver, id_: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.ID, id_)
    return found[0].text if found else ""


def _press(driver, *keys) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def _at(driver, index: int, state: str):
    return lambda d: (_state(d) == state and
                      d.find_element("id", "audit").get_attribute("data-position") == str(index))


def test_blind_audit_by_keyboard(browser, run, audited):  # noqa: F811
    from selenium.webdriver.common.by import By

    truth = audited[3]
    v = Viewer(run, 0, reviewer="bob").start()
    hook = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                   {"source": RECORD_FETCHES})
    try:
        browser.get(v.url + "#/audit/0")
        wait(browser, _at(browser, 0, "blind"))
        entries = AuditStore(run).entries()
        store = RunStore.reader(run)
        rec = {e.sample_id: store.record(e.sample_id) for e in entries}
        store.close()
        key = {"right": "1", "wrong": "2"}

        def ok(i: int) -> str:
            sid = entries[i].sample_id
            return "right" if rec[sid]["sample"]["label"] == truth[sid] else "wrong"

        # blind: the prompt and the original response, nothing the agents decided
        assert rec[entries[0].sample_id]["sample"]["question"] in _text(browser, "audit-question")
        page = browser.page_source
        assert not any(w in page for w in REVEALING)
        assert not browser.find_elements(By.CSS_SELECTOR, "#audit .fate")
        seen = browser.execute_script("return window.__seen")
        assert seen and all("/api/sample" not in url for url, _ in seen)
        assert not any(w in body for _, body in seen for w in REVEALING)
        before = _text(browser, "audit-estimates")
        assert before.startswith("0 of 40 judged; detection precision –")
        browser.save_screenshot(str(ARTIFACTS / "audit-blind.png"))

        _press(browser, key[ok(0)])  # the verdict, by keyboard
        wait(browser, _at(browser, 0, "judged"))
        assert _text(browser, "audit-estimates").startswith("1 of 40 judged")
        assert browser.find_element(By.CSS_SELECTOR, "#audit-story .fate").text == \
            rec[entries[0].sample_id]["fate"]
        assert _text(browser, "audit-estimates") != before
        _press(browser, "j")  # next, blind again
        wait(browser, _at(browser, 1, "blind"))
        assert not any(w in browser.page_source for w in REVEALING)
        _press(browser, "k")
        wait(browser, _at(browser, 0, "judged"))

        # a kept row the agents changed: after the blind verdict, the final response is asked
        k = next(i for i, e in enumerate(entries) if i > 1 and
                 rec[e.sample_id]["fate"] == "relabeled-kept")
        browser.get(v.url + f"#/audit/{k}")
        wait(browser, _at(browser, k, "blind"))
        assert not any(w in browser.page_source for w in REVEALING)
        _press(browser, key[ok(k)])
        wait(browser, lambda d: d.find_elements(By.ID, "audit-second"))
        final = rec[entries[k].sample_id]["final"]
        _press(browser, key["right" if final == truth[entries[k].sample_id] else "wrong"])
        wait(browser, lambda d: d.find_elements(By.ID, "audit-final-verdict"))
        browser.save_screenshot(str(ARTIFACTS / "audit-judged.png"))

        browser.refresh()  # the verdicts stay
        wait(browser, _at(browser, k, "judged"))
        assert browser.find_element(By.ID, "audit-verdict").get_attribute("data-verdict") == ok(k)
        assert browser.find_element(By.ID, "audit-final-verdict")
        header = _text(browser, "audit-estimates")
        assert header.startswith("2 of 40 judged; detection precision ")
        assert "detection precision –" not in header  # a flagged row is judged now
        browser.get(v.url + "#/")
        wait(browser, lambda d: "2 of 40 judged" in _text(d, "audit-summary-line"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#audit-estimates-table tbody tr")
        browser.find_element(By.ID, "audit-panel").screenshot(str(ARTIFACTS / "audit-summary.png"))
        assert [r.get_attribute("data-estimate") for r in rows][0] == "precision"
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument",
                                {"identifier": hook["identifier"]})
        v.stop()
    saved = {e.sample_id: e for e in AuditStore(run).entries() if e.verdict}
    assert len(saved) == 2 and {e.reviewer for e in saved.values()} == {"bob"}
    assert saved[entries[k].sample_id].judged_final == final
    assert ReviewStore(run).count() == 0  # a verdict is no review: no output changes
    json.dumps([e.as_dict() for e in saved.values()])
