"""The errors a user can act on, each with the exit code the command line gives it.

Everything the user can fix (a bad file, config, prompt, endpoint, command line or run
directory) raises a :class:`UserError`; a run that stops and can be continued by rerunning the
same command raises a :class:`RunStopped` (a budget, an endpoint outage, a full disk). The
command line turns exactly these into ``error: message`` and their exit code; any other
exception is a bug in robustft and ends with its traceback and exit code 1.

=====  ==================================================================================
code   meaning
=====  ==================================================================================
0      done
1      unexpected failure (a bug: the traceback says where)
2      bad usage, config, prompt, input file, endpoint (pre-flight) or run directory
3      done, but some rows ended as errors (listed in decisions.csv)
4      a budget stopped the run (rerun to continue)
5      an endpoint stopped answering for ``client.outage_timeout`` (rerun to continue)
6      the disk is full (free space, then rerun to continue)
130    interrupted (rerun to continue)
=====  ==================================================================================

The user-error classes are also ``ValueError`` (and the stops ``RuntimeError``), as they
were before this family existed, so ``except ValueError`` in callers keeps working.
"""

from __future__ import annotations

import errno
import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path

EXIT_UNEXPECTED, EXIT_USAGE, EXIT_ROW_ERRORS, EXIT_BUDGET = 1, 2, 3, 4
EXIT_OUTAGE, EXIT_DISK_FULL, EXIT_INTERRUPTED = 5, 6, 130


class RobustftError(Exception):
    """An error robustft reports as a message (no traceback) with ``exit_code``."""

    exit_code = EXIT_USAGE


class UserError(RobustftError, ValueError):
    """Something the user can fix; nothing was changed by the failed command (exit 2)."""


class UsageError(UserError):
    """A command-line option or request that cannot be honoured as given."""


class ConfigError(UserError):
    """A config file or value is invalid; the message names the file and field."""


class InputFileError(UserError):
    """The input file as a whole cannot be used (unreadable, undecodable, empty, an unknown
    or ambiguous shape); the message names the file (and line). Bad *rows* are not errors:
    they become error rows and the rest is processed."""


class PromptError(UserError):
    """A prompt file is invalid; the message names the file."""


class EndpointError(UserError):
    """An endpoint failed the pre-flight check (unreachable, model not served, key refused)
    or none is configured; the message names the role, URL and model."""


class RunDirError(UserError):
    """The run directory cannot be used for this command: it holds another run (input,
    method or layout), is not a run directory, or its input is gone."""


class RunDirBusy(RunDirError):
    """Another process holds the run directory's writer lock; the message names it."""


class ServeError(RobustftError, RuntimeError):
    """A model server could not be started or did not become healthy."""


class TrainError(RobustftError, RuntimeError):
    """Training cannot start (missing extra, empty data, unloadable model)."""


class RunStopped(RobustftError, RuntimeError):
    """The run stopped before its end and is resumable: everything finished is committed,
    samples in flight stay unfinished (not error rows), and rerunning the same command
    continues it."""

    exit_code = EXIT_BUDGET
    advice = "rerun the same command to continue"


class BudgetExceeded(RunStopped):
    """A call, token or cost budget is reached: no new calls; the run stops resumably."""

    advice = "rerun the same command (with a larger budget) to continue"


class EndpointOutage(RunStopped):
    """No endpoint of a role answered for ``client.outage_timeout`` seconds."""

    exit_code = EXIT_OUTAGE
    advice = "rerun the same command once the endpoint answers again to continue"


class DiskFull(RunStopped):
    """A write failed for lack of space (ENOSPC, EFBIG, SQLite's 'database or disk is
    full'); run.sqlite and the cache are consistent (each write is one transaction)."""

    exit_code = EXIT_DISK_FULL
    advice = "free some space, then rerun the same command to continue"

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


def message_of(err: RobustftError) -> str:
    """What the command line prints for ``err`` (a stop says how to continue)."""
    if isinstance(err, RunStopped):
        return f"stopped: {err}; the run directory is resumable: {err.advice}"
    return str(err)


_FULL_TEXT = re.compile(r"no space left on device|file too large|disk quota exceeded|"
                        r"database or disk is full|os error (?:27|28|122)\b", re.IGNORECASE)
_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it was raised from) is a write that failed for lack
    of space: ENOSPC, EFBIG (the process's file-size limit), EDQUOT, SQLite's SQLITE_FULL,
    or SQLite's write I/O error while space or the file-size limit is short."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DiskFull):
            return True
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return True
        if isinstance(e, sqlite3.Error):
            name = getattr(e, "sqlite_errorname", "")
            if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR")
                                         and _space_is_short()):
                return True
        if isinstance(e, (OSError, sqlite3.Error)) and _FULL_TEXT.search(str(e)):
            return True  # an error from native code (LanceDB, Arrow) that only says it
        e = e.__cause__ or e.__context__
    return False


def as_disk_full(err: BaseException, path: str | None = None) -> DiskFull:
    """``err`` (a failed write, :func:`is_disk_full`) as a :class:`DiskFull` naming the file
    that could not grow (``path`` when the error does not say)."""
    if isinstance(err, DiskFull):
        return err
    e: BaseException | None = err
    while e is not None and not (isinstance(e, OSError) and e.filename):
        e = e.__cause__ or e.__context__
    where = (e.filename if e is not None else None) or path
    return DiskFull(str(err), str(where) if where else None)


@contextmanager
def writes_to(path: str | Path):
    """Around a write to ``path``: a failure for lack of space raises :class:`DiskFull`
    naming it (SQLite's errors do not name their file)."""
    try:
        yield
    except (OSError, sqlite3.Error) as e:
        if is_disk_full(e):
            raise as_disk_full(e, str(path)) from e
        raise


def _space_is_short() -> bool:
    """A file-size limit is set (``ulimit -f``), or the working directory's disk is under
    64 MiB free: a failed SQLite write is then taken for a full disk."""
    import resource
    import shutil

    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        return True
    try:
        return shutil.disk_usage(".").free < 64 << 20
    except OSError:
        return False
