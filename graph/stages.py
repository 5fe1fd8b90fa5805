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
from robustft.graph.state import SampleState
from robustft.llm.budget import BudgetExceeded
from robustft.pipeline.setup import Reporter
from robustft.schemas import Sample
from robustft.store.runstore import RunStore

log = logging.getLogger("robustft")


async def run_stage(graph, states: Iterable[SampleState], deps: Deps,
                    on_done: Callable[[SampleState], None], advance: Callable[[], None]) -> None:
    """Invoke the graph once per state with ``deps`` as its context, at most
    ``deps.config.concurrency`` at a time."""
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
