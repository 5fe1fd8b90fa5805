"""Running a curation method: shared set-up, per-sample graph invocations under one
concurrency bound, and the final outputs.

A method (``robustft_run``, ``clear_run``) defines its dataset-level stages, each a barrier
(RobustFT: detect all → index clean → relabel noisy → select). Inside a stage every sample runs
its own invocation of the graph compiled once (one ``Send`` fan-out over the whole dataset
scales superlinearly). Each finished sample is saved at once, so a rerun on the same run
directory skips finished samples.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agents.base import Deps
from robustft.cache import RequestCache
from robustft.client import Budget, BudgetExceeded, LLMClient
from robustft.config import Config, RunOptions, dump_config, resolved_endpoint
from robustft.io import load_samples
from robustft.outputs import write_outputs
from robustft.prompts import load_prompts
from robustft.runstore import RunStore
from robustft.schemas import Sample

from .state import SampleState

log = logging.getLogger("robustft")


class Reporter(Protocol):
    def start(self, stage: str, total: int) -> None: ...
    def advance(self, stage: str) -> None: ...
    def note(self, text: str) -> None: ...


class _Quiet:
    def start(self, stage: str, total: int) -> None: ...
    def advance(self, stage: str) -> None: ...
    def note(self, text: str) -> None:
        log.info(text)


async def run_stage(graph, states: Iterable[SampleState], deps: Deps,
                    on_done: Callable[[SampleState], None], advance: Callable[[], None]) -> None:
    """Invoke the graph once per state, at most ``deps.config.concurrency`` at a time."""
    sem = asyncio.Semaphore(deps.config.concurrency)
    tasks: set[asyncio.Task] = set()
    stopped: list[BudgetExceeded] = []

    async def one(state: SampleState) -> None:
        try:
            out = await graph.ainvoke(state, context=deps)
        except BudgetExceeded as e:  # not an error: the sample stays unfinished, resumable
            stopped.append(e)
            return
        except Exception as e:  # an unexpected failure costs one sample, not the run
            log.exception("sample %s failed", state["sample"].id)
            out = {**state, "verdict": state.get("verdict") or "error",
                   "errors": [*state.get("errors", []), f"internal: {type(e).__name__}: {e}"]}
        finally:
            sem.release()
        on_done(out)
        advance()

    for state in states:
        await sem.acquire()
        if stopped:
            sem.release()
            break
        task = asyncio.create_task(one(state))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    if stopped:
        raise stopped[0]


def check_endpoints(config: Config, roles: Iterable[str]) -> None:
    for role in roles:
        if not resolved_endpoint(config, role)[0]:
            raise ValueError(f"no endpoint for role '{role}': pass --base-url, set "
                             "OPENAI_BASE_URL, or set endpoint.base_url in the config")


def write_snapshot(run_dir: Path, config: Config, prompts: dict) -> None:
    """The run directory's config snapshot and the hashes of the prompts used."""
    (run_dir / "config.yaml").write_text(dump_config(config))
    (run_dir / "prompts.json").write_text(json.dumps(
        {n: {"hash": p.hash, "path": str(p.path)} for n, p in prompts.items()}, indent=1))


def _input_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_run_dir(store: RunStore, digest: str, method: str) -> None:
    for key, value, what in (("input_sha256", digest, "a different input"),
                             ("method", method, "another method")):
        old = store.get_meta(key)
        if old is not None and old != value:
            raise ValueError(f"{store.dir} holds a run over {what}; choose a new --output "
                             "directory")
        store.set_meta(key, value)


def reopen_errors(store: RunStore, first_stage: str, first_keys: tuple[str, ...]) -> int:
    """Make error rows from endpoint failures pending again: a failure in the first stage
    reruns the sample whole; a later failure reruns from the end of the first stage (keeping
    ``first_keys`` of its data). Input-validation errors stay as they are."""
    n = 0
    with store.db:
        for sid, stage in store.db.execute(
                "SELECT id, stage FROM samples WHERE fate='error' AND stage != 'error'").fetchall():
            if stage == first_stage:
                store.db.execute("DELETE FROM samples WHERE id=?", (sid,))
            else:
                data = json.loads(store.db.execute("SELECT data FROM samples WHERE id=?",
                                                   (sid,)).fetchone()[0])
                data = {k: v for k, v in data.items() if k in ("sample", *first_keys)}
                store.db.execute("UPDATE samples SET stage=?, fate=NULL, reason=NULL, "
                                 "final=NULL, entropy=NULL, entropy_source=NULL, data=? "
                                 "WHERE id=?", (first_stage, json.dumps(data), sid))
            n += 1
    return n


@dataclass
class Run:
    """What a method's stages need: the config, the store, agent deps, samples, progress."""

    config: Config
    store: RunStore
    deps: Deps
    samples: list[Sample]
    done: dict[str, str]  # id -> stage already finished (for resuming)
    rep: Reporter

    def by_id(self) -> dict[str, Sample]:
        return {s.id: s for s in self.samples}

    def start(self, stage: str, total: int, todo: int) -> None:
        self.rep.start(stage, total)
        for _ in range(total - todo):
            self.rep.advance(stage)


async def curate(config: Config, input_path: str | Path, run_dir: str | Path,
                 reporter: Reporter | None = None,
                 options: RunOptions | None = None) -> dict[str, Any]:
    """Run a curation method; returns the summary (also written to summary.json).

    Raises BudgetExceeded when a call/token budget stops the run; rerunning continues it.
    """
    from . import clear_run, robustft_run

    rep, opts = reporter or _Quiet(), options or RunOptions()
    method = opts.method
    m = {"robustft": robustft_run, "clear": clear_run}[method]
    input_path, run_dir = Path(input_path), Path(run_dir)
    check_endpoints(config, m.ROLES)
    prompts = load_prompts(config.prompts_dir)
    samples, input_errors, is_mc = load_samples(input_path, config.data)
    store = RunStore(run_dir)
    _check_run_dir(store, _input_digest(input_path), method)
    store.set_meta("input_path", str(input_path.resolve()))
    if opts.embedded:
        store.set_meta("embedded", "1")
    if opts.retry_errors:
        n = reopen_errors(store, m.FIRST_STAGE, m.FIRST_KEYS)
        rep.note(f"retrying {n} error row(s)")
    write_snapshot(run_dir, config, prompts)
    done = store.stages()
    store.save_input_errors(input_errors)
    cache = RequestCache(opts.cache_path or run_dir / "cache.sqlite")
    client = LLMClient(config.endpoint, cache, Budget(opts.max_calls, opts.max_tokens))
    run = Run(config, store, Deps(config=config, client=client, prompts=prompts), samples,
              done, rep)
    try:
        await m.stages(run)
    finally:
        await client.aclose()
        cache.close()
    store.set_fates(m.fates(run))
    summary = write_outputs(store, prompts["sft"], input_path, is_mc, config,
                            {"method": method,
                             "this_invocation": {"endpoint_calls": client.budget.calls,
                                                 "endpoint_tokens": client.budget.tokens,
                                                 "cache_hits": cache.hits}})
    store.close()
    return summary
