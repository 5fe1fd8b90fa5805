"""``curate --batch`` against a scripted server implementing ``/v1/files`` + ``/v1/batches``:
the same calls and rows as an online run, expired requests called online, and ``kill -9``
during polling resumed without submitting a batch twice. Real HTTP, real subprocesses."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from eval.batch_server import BatchServer
from eval.scripted_server import ScriptedServer, parity, write_parity_rows
from tests.conftest import ROOT

FAST = "batch:\n  poll_s: 0.05\n  max_poll_s: 0.2\n"
DECIDED = ("id", "fate", "reason", "original_label", "final_label", "entropy")


def _cmd(inp, out, url, cfg, *extra):
    return [sys.executable, "-m", "robustft.cli.main", "curate", "-i", str(inp), "-o",
            str(out), "--base-url", url, "--model", "m", "-c", str(cfg), *extra]


def _run(*args):
    return subprocess.run(_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OPENAI_API_KEY": "x", "COLUMNS": "200"})


def _decisions(run) -> list[tuple]:
    with (run / "decisions.csv").open(newline="") as f:
        return sorted(tuple(r[k] for k in DECIDED) for r in csv.DictReader(f))


def _calls(run) -> list[tuple]:
    db = sqlite3.connect(run / "run.sqlite")
    return sorted(db.execute("SELECT sample_id, stage, role, prompt, answer FROM calls"))


def _setup(tmp_path, rows=12):
    inp, cfg = tmp_path / "in.jsonl", tmp_path / "cfg.yaml"
    write_parity_rows(inp, rows)
    cfg.write_text(FAST)
    return inp, cfg


def _online(tmp_path, inp, cfg):
    with ScriptedServer(parity) as server:
        done = _run(inp, tmp_path / "online", server.base_url, cfg)
        assert done.returncode == 0, done.stderr[-2000:]
        return len(server.requests)


def test_batch_run_matches_online_run(tmp_path):
    inp, cfg = _setup(tmp_path)
    online_requests = _online(tmp_path, inp, cfg)
    with BatchServer(parity) as server:
        plan = _run(inp, tmp_path / "dry", server.base_url, cfg, "--batch", "--dry-run")
        assert plan.returncode == 0 and "batch plan (--batch)" in plan.stdout
        assert "detect: " in plan.stdout and not server.batches  # the plan calls nothing
        done = _run(inp, tmp_path / "batch", server.base_url, cfg, "--batch")
        assert done.returncode == 0, done.stderr[-2000:]
        assert not server.requests  # no online call at all
        assert len(server.batched) == online_requests
        rounds = len(server.batches)
    assert 2 <= rounds <= 8  # one batch per round of dependent calls, not one per request
    assert _decisions(tmp_path / "batch") == _decisions(tmp_path / "online")
    assert _calls(tmp_path / "batch") == _calls(tmp_path / "online")
    summary = json.loads((tmp_path / "batch" / "summary.json").read_text())
    assert summary["this_invocation"]["batches_submitted"] == rounds
    ledger = sqlite3.connect(tmp_path / "batch" / "batches.sqlite")
    assert ledger.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == rounds
    assert len(list((tmp_path / "batch" / "batches").glob("input-*.jsonl"))) == rounds
    db = sqlite3.connect(tmp_path / "batch" / "run.sqlite")
    assert all(json.loads(d)["batched"] for (d,) in db.execute("SELECT data FROM calls"))


def test_expired_requests_go_online(tmp_path):
    inp, cfg = _setup(tmp_path)
    _online(tmp_path, inp, cfg)
    with BatchServer(parity, expire=3) as server:
        done = _run(inp, tmp_path / "batch", server.base_url, cfg, "--batch")
        assert done.returncode == 0, done.stderr[-2000:]
        assert len(server.requests) == 3  # exactly the expired ones, called online
        assert "3 of" in done.stderr and "expired" in done.stdout + done.stderr
    assert _decisions(tmp_path / "batch") == _decisions(tmp_path / "online")
    assert _calls(tmp_path / "batch") == _calls(tmp_path / "online")


def test_kill_during_polling_resumes_the_same_batches(tmp_path):
    inp, cfg = _setup(tmp_path)
    _online(tmp_path, inp, cfg)
    out = tmp_path / "batch"
    with BatchServer(parity, complete_after_s=3600) as server:
        proc = subprocess.Popen(_cmd(inp, out, server.base_url, cfg, "--batch"), cwd=ROOT,
                                env={**os.environ, "OPENAI_API_KEY": "x"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while server.polls < 3 and time.time() < deadline:  # submitted, now polling
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert len(server.batches) == 1 and server.polls >= 3
        first = next(iter(server.batches))
        server.complete_after_s = 0.0
        done = _run(inp, out, server.base_url, cfg, "--batch")
        assert done.returncode == 0, done.stderr[-2000:]
        assert "already submitted; polling it again" in done.stdout + done.stderr
        assert server.batches[first]["status"] == "completed"
        inputs = [server.batches[b]["input_file_id"] for b in server.batches]
        # no request went out twice: every batch's lines are distinct requests
        lines = [json.loads(x)["custom_id"] for f in inputs
                 for x in server.files[f].splitlines() if x]
        assert len(lines) == len(set(lines))
        assert not server.requests
    assert _decisions(out) == _decisions(tmp_path / "online")
    assert _calls(out) == _calls(tmp_path / "online")


def _run_batch_files(batch_dir, server: ScriptedServer) -> int:
    """Play `vllm run-batch` on every input file without an output: the same replies the
    server gives online. Returns the files answered."""
    done = 0
    for inp in sorted(batch_dir.glob("batch-*.jsonl")):
        out = inp.with_name(inp.name.replace(".jsonl", ".output.jsonl"))
        if inp.name.endswith(".output.jsonl") or out.exists():
            continue
        lines = [json.loads(x) for x in inp.read_text().splitlines() if x]
        out.write_text("".join(json.dumps({
            "id": f"vllm-{i}", "custom_id": x["custom_id"], "error": None,
            "response": {"status_code": 200, "body": server.complete(x["body"])}}) + "\n"
            for i, x in enumerate(lines)))
        done += 1
    return done


def test_offline_batch_files_for_vllm_run_batch(tmp_path):
    inp, cfg = _setup(tmp_path)
    _online(tmp_path, inp, cfg)
    out = tmp_path / "offline"
    with ScriptedServer(parity) as server:  # only for requests no batch file answers
        rounds = 0
        while True:
            step = _run(inp, out, server.base_url, cfg, "--batch-files")
            if step.returncode == 0:
                break
            assert step.returncode == 4, step.stderr[-2000:]
            said = " ".join((step.stdout + step.stderr).split())
            assert "vllm run-batch -i" in said and "--model m" in said
            assert _run_batch_files(out / "batches", server) == 1  # one file per round
            rounds += 1
            assert rounds < 10
        assert not server.requests  # every call came from the batch files
    assert 2 <= rounds <= 8
    assert _decisions(out) == _decisions(tmp_path / "online")
    assert _calls(out) == _calls(tmp_path / "online")
    no_model = subprocess.run(
        [sys.executable, "-m", "robustft.cli.main", "curate", "-i", str(inp), "-o",
         str(tmp_path / "x"), "--base-url", "http://127.0.0.1:9/v1", "--batch-files"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "ROBUSTFT_MODEL"})
    assert no_model.returncode == 2 and "--batch-files needs --model" in no_model.stderr
