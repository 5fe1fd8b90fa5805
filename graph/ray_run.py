"""``curate --ray``: any method's steps on a Ray cluster, with Ray Data.

The driver streams the input once into blocks of rows (:mod:`robustft.store.shards`) and
makes a Ray dataset of block numbers. Then it runs the method's steps in order
(:class:`robustft.pipeline.contract.Step`):

- a sharded step is a ``map_batches`` over a pool of actors, one block per batch; an actor
  runs the step as a single-process run does (the same per-sample graphs, under the same
  asyncio bound, ``concurrency`` per actor) and writes the block's shard on the shared run
  directory;
- a barrier runs at the driver over every shard (RobustFT: build the index from the shards'
  vectors, draw the probes, compute the selection cutoff; CLEAR: γ, the decoys' draw and
  cut), and its parameters travel to the steps after it;
- finish: each block's fates from those parameters (the method's own function, as a
  single-process run calls it) and its curated / sft / decisions shard;
- the driver copies the shards' sample records into ``RUN/run.sqlite`` and concatenates the
  output shards in input order. The calls stay in the shards.

A block resumes from its shard: a rerun (or Ray re-running a failed task on a restarted actor)
skips every sample the shard already holds, and the per-request cache (the shard's own, or
``--cache PATH`` shared) answers calls already paid for.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from robustft.agents.base import Deps
from robustft.config import Config, RunOptions
from robustft.data.files import file_format, iter_raw_rows, output_name, write_rows
from robustft.data.shapes import Shape
from robustft.errors import UsageError
from robustft.graph.methods import method_named
from robustft.graph.stages import Block, Dataset, Run, Tools
from robustft.llm.cache import RequestCache
from robustft.llm.client import LLMClient
from robustft.llm.preflight import preflight
from robustft.llm.prompt_files import load_prompts
from robustft.pipeline.contract import Method, Params, Step
from robustft.pipeline.outputs import write_files, write_summary
from robustft.pipeline.setup import (
    QuietReporter,
    Reporter,
    cap_malloc_arenas,
    collect_less,
    prepare_run,
    write_detection,
)
from robustft.store.lock import lock_run_dir
from robustft.store.runstore import RunStore
from robustft.store.shards import BlockPlan, read_block, shard_dir, write_blocks


class BlockWorker:
    """A Ray Data actor running one sharded step on whole blocks (one block per batch). It
    keeps one event loop, one LLM client and one embedder for all the blocks it is given."""

    def __init__(self, method: Method, step: str, first: bool, params: Params,
                 config_json: str, run_dir: str, cache_path: str | None = None):
        cap_malloc_arenas()  # before this actor's threads start
        self.step: Step = next(s for s in method.steps if s.name == step)
        self.record = method.record
        self.first, self.params, self.run_dir = first, params, Path(run_dir)
        self.config = Config.model_validate_json(config_json)
        self.prompts = load_prompts(self.config.prompts_dir)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.client = LLMClient(self.config.endpoint,
                                outage_timeout=self.config.client.outage_timeout)
        self.tools = Tools(self.config, self.client)
        self.shared_cache = RequestCache(cache_path) if cache_path else None
        collect_less()  # the actor's process is ours for its whole life

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        for b in batch["block"]:
            asyncio.run_coroutine_threadsafe(self._block(int(b)), self.loop).result()
        return {"block": [int(b) for b in batch["block"]]}

    async def _block(self, block: int) -> None:
        samples, errors = read_block(self.run_dir, block)
        store = RunStore(shard_dir(self.run_dir, block))
        if self.first:
            store.save_input_errors(errors)
        own = None if self.shared_cache else RequestCache(store.dir / "cache.sqlite")
        self.client.cache = self.shared_cache or own
        deps = Deps(config=self.config, client=self.client, prompts=self.prompts)
        try:
            await self.step.run(Run(self.config, store, self.record, deps, samples,
                                    store.stages(), QuietReporter(), self.run_dir, self.tools,
                                    one_process=False), self.params)
        finally:
            store.close()
            if own is not None:
                own.close()


def finish_blocks(batch: dict[str, np.ndarray], method: Method, params: Params,
                  config_json: str, run_dir: str, input_path: str, shape: dict
                  ) -> dict[str, list]:
    """Ray task (no actor: nothing to load): the fates of each block's samples from the
    barriers' parameters, then the block's curated / sft / decisions shard."""
    config = Config.model_validate_json(config_json)
    sft_prompt = load_prompts(config.prompts_dir)["sft"]
    kept = []
    for b in batch["block"]:
        store = RunStore(shard_dir(Path(run_dir), int(b)))
        try:
            store.set_fates(method.fates(Block(config, store, method.record), params))
            kept.append(write_files(store, method.record, sft_prompt, Path(input_path),
                                    Shape.from_dict(shape)))
        finally:
            store.close()
    return {"block": [int(b) for b in batch["block"]], "kept": kept}


def _concat_outputs(run_dir: Path, blocks: int, input_path: Path) -> None:
    """Concatenate the shards' curated / sft / decisions files in block (= input) order."""
    for name, kind in ((output_name(input_path), file_format(input_path)),
                       ("sft.jsonl", "jsonl"), ("decisions.csv", "csv")):
        parts = [p for b in range(blocks) if (p := shard_dir(run_dir, b) / name).exists()]
        if kind in ("json", "hf_disk"):  # one array / one Arrow stream: rewrite the rows
            write_rows(run_dir / name, (r for p in parts for r in iter_raw_rows(p)), kind,
                       like=input_path)
        else:
            (_concat_parquet if kind == "parquet" else _concat_text)(parts, run_dir / name,
                                                                     kind == "csv")


def _concat_text(parts: list[Path], out: Path, csv: bool) -> None:
    """JSONL / CSV parts, streamed; CSV keeps one header (a shard with no rows has none)."""
    import shutil

    header = b""
    if csv:
        for p in parts:
            with p.open("rb") as src:
                header = src.readline()
            if header.strip():
                break
    with out.open("wb") as f:
        f.write(header)
        for p in parts:
            with p.open("rb") as src:
                if csv:
                    src.readline()
                shutil.copyfileobj(src, f)


def _concat_parquet(parts: list[Path], out: Path, _csv: bool = False) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for p in parts:
        t = pq.read_table(p)
        if t.num_rows:
            writer = writer or pq.ParquetWriter(out, t.schema)
            writer.write_table(t.cast(writer.schema))
    if writer is None:
        pq.write_table(pa.table({}), out)
    else:
        writer.close()


def _ray_init(address: str, workers: int) -> bool:
    """Connect to (``auto``, ``ray://…``, ``host:port``) or start (``local``) a cluster; True
    when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address == "local":
        ray.init(num_cpus=workers, **kw)
    else:
        ray.init(address=address, **kw)
    return True


def curate_ray(config: Config, input_path: str | Path, run_dir: str | Path, address: str,
               workers: int = 2, block_rows: int = 1000, reporter: Reporter | None = None,
               options: RunOptions | None = None, method: Method | None = None
               ) -> dict[str, Any]:
    """Run a method (``method``, else the one ``options.method`` names) on a Ray cluster;
    returns the summary (also in summary.json)."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise UsageError("--ray needs the 'ray' extra: pip install 'robustft[ray]'") from e
    rep, opts = reporter or QuietReporter(), options or RunOptions()
    m = method or method_named(opts.method)
    if any(b is not None for b in opts.budgets(config)):
        raise UsageError("call, token and cost budgets count one process; they do not apply "
                         "to --ray")
    input_path, run_dir = Path(input_path).resolve(), Path(run_dir).resolve()
    lock = lock_run_dir(run_dir)  # re-entrant: the CLI holds it already
    try:
        for note in asyncio.run(preflight(config, m.roles)):
            rep.note(note)
        store = prepare_run(config, m, input_path, run_dir, embedded=opts.embedded,
                            sharded=True).store
    except BaseException:
        lock.release()
        raise
    try:
        plan = write_blocks(input_path, config.data, run_dir, block_rows)
        shape = Shape.from_dict(plan.shape)
        rep.note(f"detected {shape.describe()}; {plan.rows - plan.invalid} rows"
                 + (f", {plan.invalid} invalid" if plan.invalid else ""))
        write_detection(run_dir, shape, plan.rows - plan.invalid, plan.invalid)
        store.set_meta("block_rows", str(plan.block_rows))
        if opts.retry_errors:
            n = sum(_reopen_block_errors(run_dir, b, m) for b in range(plan.blocks))
            rep.note(f"retrying {n} error row(s)")
        started = _ray_init(address, workers)
        try:
            seconds: dict[str, float] = {}
            kept = _steps(m, config, store, input_path, plan, workers, rep, opts, seconds)
        finally:
            if started:
                _settle_ray_data()
                ray.shutdown()
        store.merge_shards(plan.blocks)
        _concat_outputs(run_dir, plan.blocks, input_path)
        return write_summary(
            store, input_path, shape, kept, m.name,
            extra={"ray": {"address": address, "workers": workers, "blocks": plan.blocks,
                           "block_rows": plan.block_rows, "stage_seconds": seconds}},
            more_outputs={"shards": str(run_dir / "shards")})
    finally:
        store.close()
        lock.release()


def _settle_ray_data(timeout_s: float = 30.0) -> None:
    """Finish shutting down every Ray Data executor of this process before ``ray.shutdown()``.

    An executor shuts down after its last row on another thread (or from ``__del__`` on Ray's
    GC thread) and then calls into Ray; if that call lands after ``ray.shutdown()``, Ray exits
    the whole process (seen once in CI: "The core worker has already been shutdown ... The
    process will exit"). So: collect garbage here, wait for shutdowns in progress (they hold
    the executor's lock), and shut down any executor still running, all while Ray is up.
    """
    gc.collect()
    try:
        from ray.data._internal.execution.streaming_executor import StreamingExecutor
    except ImportError:  # another Ray Data layout: nothing known to wait for
        return
    for ex in [o for o in gc.get_objects() if isinstance(o, StreamingExecutor)]:
        lock = getattr(ex, "_shutdown_lock", None)
        if lock is not None and lock.acquire(timeout=timeout_s):
            lock.release()
        if getattr(ex, "_execution_started", False) and not getattr(ex, "_shutdown", True):
            ex.shutdown(force=False)


def _reopen_block_errors(run_dir: Path, block: int, method: Method) -> int:
    """--retry-errors on one block's shard (see :meth:`RunStore.reopen_errors`)."""
    if not (shard_dir(run_dir, block) / "run.sqlite").is_file():
        return 0
    store = RunStore(shard_dir(run_dir, block))
    try:
        return store.reopen_errors(method.first_stage, method.first_keys)
    finally:
        store.close()


def _samples(run_dir: Path, blocks: int):
    """Every valid input row, streamed from the block files."""
    for b in range(blocks):
        yield from read_block(run_dir, b)[0]


def _steps(m: Method, config: Config, store: RunStore, input_path: Path, plan: BlockPlan,
           workers: int, rep: Reporter, opts: RunOptions, seconds: dict[str, float]) -> int:
    """The method's steps (sharded ones on the actors, barriers here), then each block's
    fates and output shard; returns the kept rows."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    run_dir = store.dir
    blocks = ray.data.from_items([{"block": b} for b in range(plan.blocks)],
                                 override_num_blocks=max(1, plan.blocks))
    data = Dataset(config, store, m.record, rep,
                   [shard_dir(run_dir, b) for b in range(plan.blocks)],
                   lambda: _samples(run_dir, plan.blocks))
    common = {"config_json": config.model_dump_json(), "run_dir": str(run_dir)}
    params: Params = {}

    def collect(name: str, ds) -> list[dict]:
        rep.start(name, plan.blocks)
        t0, out = time.perf_counter(), []
        for row in ds.iter_rows():
            out.append(row)
            rep.advance(name)
        seconds[name] = round(time.perf_counter() - t0, 2)
        return out

    first = True
    for step in m.steps_for(config):
        if step.whole:
            rep.note(f"{m.name}'s step {step.name!r} runs on every row in one process: left "
                     "out under --ray")
            continue
        if not step.sharded:
            t0 = time.perf_counter()
            params |= step.run(data, params)
            seconds[step.name] = round(time.perf_counter() - t0, 2)
            continue
        collect(step.name, blocks.map_batches(
            BlockWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs={"method": m, "step": step.name, "first": first,
                                   "params": params, **common,
                                   "cache_path": str(opts.cache_path) if opts.cache_path
                                   else None}, num_cpus=1))
        first = False
    done = collect("finish", blocks.map_batches(
        finish_blocks, batch_size=1, num_cpus=1,
        fn_kwargs={"method": m, "params": params, **common, "input_path": str(input_path),
                   "shape": plan.shape}))
    return sum(int(r["kept"]) for r in done)
