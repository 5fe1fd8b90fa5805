"""One writer per run directory: an exclusive ``flock`` on ``RUN/writer.lock``.

``curate`` (``--retry-errors`` included) and ``export`` hold it while they write the run's
files; a second writer fails at once with :class:`RunDirBusy` naming the holder (PID, host,
command line, since when), which the lock file records as JSON while it is held. Readers
(``summary``, ``trace``, ``view``, ``report``) never take it. The viewer's review saves do
not either: they go to ``reviews.sqlite``, a database of their own that a run only reads
(each save is one SQLite transaction), so reviewing while a run writes is safe.

The kernel releases a ``flock`` when its holder dies (``kill -9``, a crash, a reboot), so a
lock that can be taken is never held by a live process; a holder record still in the file
then tells that the last writer died without releasing it, and the new holder says so
(:attr:`RunLock.stale`). Locks are re-entrant within one process (the CLI takes the lock
before starting the embedded server, the run takes it again).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from robustft.errors import RunDirBusy

LOCK_FILE = "writer.lock"
RELEASE_WAITS = 40  # tries, 50 ms apart, while a holder that emptied its record unlocks
_held: dict[Path, RunLock] = {}  # this process's locks, by run directory
_guard = threading.Lock()


class RunLock:
    """The writer lock of one run directory, held by this process (see the module doc)."""

    def __init__(self, run_dir: Path, fd: int, stale: dict | None):
        self.dir, self.fd, self.stale, self.depth = run_dir, fd, stale, 1

    def take_stale_note(self) -> str | None:
        """Once: the message saying this lock was taken over from a writer that died."""
        stale, self.stale = self.stale, None
        if stale is None:
            return None
        return (f"{self.dir}: took over the writer lock left by {describe_holder(stale)} "
                "(that process is gone: killed, crashed or rebooted); continuing its run")

    def release(self) -> None:
        with _guard:
            self.depth -= 1
            if self.depth:
                return
            _held.pop(self.dir, None)
        try:
            os.ftruncate(self.fd, 0)  # an empty file: released cleanly
        except OSError:
            pass  # a full disk cannot refuse a truncation, but never fail a release
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def describe_holder(h: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.get("since", 0)))
    return (f"pid {h.get('pid')} on {h.get('host')} since {since}: "
            f"{h.get('command') or '?'}")


def _holder(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"pid": "?", "host": "?", "command": "an unreadable holder record"}


def lock_run_dir(run_dir: str | Path, command: str | None = None) -> RunLock:
    """Take the writer lock of ``run_dir`` (created if missing) or raise :class:`RunDirBusy`
    at once. ``command``: what to record as the holder's command line (default: this
    process's ``argv``)."""
    run_dir = Path(run_dir).resolve()
    with _guard:
        if (mine := _held.get(run_dir)) is not None:
            mine.depth += 1
            return mine
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        for _ in range(RELEASE_WAITS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if holder is not None:  # held, not being released: refuse at once
                    os.close(fd)
                    raise RunDirBusy(
                        f"{run_dir} is being written by another robustft process "
                        f"({describe_holder(holder)}); wait for it to finish, stop it, or "
                        "choose another --output") from None
                time.sleep(0.05)  # an empty record: the holder is releasing it now
        else:
            os.close(fd)
            raise RunDirBusy(f"{run_dir} is locked by another process that left no record "
                             f"in {LOCK_FILE}; wait for it to finish")
        try:
            stale = _holder(fd)
            record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "command": command or " ".join(sys.argv),
                                 "since": time.time()}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        lock = _held[run_dir] = RunLock(run_dir, fd, stale)
        return lock
