"""What a curation method is: its record, its steps, the calls it plans, its fates.

Both methods (RobustFT in :mod:`robustft.graph.robustft_run`, CLEAR in
:mod:`robustft.graph.clear_run`) are a :class:`Method`, listed once in
:mod:`robustft.graph.methods`. The single-process run (:mod:`robustft.graph.runner`), the
Ray run (:mod:`robustft.graph.ray_run`) and the dry-run plan read everything they need from
it, so no list of roles, stages, steps or calls exists twice, and no code outside the
registry asks which method it runs.

A method's work is a sequence of :class:`Step`: *sharded* steps run on each block of rows
(a single-process run is one block holding every row; Ray runs the blocks on its workers)
and save their records in the block's store; *barriers* run once, where the run is driven,
after every block finished the steps before, read what they need from every block's store
(a median, a draw of probes, a cutoff) and return parameters for the steps after. Then
:attr:`Method.fates` decides each block's rows with those parameters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from robustft.config import Config
from robustft.pipeline.records import Record
from robustft.schemas import Fate, Sample, Stage, Uncertainty

FateRow = tuple[str, Fate, str, str | None]  # (sample id, fate, why, final label)
Params = dict[str, Any]  # what the barriers found, for the steps after them


@dataclass(frozen=True)
class PlannedCall:
    """Calls one role makes for one sample at one step, for the dry-run plan.

    ``values`` gives the prompt variables beyond the sample's own (``None``: the retrieved
    examples, estimated as ``retrieval.k`` copies of the sample). ``upper_bound`` marks steps
    that run for flagged samples only (or skip unparsed answers); ``at_most(config, rows)``
    caps the step's calls (a step for a drawn subset of the rows, e.g. probes).
    """

    step: str
    role: str
    prompt: str
    per_sample: Callable[[Config, Sample], int]
    values: Callable[[Config, Sample], dict[str, Any]] | None
    upper_bound: bool = False
    at_most: Callable[[Config, int], int] | None = None


def always(config: Config) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    """One dataset-level step of a method.

    - ``sharded``: ``await run(block, params)`` on each block (a
      :class:`robustft.graph.stages.Run`: the block's samples and store); it may run on any
      worker, so it keeps nothing in memory for later steps: what it finds is in its store;
    - otherwise a barrier: ``run(dataset, params)`` once (a
      :class:`robustft.graph.stages.Dataset`: every block's store, the run's own store for
      meta), returning parameters merged into ``params`` for the steps after it;
    - ``whole``: a sharded step that needs every row in one block (a draw over the dataset
      and calls on what it drew, e.g. planted errors): a single-process run runs it, a Ray
      run leaves it out and says so;
    - ``applies(config)``: whether the step runs under this config.
    """

    name: str
    run: Callable[[Any, Params], Awaitable[None] | Params]
    sharded: bool
    whole: bool = False
    applies: Callable[[Config], bool] = always


@dataclass(frozen=True)
class Method:
    """A curation method as the runners see it.

    - ``record``: its record model (:mod:`robustft.pipeline.records`), which also gives its
      CLI name and its review order (:attr:`name`, :attr:`review`);
    - ``first_stage``: the stage every processed sample reaches first (``--retry-errors``
      keeps what it wrote when a later stage failed);
    - ``calls``: every call the method can make, in order (the dry-run plan);
    - ``steps``: its sharded steps and barriers, in order;
    - ``fates(block, params)``: the final (id, fate, why, label) of every processed sample
      of one block (a :class:`robustft.graph.stages.Block`: its store and record model; a
      sample the first stage already decided may be left out: its fate is saved with it).
    """

    record: type[Record]
    first_stage: Stage
    calls: tuple[PlannedCall, ...]
    steps: tuple[Step, ...]
    fates: Callable[[Any, Params], list[FateRow]]

    @property
    def name(self) -> str:
        """The CLI name (``curate --method``)."""
        return self.record.method

    @property
    def review(self) -> Uncertainty:
        """The review order: most uncertain first."""
        return self.record.uncertainty

    @property
    def first_keys(self) -> tuple[str, ...]:
        """The record fields the first stage writes."""
        return self.record.written_at(self.first_stage)

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles the method calls, in order of first use."""
        return tuple(dict.fromkeys(c.role for c in self.calls))

    def steps_for(self, config: Config) -> list[Step]:
        """The steps that run under ``config``, in order."""
        return [s for s in self.steps if s.applies(config)]
