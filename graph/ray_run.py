"""``curate --ray``: RobustFT's stages on a Ray cluster, with Ray Data.

The driver streams the input once into blocks of rows (:mod:`robustft.shards`) and makes a
Ray dataset of block numbers. Each stage is a ``map_batches`` over a pool of actors, one block
per batch; an actor runs the same per-sample graph as a single-process run, under the same
asyncio bound (``concurrency`` per actor), and writes the block's shard on the shared run
directory:

1. detect: experts + checker for every sample of the block; the detected samples are
   embedded and written to the shard's ``vectors.parquet``;
2. index (driver): the clean rows of every shard's vectors are streamed into one LanceDB
   table in ``RUN/index``;
3. relabel: the block's noisy samples, neighbours from the shared index; the actor returns
   the (row, entropy) of each selection candidate;
4. select (driver): the global cutoff of the β lowest entropies from every block's selection
   keys (:func:`robustft.methods.selection.cutoff_key`, as a single-process run computes it);
5. finish: fates (:mod:`robustft.pipeline.fates`, as a single-process run) and the shard's
   curated / sft / decisions files;
6. the driver copies the shards' sample records into ``RUN/run.sqlite`` and concatenates the
   output shards in input order. The calls stay in the shards.

A block resumes from its shard: a rerun (or Ray re-running a failed task on a restarted actor)
skips every sample the shard already holds, and the per-request cache (the shard's own, or
``--cache PATH`` shared) answers calls already paid for.
"""

from __future__ import annotations

import asyncio
import gc
import json
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
from robustft.graph import robustft_run as method
from robustft.graph.robustft import build_robustft_graph
from robustft.graph.stages import Run
from robustft.llm.cache import RequestCache
from robustft.llm.client import LLMClient
from robustft.llm.preflight import preflight
from robustft.llm.prompt_files import load_prompts
from robustft.methods.selection import cutoff_key
from robustft.pipeline.contract import Stage
from robustft.pipeline.fates import relabel_candidates, selected_fates
from robustft.pipeline.outputs import write_files, write_summary
from robustft.pipeline.setup import (
    QuietReporter,
    Reporter,
    cap_malloc_arenas,
    collect_less,
    prepare_run,
    write_detection,
)
from robustft.retrieval.embedder import BackgroundEmbedder, Embedder, load_embedder, vectors_of
from robustft.retrieval.index import CleanIndex, index_batch
from robustft.store.lock import lock_run_dir
from robustft.store.runstore import RunStore
from robustft.store.shards import BlockPlan, read_block, shard_dir, write_blocks

VECTORS = "vectors.parquet"


class BlockWorker:
    """A Ray Data actor running one stage on whole blocks (one block per batch). It keeps one
    event loop, one LLM client and one embedder for all the blocks it is given."""

    def __init__(self, stage: str, config_json: str, run_dir: str, input_path: str,
                 shape: dict, cache_path: str | None = None):
        cap_malloc_arenas()  # before this actor's threads start
        self.stage, self.run_dir, self.input_path = stage, Path(run_dir), Path(input_path)
        self.config = Config.model_validate_json(config_json)
        self.prompts = load_prompts(self.config.prompts_dir)
        self.graph = build_robustft_graph()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.client = LLMClient(self.config.endpoint,
                                outage_timeout=self.config.client.outage_timeout)
        self.shared_cache = RequestCache(cache_path) if cache_path else None
        self.embedder: Embedder | None = None
        collect_less()  # the actor's process is ours for its whole life

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        results = []
        for b in batch["block"]:
            work = getattr(self, f"_{self.stage}")(int(b))
            results.append(json.dumps(asyncio.run_coroutine_threadsafe(work, self.loop).result()))
        return {"block": [int(b) for b in batch["block"]], "result": results}

    # ---- one block -----------------------------------------------------------------------
    def _open(self, block: int) -> tuple[Run, RequestCache | None]:
        samples, errors = read_block(self.run_dir, block)
        store = RunStore(shard_dir(self.run_dir, block))
        if self.stage == "detect":
            store.save_input_errors(errors)
        own = None if self.shared_cache else RequestCache(store.dir / "cache.sqlite")
        self.client.cache = self.shared_cache or own
        deps = Deps(config=self.config, client=self.client, prompts=self.prompts)
        return Run(self.config, store, deps, samples, store.stages(), QuietReporter()), own

    @staticmethod
    def _close(run: Run, own: RequestCache | None) -> None:
        run.store.close()
        if own is not None:
            own.close()

    async def _embedder(self) -> Embedder:
        if self.embedder is None:
            self.embedder = await load_embedder(self.config, self.client)
        return self.embedder

    async def _detect(self, block: int) -> dict[str, Any]:
        run, own = self._open(block)
        try:
            background = None
            if self.config.relabel.context:
                background = BackgroundEmbedder(await self._embedder())
            await method.detect(run, self.graph, background)
            if background is not None:
                await self._write_vectors(run, await background.finish())
            return run.store.verdict_counts()
        finally:
            self._close(run, own)

    async def _write_vectors(self, run: Run, known: dict[str, np.ndarray]) -> None:
        """Vectors of the block's detected samples (clean: indexed; noisy: queries)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        by_id = run.by_id()
        detected = run.store.verdicts("clean", "noisy")
        samples = [by_id[sid] for sid, _, _ in detected]
        # (samples detected before a restart are embedded now)
        known = await vectors_of(await self._embedder(), samples, known)
        if not samples:
            return
        batch = index_batch(samples, np.stack([known[s.id] for s in samples]))
        table = pa.Table.from_batches([batch]).append_column(
            "verdict", pa.array([v for _, v, _ in detected], pa.string()))
        tmp = run.store.dir / (VECTORS + ".tmp")
        pq.write_table(table, tmp)
        tmp.replace(run.store.dir / VECTORS)

    async def _relabel(self, block: int) -> dict[str, Any]:
        run, own = self._open(block)
        try:
            index = known = None
            if self.config.relabel.context:
                index = CleanIndex(self.run_dir / "index", await self._embedder()).open()
                known = _noisy_vectors(run.store.dir / VECTORS)
            await method.relabel(run, self.graph, index, known)
            _, cands = relabel_candidates(run.store.records(stage=Stage.RELABELED),
                                          self.config)
            return {"candidates": [c.key for c in cands]}  # JSON keeps Infinity
        finally:
            self._close(run, own)


def finish_blocks(batch: dict[str, np.ndarray], config_json: str, run_dir: str,
                  input_path: str, shape: dict, cutoff: list | None) -> dict[str, list]:
    """Ray task (no actor: nothing to load): fates of each block's relabeled samples from the
    global cutoff, then the block's curated / sft / decisions shard."""
    config = Config.model_validate_json(config_json)
    sft_prompt = load_prompts(config.prompts_dir)["sft"]
    key = tuple(cutoff) if cutoff else None
    results = []
    for b in batch["block"]:
        store = RunStore(shard_dir(Path(run_dir), int(b)))
        try:
            out, cands = relabel_candidates(store.records(stage=Stage.RELABELED), config)
            store.set_fates(out + selected_fates(cands, key, config.selection.beta))
            kept = write_files(store, sft_prompt, Path(input_path), Shape.from_dict(shape))
            results.append(json.dumps({"kept": kept}))
        finally:
            store.close()
    return {"block": [int(b) for b in batch["block"]], "result": results}


def _noisy_vectors(path: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    if not path.is_file():
        return {}
    t = pq.read_table(path, columns=["id", "vector", "verdict"])
    ids, verdicts = t.column("id").to_pylist(), t.column("verdict").to_pylist()
    vecs = t.column("vector").combine_chunks().flatten().to_numpy().reshape(len(ids), -1)
    return {i: v for i, v, verdict in zip(ids, vecs, verdicts, strict=True)
            if verdict == "noisy"}


def _clean_batches(run_dir: Path, blocks: int):
    """The clean rows of every shard's vectors, streamed in block order."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for b in range(blocks):
        path = shard_dir(run_dir, b) / VECTORS
        if not path.is_file():
            continue
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            batch = batch.filter(pc.equal(batch.column("verdict"), "clean"))
            if batch.num_rows:
                yield batch.drop_columns(["verdict"])


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
               options: RunOptions | None = None) -> dict[str, Any]:
    """Run RobustFT on a Ray cluster; returns the summary (also in summary.json)."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise UsageError("--ray needs the 'ray' extra: pip install 'robustft[ray]'") from e
    rep, opts = reporter or QuietReporter(), options or RunOptions()
    if opts.method != "robustft":
        raise UsageError("--ray runs the robustft method only (CLEAR's γ needs every "
                         "sample's confidence before correction: not sharded yet)")
    if any(b is not None for b in opts.budgets(config)):
        raise UsageError("call, token and cost budgets count one process; they do not apply "
                         "to --ray")
    if config.selection.target_precision is not None:
        raise UsageError("selection.target_precision runs in one process for now (the probes "
                         "are not sharded yet): drop --ray or use selection.beta")
    input_path, run_dir = Path(input_path).resolve(), Path(run_dir).resolve()
    lock = lock_run_dir(run_dir)  # re-entrant: the CLI holds it already
    try:
        for note in asyncio.run(preflight(config, method.METHOD.roles)):
            rep.note(note)
        store = prepare_run(config, method.METHOD, input_path, run_dir,
                            embedded=opts.embedded, sharded=True).store
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
            n = sum(_reopen_block_errors(run_dir, b) for b in range(plan.blocks))
            rep.note(f"retrying {n} error row(s)")
        started = _ray_init(address, workers)
        try:
            seconds: dict[str, float] = {}
            kept = _stages(config, input_path, run_dir, plan, workers, rep, opts, seconds)
        finally:
            if started:
                _settle_ray_data()
                ray.shutdown()
        store.merge_shards(plan.blocks)
        _concat_outputs(run_dir, plan.blocks, input_path)
        return write_summary(
            store, input_path, shape, kept, method.METHOD.name,
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


def _reopen_block_errors(run_dir: Path, block: int) -> int:
    """--retry-errors on one block's shard (see :meth:`RunStore.reopen_errors`)."""
    if not (shard_dir(run_dir, block) / "run.sqlite").is_file():
        return 0
    store = RunStore(shard_dir(run_dir, block))
    try:
        return store.reopen_errors(method.METHOD.first_stage, method.METHOD.first_keys)
    finally:
        store.close()


def _stages(config: Config, input_path: Path, run_dir: Path, plan: BlockPlan, workers: int,
            rep: Reporter, opts: RunOptions, seconds: dict[str, float]) -> int:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    blocks = ray.data.from_items([{"block": b} for b in range(plan.blocks)],
                                 override_num_blocks=max(1, plan.blocks))
    common = {"config_json": config.model_dump_json(), "run_dir": str(run_dir),
              "input_path": str(input_path), "shape": plan.shape,
              "cache_path": str(opts.cache_path) if opts.cache_path else None}

    def collect(name: str, ds) -> list[dict]:
        rep.start(name, plan.blocks)
        t0, out = time.perf_counter(), []
        for row in ds.iter_rows():
            out.append(json.loads(row["result"]))
            rep.advance(name)
        seconds[name] = round(time.perf_counter() - t0, 2)
        return out

    def on_actors(name: str) -> list[dict]:
        return collect(name, blocks.map_batches(
            BlockWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs={"stage": name, **common}, num_cpus=1))

    on_actors("detect")
    if config.relabel.context:
        rep.note("indexing the clean samples of every shard")
        t0 = time.perf_counter()
        CleanIndex(run_dir / "index", None).build_from(_clean_batches(run_dir, plan.blocks))
        seconds["index"] = round(time.perf_counter() - t0, 2)
    candidates = [c for r in on_actors("relabel") for c in r["candidates"]]
    cutoff = cutoff_key(candidates, config.selection.beta)
    common.pop("cache_path")
    done = collect("finish", blocks.map_batches(
        finish_blocks, batch_size=1, num_cpus=1,
        fn_kwargs={**common, "cutoff": list(cutoff) if cutoff else None}))
    return sum(r["kept"] for r in done)
