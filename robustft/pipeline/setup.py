"""Set-up shared by every run, single-process or on Ray: endpoint checks, the run directory's
identity (input digest, method), the config snapshot and prompt hashes, progress reporting."""

from __future__ import annotations

import ctypes
import gc
import hashlib
import json
import logging
import resource
import shutil
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from robustft.config import Config, dump_config, resolved_endpoint
from robustft.data.shapes import Shape
from robustft.errors import DiskFull, EndpointError, RunDirError
from robustft.llm.prompt_files import Prompt, load_prompts
from robustft.pipeline.contract import Method
from robustft.store.runstore import RunStore

log = logging.getLogger("robustft")

GC_YOUNG = 10_000  # allocations between young collections while a run is in flight (CPython: 700)
MALLOC_ARENAS = 2  # glibc's default is 8 per core
M_ARENA_MAX = -8  # mallopt's parameter number (glibc malloc.h)


def cap_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas at ``MALLOC_ARENAS`` for threads created from now on (call it
    before the run starts threads). LanceDB's worker threads each took an arena of their own and
    kept what they freed: building the index and searching it left ~450 MiB more resident at
    100k rows than with 2 arenas (measured). For the rest of the process's life: glibc fixes
    its arena limit when first reached, so it cannot be put back. False where the C library
    is not glibc."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the process's own C library
    return bool(mallopt and mallopt(M_ARENA_MAX, MALLOC_ARENAS))


def collect_less() -> Callable[[], None]:
    """Make the cyclic garbage collector cheap for a run in flight: what is set up by now
    (modules, samples, prompts) is frozen out of its scans, and young collections come every
    ``GC_YOUNG`` allocations instead of 700. Measured on ARC's 1,778 rows (200 ms server,
    concurrency 64): 2,117 collections took 3.0 s of the client's 30 s CPU, old-generation
    ones up to 166 ms each with every call in flight waiting; with this, 43 took 0.2 s.
    Returns the function that puts the collector back as it was."""
    old, freeze = gc.get_threshold(), gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(GC_YOUNG, *old[1:])

    def restore() -> None:
        gc.set_threshold(*old)
        if freeze:
            gc.unfreeze()
    return restore


class Reporter(Protocol):
    def start(self, stage: str, total: int) -> None: ...
    def advance(self, stage: str) -> None: ...
    def note(self, text: str) -> None: ...


class QuietReporter:
    """No progress bars; notes go to the log."""

    def start(self, stage: str, total: int) -> None: ...
    def advance(self, stage: str) -> None: ...
    def note(self, text: str) -> None:
        log.info(text)


def check_endpoints(config: Config, roles: Iterable[str]) -> None:
    for role in roles:
        if not resolved_endpoint(config, role)[0]:
            raise EndpointError(f"no endpoint for role '{role}': pass --base-url, set "
                             "OPENAI_BASE_URL, or set endpoint.base_url in the config")


def write_snapshot(run_dir: Path, config: Config, prompts: dict[str, Prompt]) -> None:
    """The run directory's config snapshot and the hashes of the prompts used."""
    (run_dir / "config.yaml").write_text(dump_config(config))
    (run_dir / "prompts.json").write_text(json.dumps(
        {n: {"hash": p.hash, "path": str(p.path)} for n, p in prompts.items()}, indent=1))


def input_digest(path: Path) -> str:
    """sha256 of the input file (of every file, in name order, of a save_to_disk directory)."""
    h = hashlib.sha256()
    for part in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        with part.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def write_detection(run_dir: Path, shape: Shape, rows: int, invalid: int) -> None:
    """What was detected about the input (``input_shape.json``): shape, task, encoding."""
    (run_dir / "input_shape.json").write_text(json.dumps(
        {**shape.to_dict(), "rows": rows, "invalid_rows": invalid}, indent=1))


def claim_run_dir(store: RunStore, digest: str, method: str) -> None:
    """Record the input and method of a run directory; refuse one that holds another run."""
    for key, value, what in (("input_sha256", digest, "a different input"),
                             ("method", method, "another method")):
        old = store.get_meta(key)
        if old is not None and old != value:
            raise RunDirError(f"{store.dir} holds a run over {what}; choose a new --output "
                             "directory")
        store.set_meta(key, value)


@dataclass
class Prepared:
    """A run directory opened for a method: its store and the prompts in use."""

    store: RunStore
    prompts: dict[str, Prompt]


def prepare_run(config: Config, method: Method, input_path: Path, run_dir: Path,
                embedded: bool = False, sharded: bool = False) -> Prepared:
    """Everything a run does before its first call, single-process or on Ray (``sharded``):
    check that every role has an endpoint, load the prompts, open the store, claim the run
    directory for this input, method and layout, record the input path, write the
    snapshot."""
    check_endpoints(config, method.roles)
    prompts = load_prompts(config.prompts_dir)
    store = RunStore(run_dir)
    try:
        claim_run_dir(store, input_digest(input_path), method.name)
        if store.is_sharded() != sharded and store.sample_count():
            kind = "a Ray (sharded)" if store.is_sharded() else "a single-process"
            raise RunDirError(f"{run_dir} holds {kind} run; choose a new --output")
        store.set_meta("input_path", str(input_path.resolve()))
        if embedded:
            store.set_meta("embedded", "1")
        write_snapshot(run_dir, config, prompts)
    except BaseException:
        store.close()
        raise
    return Prepared(store, prompts)


def _size(path: Path) -> int:
    """Bytes of a file, or of every file under a directory."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n / 1024:,.0f} KiB"


def disk_full_stop(err: DiskFull, run_dir: Path, input_path: Path, rows: int) -> DiskFull:
    """``err`` with what a user needs to continue: the file that could not grow, the free
    space there, and roughly how much more the run needs (what it wrote so far, scaled by
    the rows still to go, plus the output files: about twice the input)."""
    where = Path(err.path) if err.path else run_dir
    try:
        with sqlite3.connect(f"file:{(run_dir / 'run.sqlite').resolve()}?mode=ro",
                             uri=True) as db:
            done = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    except sqlite3.Error:
        done = 0
    used = _size(run_dir) if run_dir.is_dir() else 0
    share = max(done / rows, 0.05) if rows else 1.0
    needed = used / share - used + 2 * _size(input_path) + (16 << 20)  # + SQLite's journals
    try:
        free = f"{_mib(shutil.disk_usage(where.parent if where.is_file() else where).free)}"
    except OSError:
        free = "unknown"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    cap = (f"; this process may not write files over {_mib(limit)} (ulimit -f)"
           if limit != resource.RLIM_INFINITY else "")
    return DiskFull(f"no space to write {where} ({err}); free there: {free}{cap}; the run "
                    f"needs roughly {_mib(needed)} more to finish ({done} of {rows} rows "
                    f"recorded, run directory {_mib(used)})", err.path)
