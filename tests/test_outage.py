"""Endpoint outages through the CLI: a dead endpoint is refused before any row (exit 2); an
outage in the middle of a run is waited out (no error rows, the same outputs); one longer than
client.outage_timeout stops the run (exit 5) and the rerun finishes it, sending only the calls
that had not been answered."""

from __future__ import annotations

import csv
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from eval.scripted_server import ScriptedServer, parity
from robustft.store.runstore import RunStore

from .conftest import write_jsonl
from .test_cli_e2e import run_cli
from .test_reliability import _outputs, parity_rows

ROWS = 300


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """(input, an undisturbed run's directory, the calls it made) for ROWS parity rows."""
    d = tmp_path_factory.mktemp("outage")
    inp = write_jsonl(d / "in.jsonl", parity_rows(ROWS))
    with ScriptedServer(parity) as srv:
        res = run_cli("curate", "-i", str(inp), "-o", str(d / "ref"), "--base-url",
                      srv.base_url, "--model", "m")
        assert res.returncode == 0, res.stderr
        return inp, d / "ref", list(srv.delivered)


def _config(tmp_path: Path, timeout_s: float) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"client: {{outage_timeout: {timeout_s}}}\n")
    return path


def _fates(run: Path) -> Counter:
    with (run / "decisions.csv").open(newline="") as f:
        return Counter(r["fate"] for r in csv.DictReader(f))


def _back_after(srv: ScriptedServer, seconds: float) -> threading.Thread:
    """Once ``srv`` has died, bring it back after ``seconds``; returns the watcher."""
    def watch() -> None:
        while not srv.dead:
            time.sleep(0.01)
        time.sleep(seconds)
        srv.come_back()
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_endpoint_down_before_the_start_exits_2_before_any_row(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(20))
    t0 = time.monotonic()
    res = run_cli("curate", "-i", str(inp), "-o", str(tmp_path / "run"), "--base-url",
                  "http://127.0.0.1:9/v1", "--model", "m")
    took = time.monotonic() - t0
    print(f"endpoint down: exit {res.returncode} after {took:.2f} s")
    message = " ".join(res.stderr.split())
    assert res.returncode == 2 and "Traceback" not in res.stderr and took < 10
    assert "endpoint check failed for roles direct, reasoning" in message
    assert "http://127.0.0.1:9/v1 (model 'm')" in message and "connection error" in message
    assert not (tmp_path / "run" / "decisions.csv").exists()
    assert not (tmp_path / "run" / "run.sqlite").exists()  # no row touched


def test_an_outage_mid_run_is_waited_out(tmp_path, reference):
    inp, ref, calls = reference
    srv = ScriptedServer(parity, die_after=len(calls) // 3).__enter__()
    try:
        watcher = _back_after(srv, 20.0)  # down for 20 s in the middle of the run
        t0 = time.monotonic()
        res = run_cli("curate", "-i", str(inp), "-o", str(tmp_path / "run"), "--base-url",
                      srv.base_url, "--model", "m", "-c", str(_config(tmp_path, 60)))
        print(f"{ROWS} rows with a 20 s outage: {time.monotonic() - t0:.1f} s")
        watcher.join(timeout=1)
    finally:
        srv.__exit__(None, None, None)
    assert res.returncode == 0, res.stderr
    assert "down since" in res.stderr and "is back after" in res.stderr
    assert _fates(tmp_path / "run")["error"] == 0
    assert _outputs(tmp_path / "run") == _outputs(ref)


def test_an_outage_past_the_timeout_stops_and_the_rerun_finishes(tmp_path, reference):
    inp, ref, calls = reference
    run = tmp_path / "run"
    args = ["curate", "-i", str(inp), "-o", str(run), "--model", "m", "-c",
            str(_config(tmp_path, 3))]
    srv = ScriptedServer(parity, die_after=len(calls) // 3).__enter__()
    try:
        res = run_cli(*args, "--base-url", srv.base_url)
        assert res.returncode == 5, res.stderr
        message = " ".join(res.stderr.split())
        assert "has not answered since" in message and "outage_timeout 3 s" in message
        assert "rerun the same command once the endpoint answers again" in message
        assert "Traceback" not in res.stderr
        store = RunStore.reader(run)
        stored = dict(store.db.execute("SELECT COALESCE(fate, stage), COUNT(*) FROM samples "
                                       "GROUP BY 1"))
        store.close()
        assert "error" not in stored and 0 < sum(stored.values()) < ROWS  # none failed
        first = list(srv.delivered)
        srv.come_back()
        res = run_cli(*args, "--base-url", srv.base_url)
    finally:
        srv.__exit__(None, None, None)
    assert res.returncode == 0, res.stderr
    assert _outputs(run) == _outputs(ref)
    assert Counter(srv.delivered) == Counter(calls)  # answered once each, over both runs
    assert len(first) < len(calls)
