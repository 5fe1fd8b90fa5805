"""Typed run records: a method's record model declares what is saved, and the graph state,
the decisions.csv columns, the trace and the viewer's data follow from it."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, get_type_hints

from pydantic import Field, model_validator

from robustft.graph import robustft_run
from robustft.graph.methods import METHODS
from robustft.graph.runner import curate
from robustft.graph.state import ClearState, SampleState
from robustft.pipeline.outputs import decision_columns
from robustft.pipeline.records import (
    RECORDS,
    At,
    ClearRecord,
    Column,
    RobustftRecord,
    decision_cells,
)
from robustft.schemas import Stage, Verdict
from robustft.store.runstore import RunStore
from robustft.viewer.data import sample_detail

from .conftest import write_jsonl
from .test_graph import cfg_for, mc_rows, truthful

ROOT = Path(__file__).resolve().parent.parent


class AgreeingRecord(RobustftRecord):
    """A test-only field, computed by the record itself: nothing else is changed."""

    experts_agreeing: Annotated[int | None, At(Stage.DETECTED), Column(group="scores")] = (
        Field(None, title="experts agreeing", description="experts whose answer is the label"))

    @model_validator(mode="after")
    def _count(self):
        if self.sample is not None and self.experts:
            self.experts_agreeing = sum(a == self.sample.label for a in self.experts.values())
        return self


def test_a_field_added_to_the_record_is_saved_in_decisions_and_in_the_trace(tmp_path, serve):
    srv = serve(truthful)
    inp = write_jsonl(tmp_path / "in.jsonl", mc_rows())
    run = tmp_path / "run"
    method = replace(robustft_run.METHOD, record=AgreeingRecord)
    asyncio.run(curate(cfg_for(srv.base_url, selection={"beta": 1.0}), inp, run,
                       method=method))
    store = RunStore.open_existing(run)
    saved = {r["id"]: r.get("experts_agreeing") for r in store.records()}
    store.close()
    assert saved == {"q0": 2, "q1": 0, "q2": 2, "q3": 0, "q4": 2, "q5": 2}  # q1, q3 flipped

    with (run / "decisions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert "experts_agreeing" in rows[0]
    assert {r["id"]: r["experts_agreeing"] for r in rows} == {k: str(v)
                                                              for k, v in saved.items()}

    done = subprocess.run([sys.executable, "-m", "robustft.cli.main", "trace", str(run), "q1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert re.search(r"experts.agreeing: 0\b", done.stdout), done.stdout

    detail = sample_detail(RunStore.reader(run), "q1")
    assert detail["experts_agreeing"] == 0
    assert "experts_agreeing" in [name for name, _ in detail["fields"]]


def test_the_graph_state_is_the_record_and_its_reducers():
    for state, record in ((SampleState, RobustftRecord), (ClearState, ClearRecord)):
        hints = get_type_hints(state, include_extras=True)
        assert set(hints) == {*record.state_fields(), "calls"}
        assert hints["errors"].__metadata__ and hints["calls"].__metadata__
    assert get_type_hints(SampleState, include_extras=True)["experts"].__metadata__
    # the first stage's fields are what --retry-errors keeps
    assert METHODS["robustft"].first_keys == (
        "experts", "reasoning_text", "reasoning_answer", "verdict", "verdict_reason",
        "judgements")
    assert METHODS["clear"].first_keys == (
        "sampled", "similarities", "matches", "judgements", "verdicts", "observed",
        "certainty", "confidence")


def test_decisions_columns_are_one_layout_for_every_method():
    expected = ["id", "row", "fate", "reason", "original_label", "final_label",
                "expert_direct", "expert_reasoning", "verdict", "context_answer", "reviewer_answer",
                "entropy", "entropy_source", "confidence", "neighbour_ids",
                "review_action", "review_response", "review_note", "reviewed_by",
                "reviewed_at", "review_stale", "exported_label"]
    for record in RECORDS.values():
        assert decision_columns(record) == expected
    extra = decision_columns(AgreeingRecord)
    assert extra.index("experts_agreeing") == extra.index("confidence") + 1
    # a CLEAR record writes the RobustFT columns' defaults (one file layout)
    rec = ClearRecord.read({"id": "a", "row": 1, "stage": "scored", "confidence": 0.5})
    assert {c.name: c.value(rec) for c in decision_cells(ClearRecord)} == {
        "expert_direct": None, "expert_reasoning": None, "verdict": None, "context_answer": None,
        "reviewer_answer": None, "entropy": None, "entropy_source": None, "confidence": 0.5,
        "neighbour_ids": "[]"}


def test_old_and_new_records_read_alike():
    """A record from an older version: a key no field declares is kept, a missing field
    takes its default, a string verdict becomes the enum; what is saved is what was set."""
    stored = {"id": "q1", "row": 2, "stage": "detected", "fate": None, "reason": None,
              "final": None, "sample": {"id": "q1", "row": 2, "source": "f:3", "question": "Q?",
                                        "options": ["a", "b"], "label": "A"},
              "experts": {"direct": "B"}, "verdict": "noisy",
              "match_verdicts": {"direct": {"verdict": "contradicts"}}}
    rec = RobustftRecord.read(stored)
    assert rec.verdict is Verdict.NOISY and rec.reviewer_answer is None
    assert rec.model_extra == {"match_verdicts": {"direct": {"verdict": "contradicts"}}}
    assert rec.state(Stage.DETECTED) == {"sample": rec.sample, "experts": {"direct": "B"},
                                         "verdict": Verdict.NOISY}
    state = {"sample": rec.sample, "experts": {"direct": "B"}, "verdict": "noisy",
             "calls": [], "neighbours": [], "observed": float("nan")}
    data = RobustftRecord.from_state(state, Stage.RELABELED).data()
    assert set(data) == {"sample", "experts", "verdict", "neighbours"}  # no calls, no CLEAR key
    assert ClearRecord.from_state({"sample": rec.sample, "observed": float("nan")},
                                  Stage.SCORED).data()["observed"] is None  # NaN is not JSON
    json.dumps(data, default=str)


def test_no_method_is_named_outside_its_registry_and_fate_is_defined_once():
    sources = [p for d in ("robustft", "graph", "agents") for p in (ROOT / d).rglob("*.py")]
    named = re.compile(r"""[!=]= *["'](clear|robustft)["']|["'](clear|robustft)["'] *[!=]=""")
    assert [str(p) for p in sources if named.search(p.read_text())] == []
    defined = [str(p) for p in sources if re.search(r"^class Fate\b", p.read_text(), re.M)]
    assert [Path(p).name for p in defined] == ["schemas.py"]
    assert {m.name for m in METHODS.values()} == set(RECORDS)
