"""Typed run records: what a run stores about each input row, one pydantic model per method.

A method's record declares every field its per-sample graph writes, once, with a
description. The graph state is made from it (:func:`robustft.graph.state.state_schema`); a
finished stage saves exactly its state fields (``run.sqlite``, ``samples.data``); the
``decisions.csv`` columns, the fates, the outputs, ``robustft trace`` and the viewer read
records through it. Markers in a field's ``Annotated`` metadata say the rest:

- :class:`At`: the stage that writes the field; a field without it is not graph state (the
  ``samples`` table's columns, an input error's row, probe and decoy results);
- :class:`Reduce`: how the updates of parallel nodes combine (a LangGraph reducer);
- :class:`Column`: a ``decisions.csv`` column made from the field.

Records written by older versions stay readable: a missing field takes its default, a key no
field declares is kept as an extra field (``model_extra``).
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from robustft.config import Config
from robustft.errors import RunDirError
from robustft.schemas import Fate, Neighbour, Sample, Stage, Uncertainty, Verdict


@dataclass(frozen=True)
class At:
    """The stage that writes a state field (``None``: every stage)."""

    stage: Stage | None


@dataclass(frozen=True)
class Reduce:
    """How a state field combines the updates of nodes that run in parallel."""

    fn: Callable[[Any, Any], Any]


GROUPS = ("answers", "scores", "evidence", "more")  # decisions.csv: columns group by group


@dataclass(frozen=True)
class Column:
    """A ``decisions.csv`` column made from a record field: ``name`` (default: the field's),
    ``get`` the cell from the field's value (default: the value itself). Every method's
    columns appear in every run's file (one layout), laid out by ``group`` (:data:`GROUPS`),
    then in the order of the methods and their fields; a method without the field writes
    the cell of the field's default."""

    name: str | None = None
    get: Callable[[Any], Any] | None = None
    group: str = "more"

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"column group {self.group!r}: use one of {GROUPS}")


def merge(a: dict | None, b: dict | None) -> dict:
    return {**(a or {}), **(b or {})}


def _finite(x: float | None) -> float | None:
    return None if x is not None and math.isnan(x) else x


Finite = Annotated[float | None, AfterValidator(_finite)]  # NaN is not JSON: stored as None


def _marker(info: FieldInfo, kind: type) -> Any:
    return next((m for m in info.metadata if isinstance(m, kind)), None)


class Row(BaseModel):
    """The ``samples`` table's columns of a record: the run sets them, not the graph."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="the row's id")
    row: int = Field(description="1-based data row in the input file")
    stage: Stage = Field(description="how far the record has come")
    fate: Fate | None = Field(None, description="what became of the row (None: unfinished)")
    reason: str | None = Field(None, description="why")
    final: str | None = Field(None, description="the label or response it is exported with")


class Record(Row):
    """What a run stores about one input row: its :class:`Row` columns; ``sample`` and
    ``errors``, every method's state; a subclass per method declares the rest, and its CLI
    name and uncertainty."""

    method: ClassVar[str]  # the method's CLI name (curate --method)
    uncertainty: ClassVar[Uncertainty]  # its review order: most uncertain first

    sample: Annotated[Sample | None, At(None)] = Field(
        None, description="the validated input row (None: the row failed validation)")
    errors: Annotated[list[str], At(None), Reduce(operator.add)] = Field(
        default_factory=list, description="failed calls and internal errors: the row ends as "
        "an error")
    raw: dict[str, Any] | None = Field(
        None, description="a row that failed validation, as read")

    # ---- the declaration, read by the graph state, the saver, the columns, the views -----
    @classmethod
    def state_fields(cls) -> dict[str, FieldInfo]:
        """The fields the per-sample graph writes (marked :class:`At`), in order."""
        return {n: f for n, f in cls.model_fields.items() if _marker(f, At) is not None}

    @classmethod
    def stage_of(cls, name: str) -> Stage | None:
        return _marker(cls.model_fields[name], At).stage

    @classmethod
    def written_at(cls, stage: Stage) -> tuple[str, ...]:
        """The state fields that ``stage`` writes (not those of every stage)."""
        return tuple(n for n in cls.state_fields() if cls.stage_of(n) == stage)

    @classmethod
    def reducer(cls, name: str) -> Callable[[Any, Any], Any] | None:
        r = _marker(cls.model_fields[name], Reduce)
        return r.fn if r else None

    @classmethod
    def columns(cls) -> list[tuple[str, str, Column]]:
        """(column name, field name, column) of every field marked :class:`Column`."""
        return [(m.name or n, n, m) for n, f in cls.model_fields.items() for m in f.metadata
                if isinstance(m, Column)]

    # ---- one record -----------------------------------------------------------------------
    @classmethod
    def from_state(cls, state: Mapping[str, Any], stage: Stage) -> Self:
        """The record of a per-sample graph's final ``state`` at ``stage`` (validated: a
        value of the wrong type raises here, not in a later reader)."""
        s = state["sample"]
        return cls.model_validate({"id": s.id, "row": s.row, "stage": stage,
                                   **{k: state[k] for k in cls.state_fields() if k in state}})

    @classmethod
    def read(cls, stored: Mapping[str, Any]) -> Self:
        """A stored record (the ``samples`` row's columns and its data JSON)."""
        return cls.model_validate(stored)

    def data(self) -> dict[str, Any]:
        """What ``samples.data`` stores: the state fields the graph set (Python values,
        for ``json.dumps``)."""
        return self.model_dump(include=set(self.state_fields()), exclude_unset=True)

    def proposal(self, config: Config) -> str | None:
        """The response the agents propose instead of the given one (None: none)."""
        return None

    def state(self, *stages: Stage) -> dict[str, Any]:
        """The graph state to resume from: the sample, and what ``stages`` wrote."""
        return {n: getattr(self, n) for n in self.state_fields()
                if n in self.model_fields_set and self.stage_of(n) in (None, *stages)}


# ---- RobustFT ---------------------------------------------------------------------------
def _expert(role: str) -> Callable[[dict[str, str | None]], str | None]:
    return lambda answers: answers.get(role)


def _ids(neighbours: list[Neighbour]) -> str:
    return json.dumps([n.id for n in neighbours])


_DETECTED, _RELABELED = At(Stage.DETECTED), At(Stage.RELABELED)


class RobustftRecord(Record):
    """RobustFT: detection by two experts and a checker, then relabeling of the flagged rows
    with retrieved clean neighbours, and selection by the relabel's entropy."""

    method: ClassVar[str] = "robustft"
    uncertainty: ClassVar[Uncertainty] = Uncertainty("entropy", unsure="high")

    experts: Annotated[dict[str, str | None], _DETECTED, Reduce(merge),
                       Column("expert_direct", _expert("direct"), "answers"),
                       Column("expert_reasoning", _expert("reasoning"), "answers")] = Field(
        default_factory=dict, title="expert answers",
        description="each expert's parsed answer (role -> answer; None: unparsed)")
    reasoning_text: Annotated[str | None, _DETECTED] = Field(
        None, description="the reasoning expert's final reply (after reflection)")
    reasoning_answer: Annotated[str | None, _DETECTED] = Field(
        None, description="the reasoning expert's final parsed answer")
    verdict: Annotated[Verdict | None, _DETECTED, Column(group="answers")] = Field(
        None, description="the checker's verdict: clean, noisy, unsure or error")
    verdict_reason: Annotated[str | None, _DETECTED] = Field(
        None, description="why the checker decided so")
    judgements: Annotated[list[dict[str, Any]], _DETECTED] = Field(
        default_factory=list, title="judges' verdicts",
        description="free text: the judge's verdict on the response against each expert's "
        "(ref, verdict, how, p_contradiction, reason)")
    neighbours: Annotated[list[Neighbour], _RELABELED,
                          Column("neighbour_ids", _ids, "evidence")] = Field(
        default_factory=list, title="retrieved clean neighbours",
        description="the clean rows retrieved as examples, nearest first")
    context_answer: Annotated[str | None, _RELABELED, Column(group="answers")] = Field(
        None, description="the answer (or correction) given the neighbours")
    reviewer_answer: Annotated[str | None, _RELABELED, Column(group="answers")] = Field(
        None, description="the reviewer's final answer (or correction): the relabel")
    reviewer_reasoning: Annotated[str | None, _RELABELED] = Field(
        None, description="the reviewer's reasoning")
    entropy: Annotated[float | None, _RELABELED, Column(group="scores")] = Field(
        None, description="the relabel's entropy (selection keeps the lowest)")
    entropy_source: Annotated[str | None, _RELABELED, Column(group="scores")] = Field(
        None, description="what the entropy was computed from (logprobs, agreement, …)")
    answer_distribution: Annotated[dict[str, float] | None, _RELABELED] = Field(
        None, description="the final answer's probability per option")
    probe: dict[str, Any] | None = Field(
        None, description="a clean row relabeled with its label hidden (precision target): "
        "its relabel fields, answer and whether that is the label")

    def proposal(self, config: Config) -> str | None:
        """The relabel: the reviewer's answer, or the context answer without reviewer."""
        return self.reviewer_answer if config.relabel.reviewer else self.context_answer


# ---- CLEAR ------------------------------------------------------------------------------
_SCORED, _CORRECTED = At(Stage.SCORED), At(Stage.CORRECTED)


class ClearRecord(Record):
    """CLEAR: the confidence of the given response (consistency of sampled answers and
    self-reflection), a threshold γ, and corrections of the rows below it."""

    method: ClassVar[str] = "clear"
    uncertainty: ClassVar[Uncertainty] = Uncertainty("confidence", unsure="low")

    sampled: Annotated[list[str | None], _SCORED] = Field(
        default_factory=list, title="sampled answers", description="the k sampled answers")
    similarities: Annotated[list[float], _SCORED] = Field(
        default_factory=list, title="similarities s_i",
        description="each sampled answer's similarity to the response")
    matches: Annotated[list[float], _SCORED] = Field(
        default_factory=list, title="exact matches r_i",
        description="each sampled answer's exact (normalised) match: 0 or 1")
    judgements: Annotated[list[dict[str, Any]], _SCORED] = Field(
        default_factory=list, title="judges' verdicts",
        description="free text judged: the verdict against each sampled answer")
    verdicts: Annotated[list[str | None], _SCORED] = Field(
        default_factory=list, title="reflection verdicts",
        description="self-reflection on the response: correct / incorrect / unsure")
    observed: Annotated[Finite, _SCORED] = Field(
        None, title="O", description="observed consistency of the sampled answers")
    certainty: Annotated[Finite, _SCORED] = Field(
        None, title="S", description="self-reflection certainty")
    confidence: Annotated[Finite, _SCORED, Column(group="scores")] = Field(
        None, title="confidence C", description="C = β·O + (1−β)·S (higher: surer)")
    threshold: Annotated[float | None, _CORRECTED] = Field(
        None, title="threshold γ", description="γ: rows below it are corrected")
    candidate: Annotated[str | None, _CORRECTED] = Field(
        None, description="the corrector's candidate")
    judge_votes: Annotated[list[str | None], _CORRECTED] = Field(
        default_factory=list, description="original / candidate, per sampled judge verdict")
    candidate_verdicts: Annotated[list[str | None], _CORRECTED] = Field(
        default_factory=list, title="reflection on the candidate",
        description="self-reflection verdicts on the candidate")
    judge_confidence: Annotated[float | None, _CORRECTED] = Field(
        None, description="the confidence that the candidate beats the original (adopted "
        "above η)")
    decoy: dict[str, Any] | None = Field(
        None, description="the row's other options scored as its response (precision "
        "target)")

    def proposal(self, config: Config) -> str | None:
        """The corrector's candidate."""
        return self.candidate


RECORDS: dict[str, type[Record]] = {r.method: r for r in (RobustftRecord, ClearRecord)}


def record_of(method: str | None) -> type[Record]:
    """The record model of a run's method (a run too old to name it: the first method)."""
    if method is None:
        return next(iter(RECORDS.values()))
    if method not in RECORDS:
        raise RunDirError(f"the run's method {method!r} is not one of {', '.join(RECORDS)}")
    return RECORDS[method]


@dataclass(frozen=True)
class Cell:
    """One ``decisions.csv`` column of the layout: its field, and the record that owns it."""

    name: str
    field: str
    column: Column
    owner: type[Record]

    def value(self, record: Record) -> Any:
        info = type(record).model_fields.get(self.field)
        value = (getattr(record, self.field) if info is not None else
                 self.owner.model_fields[self.field].get_default(call_default_factory=True))
        return self.column.get(value) if self.column.get else value


def decision_cells(record: type[Record]) -> list[Cell]:
    """The record columns of ``decisions.csv`` for a run of ``record``: every method's, and
    any ``record`` adds (a subclass), group by group."""
    cells: dict[str, Cell] = {}
    for cls in (*RECORDS.values(), record):
        for name, fname, col in cls.columns():
            cells.setdefault(name, Cell(name, fname, col, cls))
    return sorted(cells.values(), key=lambda c: GROUPS.index(c.column.group))
