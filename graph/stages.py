"""Running one dataset-level stage: one graph invocation per sample, under one bound.

Inside a stage every sample runs its own invocation of the graph compiled once (one ``Send``
fan-out over the whole dataset scales superlinearly); each finished sample is saved at once,
so a rerun on the same run directory skips finished samples.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from robustft.agents.base import Deps
from robustft.config import Config
from robustft.errors import RunStopped, as_disk_full, is_disk_full
from robustft.graph.state import SampleState
from robustft.pipeline.setup import Reporter
from robustft.schemas import Sample
from robustft.store.runstore import RunStore

log = logging.getLogger("robustft")


async def run_stage(graph, states: Iterable[SampleState], deps: Deps,
                    on_done: Callable[[SampleState], None], advance: Callable[[], None]) -> None:
    """Invoke the graph once per state with ``deps`` as its context, at most
    ``deps.config.concurrency`` at a time. A :class:`RunStopped` (a budget, an endpoint
    outage, a full disk) stops the stage: no new sample starts, the samples in flight
    finish or stay unfinished (never error rows), then it is raised."""
    sem = asyncio.Semaphore(deps.config.concurrency)
    tasks: set[asyncio.Task] = set()
    stopped: list[RunStopped] = []

    async def one(state: SampleState) -> None:
        try:
            try:
                out = await graph.ainvoke(state, context=deps)
            except RunStopped:
                raise
            except Exception as e:  # an unexpected failure costs one sample, not the run
                if is_disk_full(e):
                    raise as_disk_full(e) from e
                log.exception("sample %s failed", state["sample"].id)
                out = {**state, "verdict": state.get("verdict") or "error",
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
