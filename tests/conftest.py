"""Shared fixtures: the scripted server, ARC data from ../shared (skipped when absent), and
multiple-choice data with flipped labels curated against the simulated endpoint."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from eval.scripted_server import Reply, ScriptedServer
from eval.sim_server import sim_models
from robustft.config import Config, RunOptions
from robustft.graph.runner import curate

ROOT = Path(__file__).resolve().parent.parent
ARC = ROOT.parent / "shared" / "data" / "robustft-arc"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def arc_dir() -> Path:
    if not (ARC / "labeled.csv").is_file():
        pytest.skip(f"shared ARC data absent ({ARC})")
    return ARC


def read_csv(path: Path, limit: int | None = None) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return rows[:limit] if limit else rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def noisy_mc_file(tmp_path: Path, n: int, seed: int, flipped: Callable[[int], bool]
                  ) -> tuple[Path, dict[str, str], dict[str, tuple[str, list[str]]]]:
    """``n`` four-option rows whose label is flipped to another option where ``flipped(i)``:
    (the JSONL file, id -> true label, the simulator's question -> (truth, letters))."""
    rng = random.Random(seed)
    truth = {f"Q{i}: which letter is number {i}?": rng.choice("ABCD") for i in range(n)}
    rows = []
    for i, (q, t) in enumerate(truth.items()):
        given = rng.choice([x for x in "ABCD" if x != t]) if flipped(i) else t
        rows.append({"id": f"r{i}", "question": q, "options": ["w", "x", "y", "z"],
                     "answer": given})
    path = write_jsonl(tmp_path / "noisy.jsonl", rows)
    return path, {f"r{i}": t for i, t in enumerate(truth.values())}, {
        q: (t, list("ABCD")) for q, t in truth.items()}


def long_form_script(truth: dict[str, str]) -> Callable[[dict], Reply]:
    """A scripted endpoint for long-form rows (prompt -> true response in ``truth``): the
    judge says consistent (A) when the reference and the audited response are equal, else
    contradicts (B); a correction and every expert answer give the prompt's true response."""
    def script(body: dict) -> Reply:
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        if "Response under audit:" in user:
            ref = user.split("Reference response:", 1)[1].split("Response under audit:")[0]
            audited = user.split("Response under audit:", 1)[1]
            return Reply(f"Compared.\nAnswer: {'A' if ref.strip() == audited.strip() else 'B'}")
        if "Response to correct:" in user:
            q = user.split("Prompt:\n", 1)[1].split("\n", 1)[0].strip()
            return Reply(f"Fixed.\nAnswer: {truth[q]}")
        q = user.rsplit("Question: ", 1)[-1].split("\n", 1)[0].strip()
        return Reply(f"Thinking.\nAnswer: {truth[q]}")
    return script


def sim_curate(path: Path, out: Path, url: str, options: RunOptions, **config) -> dict:
    """``curate`` against the simulated endpoint at ``url``, each role its simulated model."""
    cfg = Config(concurrency=32, **config)
    cfg.endpoint.base_url = url
    for role, model in sim_models().items():
        cfg.roles[role] = cfg.role(role).model_copy(update={"model": model})
    return asyncio.run(curate(cfg, path, out, options=options))


@pytest.fixture
def serve():
    """Start scripted servers; all are shut down at teardown."""
    started: list[ScriptedServer] = []

    def start(script, **kw) -> ScriptedServer:
        s = ScriptedServer(script, **kw).__enter__()
        started.append(s)
        return s

    yield start
    for s in started:
        s.__exit__(None, None, None)


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", (
    shutil.which("chromedriver") or "/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromedriver missing: scripts/test.sh installs them")
        pytest.skip("chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
              "--no-first-run", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    ARTIFACTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()


def wait(driver, cond, timeout: float = 20):
    """Wait for ``cond``; elements replaced by a re-render mid-check are retried, not errors."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(cond)
