"""The review page at scale: a synthetic run directory of N samples (default 100,000; a
quarter of them in the review queue), served by ``robustft view``'s server and driven in
headless Chromium. Prints (does not assert) the time to load the review queue page, one review
round trip by keyboard (key press to the next sample shown with the progress updated), and
the same round trip's HTTP part alone.

    python -m eval.bench_review [--samples 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

from robustft.store.runstore import RunStore
from robustft.viewer.server import Viewer


def fake_run(path: Path, n: int) -> None:
    """``n`` synthetic samples in one transaction: clean, relabeled-kept/dropped, errors."""
    store = RunStore(path)
    rng = random.Random(0)
    fates = ["clean", "relabeled-kept", "relabeled-dropped", "error"]
    rows = []
    for i in range(n):
        fate = fates[i % 4] if i % 7 else "clean"
        ent = rng.random() * 1.4 if fate.startswith("relabeled") else None
        data = {"sample": {"id": f"x{i}", "row": i + 1, "source": f"big.jsonl:{i + 1}",
                           "question": f"Synthetic question number {i}?", "options": ["a", "b"],
                           "label": "A"}, "verdict": "noisy" if ent is not None else "clean"}
        rows.append((f"x{i}", i + 1, "big.jsonl", "relabeled", "noisy", "A",
                     "B" if fate == "relabeled-kept" else "A", ent, "option-logprobs", fate,
                     "synthetic", json.dumps(data)))
    with store.db:
        store.db.executemany(
            "INSERT INTO samples (id, row, source, stage, verdict, original, final, entropy, "
            "entropy_source, fate, reason, data) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    store.close()


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(a)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or
                                            "/usr/bin/chromedriver"), options=opts)


def main() -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        t0 = time.perf_counter()
        fake_run(run, args.samples)
        print(f"{args.samples} synthetic samples written in {time.perf_counter() - t0:.1f} s")
        v = Viewer(run, 0).start()
        driver = _driver()
        try:
            def progress() -> str:
                found = driver.find_elements(By.ID, "review-progress")
                return found[0].text if found else ""

            def until(cond):  # polled every 5 ms (the default 0.5 s would dominate)
                WebDriverWait(driver, 60, poll_frequency=0.005, ignored_exceptions=(
                    StaleElementReferenceException,)).until(cond)

            loads, trips = [], []
            for i in range(5):
                driver.get("about:blank")  # a full page load each time
                t0 = time.perf_counter()
                driver.get(v.url + f"#/review/{i * 1000}")
                until(lambda d, i=i: progress().startswith(
                    f"{i} of"))
                loads.append(time.perf_counter() - t0)
                at = driver.find_element(By.ID, "queue").get_attribute("data-id")
                t0 = time.perf_counter()
                ActionChains(driver).send_keys("a").perform()
                until(lambda d, i=i, at=at: progress().startswith(
                    f"{i + 1} of") and d.find_element(By.ID, "queue").get_attribute(
                    "data-id") != at)
                trips.append(time.perf_counter() - t0)
            queue = json.loads(urllib.request.urlopen(v.url + "api/queue?index=0").read())
            t0 = time.perf_counter()
            for i in range(20):
                urllib.request.urlopen(v.url + f"api/queue?index={i * 2000}").read()
            api = (time.perf_counter() - t0) / 20
        finally:
            driver.quit()
            v.stop()
    ms = lambda xs: f"median {sorted(xs)[len(xs) // 2] * 1000:.0f} ms (max {max(xs) * 1000:.0f})"  # noqa: E731
    print(f"review queue: {queue['total']} samples of {args.samples}")
    print(f"review page load (queue entry + sample + render): {ms(loads)}")
    print(f"one review by keyboard (save, next sample shown, progress updated): {ms(trips)}")
    print(f"GET /api/queue alone: {api * 1000:.0f} ms")


if __name__ == "__main__":
    main()
