"""One writer per run directory: a second `curate` fails at once naming the holder, readers
keep working, and a lock left by a process killed with SIGKILL is taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

from eval.scripted_server import parity
from robustft.store.lock import LOCK_FILE, lock_run_dir

from .conftest import write_jsonl
from .test_cli_e2e import run_cli
from .test_reliability import _cached, _outputs, parity_rows


def _holder(run) -> dict | None:
    try:
        text = (run / LOCK_FILE).read_text()
    except FileNotFoundError:
        return None
    return json.loads(text) if text.strip() else None


def _wait(cond, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _start(args: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "ROBUSTFT_MODEL")}
    return subprocess.Popen([sys.executable, "-m", "robustft.cli.main", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**env, "HF_HUB_OFFLINE": "1"})


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path, serve):
    srv = serve(parity, gate_after=20)  # the first run hangs after 20 replies: still writing
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(30))
    run = tmp_path / "run"
    args = ["curate", "-i", str(inp), "-o", str(run), "--model", "m", "--concurrency", "4"]
    first = _start([*args, "--base-url", srv.base_url])
    _wait(lambda: (_holder(run) or {}).get("pid") == first.pid and srv.held)

    t0 = time.monotonic()
    second = run_cli(*args, "--base-url", srv.base_url)
    took = time.monotonic() - t0
    print(f"second curate exited {second.returncode} after {took:.2f} s (process start to exit)")
    assert second.returncode == 2 and "Traceback" not in second.stderr
    message = " ".join(second.stderr.split())
    assert f"pid {first.pid} on " in message and "is being written by another" in message
    assert "curate -i" in message  # the holder's command line

    export = run_cli("export", str(run), "-o", str(tmp_path / "out.jsonl"))
    assert export.returncode == 2 and f"pid {first.pid}" in export.stderr  # a writer too
    summary = run_cli("summary", str(run))  # readers never take the lock
    assert summary.returncode == 0, summary.stderr

    assert len(srv.requests) == 20 + srv.held  # the second run sent nothing
    first.terminate()  # SIGTERM: the run stops cleanly, releasing the lock
    assert first.wait(timeout=60) == 130, first.stderr.read()
    assert _holder(run) is None  # released: the lock file is empty again
    again = run_cli(*args, "--base-url", serve(parity).base_url)  # the directory is free
    assert again.returncode == 0, again.stderr


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, serve):
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(40))
    reference = serve(parity)
    res = run_cli("curate", "-i", str(inp), "-o", str(tmp_path / "ref"),
                  "--base-url", reference.base_url, "--model", "m")
    assert res.returncode == 0, res.stderr

    first = serve(parity, gate_after=45)  # answers 45 requests, then hangs
    run = tmp_path / "run"
    args = ["curate", "-i", str(inp), "-o", str(run), "--model", "m", "--concurrency", "8"]
    proc = _start([*args, "--base-url", first.base_url])
    _wait(lambda: first.held >= 2 and _cached(run) >= len(first.delivered))
    proc.kill()  # SIGKILL: no chance to release anything
    proc.wait()
    assert (_holder(run) or {}).get("pid") == proc.pid  # the dead holder's record is left

    second = serve(parity)
    res = run_cli(*args, "--base-url", second.base_url)
    assert res.returncode == 0, res.stderr
    assert f"took over the writer lock left by pid {proc.pid}" in " ".join(res.stderr.split())
    assert _outputs(run) == _outputs(tmp_path / "ref")
    assert max(Counter(first.delivered + second.delivered).values()) == 1


def test_the_lock_is_reentrant_within_a_process_and_exclusive_across(tmp_path):
    with lock_run_dir(tmp_path / "r") as a, lock_run_dir(tmp_path / "r") as b:
        assert a is b and _holder(tmp_path / "r")["pid"] == os.getpid()
        other = subprocess.run(
            [sys.executable, "-c", "import sys; from robustft.store.lock import lock_run_dir; "
             "lock_run_dir(sys.argv[1])", str(tmp_path / "r")], capture_output=True, text=True)
        assert other.returncode == 1 and "RunDirBusy" in other.stderr
        assert _holder(tmp_path / "r") is not None  # the inner release keeps the lock
    assert _holder(tmp_path / "r") is None
