"""Running a curation method in one process: the run directory's writer lock, the endpoint
pre-flight, shared set-up, the method's stages (each a barrier, every sample its own graph
invocation under one concurrency bound), then fates and the outputs. ``curate --ray``
(:mod:`robustft.graph.ray_run`) shares every step but where the blocks run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robustft.agents.base import Deps
from robustft.config import Config, RunOptions, prices_of
from robustft.data.files import load_samples
from robustft.errors import DiskFull, RunStopped, UsageError, as_disk_full, is_disk_full
from robustft.graph import clear_run, robustft_run
from robustft.graph.stages import Run
from robustft.llm.batch import BatchLedger, BatchQueue
from robustft.llm.budget import Budget
from robustft.llm.cache import RequestCache
from robustft.llm.client import LLMClient
from robustft.llm.preflight import preflight
from robustft.methods.pilot import pilot_rows
from robustft.pipeline.contract import Method
from robustft.pipeline.outputs import write_outputs
from robustft.pipeline.setup import (
    QuietReporter,
    Reporter,
    cap_malloc_arenas,
    check_endpoints,
    collect_less,
    disk_full_stop,
    prepare_run,
    write_detection,
)
from robustft.store.lock import lock_run_dir

METHODS: dict[str, Method] = {m.name: m for m in (robustft_run.METHOD, clear_run.METHOD)}


def method_named(name: str) -> Method:
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}: use {' or '.join(METHODS)}")
    return METHODS[name]


async def curate(config: Config, input_path: str | Path, run_dir: str | Path,
                 reporter: Reporter | None = None,
                 options: RunOptions | None = None) -> dict[str, Any]:
    """Run a curation method; returns the summary (also written to summary.json).

    Holds the run directory's writer lock throughout (:class:`RunDirBusy` when another
    process holds it). Raises a :class:`RunStopped` when a budget, an endpoint outage or a
    full disk stops the run; rerunning continues it.
    """
    rep, opts = reporter or QuietReporter(), options or RunOptions()
    cap_malloc_arenas()  # before the run's threads (LanceDB's, the embedder's) start
    m = method_named(opts.method)
    input_path, run_dir = Path(input_path), Path(run_dir)
    check_endpoints(config, m.roles)  # before reading the input, as prepare_run does
    with lock_run_dir(run_dir) as lock:
        if note := lock.take_stale_note():
            rep.note(note)
        samples, input_errors, shape = load_samples(input_path, config.data)
        drawn = None
        if opts.pilot:  # hook: curate --pilot N runs a seeded draw of the rows (graph/pilot.py)
            samples, input_errors, drawn = pilot_rows(samples, input_errors, opts.pilot,
                                                      config.audit.seed)
        rep.note(f"detected {shape.describe()}; {len(samples)} rows"
                 + (f", {len(input_errors)} invalid" if input_errors else ""))
        if opts.batch != "files":  # offline batch files need no endpoint to answer now
            for note in await preflight(config, m.roles):
                rep.note(note)
        rows = len(samples) + len(input_errors)
        try:
            return await _curate(config, m, input_path, run_dir, samples, input_errors,
                                 shape, rep, opts, drawn)
        except DiskFull as e:
            raise disk_full_stop(e, run_dir, input_path, rows) from e
        except RunStopped:
            raise
        except Exception as e:
            if is_disk_full(e):
                raise disk_full_stop(as_disk_full(e), run_dir, input_path, rows) from e
            raise


async def _curate(config: Config, m: Method, input_path: Path, run_dir: Path, samples,
                  input_errors, shape, rep: Reporter, opts: RunOptions,
                  drawn: dict[str, Any] | None = None) -> dict[str, Any]:
    prepared = prepare_run(config, m, input_path, run_dir, embedded=opts.embedded)
    store, prompts = prepared.store, prepared.prompts
    try:
        if drawn is not None:  # a pilot's draw: how many canaries the whole run plants
            store.set_meta("pilot", json.dumps(drawn))
        write_detection(run_dir, shape, len(samples), len(input_errors))
        if opts.retry_errors:
            n = store.reopen_errors(m.first_stage, m.first_keys)
            rep.note(f"retrying {n} error row(s)")
        done = store.stages()
        store.save_input_errors(input_errors)
        cache = RequestCache(opts.cache_path or run_dir / "cache.sqlite")
        client = LLMClient(config.endpoint, cache, Budget(*opts.budgets(config),
                                                          prices_of(config)),
                           config.client.outage_timeout, rep.note)
        if opts.batch:  # every sample in flight: each round's requests form one batch
            b = config.batch
            client.batch = BatchQueue(BatchLedger(run_dir / "batches.sqlite"),
                                      run_dir / "batches", b.poll_s, b.max_poll_s,
                                      b.completion_window, rep.note,
                                      offline=opts.batch == "files")
            config = config.model_copy(update={"concurrency": max(len(samples), 1)})
        run = Run(config, store, Deps(config=config, client=client, prompts=prompts), samples,
                  done, rep)
        restore_collector = collect_less()
        try:
            await m.stages(run)
        finally:
            restore_collector()
            if client.batch is not None:
                await client.batch.aclose()
            await client.aclose()
            cache.close()
        store.set_fates(m.fates(run))
        return write_outputs(store, prompts["sft"], input_path, shape, m.name,
                             {"this_invocation": {"endpoint_calls": client.budget.calls,
                                                  "endpoint_tokens": client.budget.tokens,
                                                  "endpoint_cost": client.budget.cost,
                                                  **(client.batch.counts() if client.batch
                                                     else {}),
                                                  "cache_hits": cache.hits}})
    finally:
        store.close()
