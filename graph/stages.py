"""Running one dataset-level stage: one graph invocation per sample, under one bound; and
what a method's steps are given: a block of rows (:class:`Run`), or every block at a
barrier (:class:`Dataset`).

Inside a stage every sample runs its own invocation of the graph compiled once (one ``Send``
fan-out over the whole dataset scales superlinearly); each finished sample is saved at once,
so a rerun on the same run directory skips finished samples.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustft.agents.base import Deps
from robustft.config import Config
from robustft.errors import RunStopped, as_disk_full, is_disk_full
from robustft.llm.client import LLMClient
from robustft.pipeline.records import Record
from robustft.pipeline.setup import Reporter
from robustft.retrieval.embedder import Embedder, load_embedder
from robustft.schemas import Sample, Stage, Verdict
from robustft.store.runstore import RunStore

State = dict[str, Any]  # a per-sample graph's state (any method's)

log = logging.getLogger("robustft")


async def run_stage(graph, states: Iterable[State], deps: Deps,
                    on_done: Callable[[State], None], advance: Callable[[], None]) -> None:
    """Invoke the graph once per state with ``deps`` as its context, at most
    ``deps.config.concurrency`` at a time. A :class:`RunStopped` (a budget, an endpoint
    outage, a full disk) stops the stage: no new sample starts, the samples in flight
    finish or stay unfinished (never error rows), then it is raised."""
    sem = asyncio.Semaphore(deps.config.concurrency)
    tasks: set[asyncio.Task] = set()
    stopped: list[RunStopped] = []

    async def one(state: State) -> None:
        try:
            try:
                out = await graph.ainvoke(state, context=deps)
            except RunStopped:
                raise
            except Exception as e:  # an unexpected failure costs one sample, not the run
                if is_disk_full(e):
                    raise as_disk_full(e) from e
                log.exception("sample %s failed", state["sample"].id)
                out = {**state, "verdict": state.get("verdict") or Verdict.ERROR,
                       "errors": [*state.get("errors", []),
                                  f"internal: {type(e).__name__}: {e}"]}
            finally:
                sem.release()
            on_done(out)
        except RunStopped as e:  # not an error: the sample stays unfinished, resumable
            stopped.append(e)
            return
        except Exception as e:  # saving the sample failed
            if not is_disk_full(e):
                raise
            stopped.append(as_disk_full(e))
            return
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


class Tools:
    """What one process loads once for every block it runs: the embedder (loaded on first
    use)."""

    def __init__(self, config: Config, client: LLMClient):
        self.config, self.client = config, client
        self._embedder: asyncio.Future | None = None

    async def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = asyncio.ensure_future(load_embedder(self.config, self.client))
        return await self._embedder


@dataclass
class Block:
    """One block's store and the record model of its method (what its fates read)."""

    config: Config
    store: RunStore
    record: type[Record]

    def records(self, stage: Stage | None = None) -> Iterator[Any]:
        """The block's records (of ``stage``), typed, in input order."""
        return map(self.record.read, self.store.records(stage))


@dataclass
class Run(Block):
    """What a sharded step is given: one block of rows (a single-process run: every row),
    its store, agent deps, progress; ``root`` is the run directory (a block's store is a
    shard below it under Ray), ``one_process`` says the barriers run in this process too."""

    deps: Deps
    samples: list[Sample]
    done: dict[str, str]  # id -> stage already finished (for resuming)
    rep: Reporter
    root: Path | None = None
    tools: Tools | None = None
    one_process: bool = True

    def __post_init__(self) -> None:
        self.root = self.root or self.store.dir
        self.tools = self.tools or Tools(self.config, self.deps.client)

    def by_id(self) -> dict[str, Sample]:
        return {s.id: s for s in self.samples}

    def start(self, stage: str, total: int, todo: int) -> None:
        self.rep.start(stage, total)
        for _ in range(total - todo):
            self.rep.advance(stage)


@dataclass
class Dataset:
    """What a barrier is given: the config, the run's own store (its meta: γ, the precision
    cut), the method's record model, progress, and every block's store directory in input
    order (a single-process run: the run directory alone); ``samples()`` streams every
    valid input row."""

    config: Config
    store: RunStore
    record: type[Record]
    rep: Reporter
    dirs: list[Path]
    samples: Callable[[], Iterator[Sample]]
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.store.dir

    def blocks(self) -> Iterator[Block]:
        """Every block, in input order (its store read-only, but the run's own)."""
        for d in self.dirs:
            if d == self.store.dir:
                yield Block(self.config, self.store, self.record)
            elif (d / "run.sqlite").is_file():
                store = RunStore.reader(d)
                try:
                    yield Block(self.config, store, self.record)
                finally:
                    store.close()

    def records(self, stage: Stage | None = None) -> Iterator[Any]:
        """Every block's records (of ``stage``), typed, in input order."""
        for block in self.blocks():
            yield from block.records(stage)
