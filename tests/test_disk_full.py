"""A full disk: the run stops (exit 6) naming the file and the space it needs, run.sqlite and
the cache stay consistent, and once there is room the same command finishes with outputs
identical to an undisturbed run. The full disk is the file-size limit (RLIMIT_FSIZE, as
``ulimit -f``) of the curate process: writes past it fail with EFBIG, as on a full disk,
with no mount and no root."""

from __future__ import annotations

import errno
import os
import resource
import sqlite3
import subprocess
import sys

from eval.scripted_server import parity
from robustft.errors import DiskFull, as_disk_full, is_disk_full

from .conftest import write_jsonl
from .test_cli_e2e import run_cli
from .test_reliability import _outputs, parity_rows

LIMIT = 512 << 10  # bytes any one file of the limited run may grow to


def _limited(args: list[str]) -> subprocess.CompletedProcess:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "ROBUSTFT_MODEL")}
    return subprocess.run([sys.executable, "-m", "robustft.cli.main", *args], capture_output=True,
                          text=True, timeout=300, env={**env, "HF_HUB_OFFLINE": "1"},
                          preexec_fn=cap)


def _integrity(path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def test_a_full_disk_stops_the_run_and_the_rerun_finishes_it(tmp_path, serve):
    srv = serve(parity)
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(150))
    base = ["-i", str(inp), "--base-url", srv.base_url, "--model", "m"]
    ref = run_cli("curate", *base, "-o", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    assert (tmp_path / "ref" / "run.sqlite").stat().st_size > LIMIT  # the limit bites

    run = tmp_path / "run"
    full = _limited(["curate", *base, "-o", str(run)])
    message = " ".join(full.stderr.split())
    assert full.returncode == 6, full.stderr
    assert "Traceback" not in full.stderr and "no space to write" in message
    assert f"{run}/" in message and "free there:" in message and "(ulimit -f)" in message
    assert "needs roughly" in message and "free some space, then rerun" in message
    assert not (run / "decisions.csv").exists()  # stopped before the outputs
    assert _integrity(run / "run.sqlite") == "ok" and _integrity(run / "cache.sqlite") == "ok"

    done = run_cli("curate", *base, "-o", str(run))  # room again: the same command
    assert done.returncode == 0, done.stderr
    assert _outputs(run) == _outputs(tmp_path / "ref")


def test_disk_full_errors_are_recognised():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EFBIG, "File too large"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    full = sqlite3.OperationalError("database or disk is full")
    assert is_disk_full(full) and is_disk_full(RuntimeError("wrapped")) is False
    try:
        try:
            raise full
        except sqlite3.Error as e:
            raise RuntimeError("while saving") from e
    except RuntimeError as outer:
        assert is_disk_full(outer)  # found through the cause
    e = as_disk_full(OSError(errno.ENOSPC, "No space left on device", "/x/y"))
    assert isinstance(e, DiskFull) and e.path == "/x/y" and e.exit_code == 6
