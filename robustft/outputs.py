"""Final outputs of a run, written from the run store in input order.

- ``curated.<ext>``: kept rows (clean + relabeled-kept) in the input's format, label replaced;
- ``sft.jsonl``: ``{"id", "prompt", "completion"}`` with the completion ``Answer: X``;
- ``decisions.csv``: one row per input row with its fate and why;
- ``summary.json``: counts by fate, calls and tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import Config
from .io import file_format, write_rows
from .prompts import Prompt
from .runstore import RunStore
from .schemas import Decision, Sample

DECISION_COLUMNS = ["id", "row", "fate", "reason", "original_label", "final_label",
                    "expert_direct", "expert_reasoning", "context_answer", "reviewer_answer",
                    "entropy", "entropy_source", "confidence", "neighbour_ids"]
KEPT = ("clean", "relabeled-kept")


def decision_of(r: dict[str, Any]) -> Decision:
    sample = r.get("sample") or {}
    reason = r.get("reason") or "not processed"
    if sample.get("truncated"):
        reason += " [question truncated to data.max_prompt_tokens]"
    return Decision(
        id=r["id"], row=r["row"], fate=r.get("fate") or "error", reason=reason,
        original_label=sample.get("label"),
        final_label=r.get("final"), expert_answers=r.get("experts") or {},
        context_answer=r.get("context_answer"), reviewer_answer=r.get("reviewer_answer"),
        entropy=r.get("entropy"), entropy_source=r.get("entropy_source"),
        confidence=r.get("confidence"),
        neighbour_ids=[n["id"] for n in r.get("neighbours") or []])


def _decision_row(d: Decision) -> dict[str, Any]:
    row = d.model_dump(exclude={"expert_answers", "neighbour_ids"})
    row["expert_direct"] = d.expert_answers.get("direct")
    row["expert_reasoning"] = d.expert_answers.get("reasoning")
    row["neighbour_ids"] = json.dumps(d.neighbour_ids)
    return row


def sft_example(prompt: Prompt, sample: Sample, label: str) -> dict[str, str]:
    """One SFT pair; evaluation sends exactly this prompt text. The prompt ends with a
    newline, so that the completion (``Answer: X``) starts on a line of its own once TRL
    concatenates the two."""
    msgs = prompt.render(**sample.prompt_vars())
    return {"id": sample.id, "prompt": "\n\n".join(m["content"] for m in msgs) + "\n",
            "completion": f"Answer: {label}"}


def write_outputs(store: RunStore, sft_prompt: Prompt, input_path: Path, is_mc: bool,
                  config: Config, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The output files and summary.json, streamed from the store (one pass per file)."""
    fmt = file_format(input_path)
    out = store.dir

    def kept():
        for r in store.records():
            if r.get("fate") in KEPT and r.get("final") is not None:
                yield Sample.model_validate(r["sample"]), r["final"]

    curated_path = out / f"curated{input_path.suffix.lower()}"
    n_kept = write_rows(curated_path, ({**s.raw, config.data.answer_column: label}
                                       for s, label in kept()), fmt)
    write_rows(out / "sft.jsonl", (sft_example(sft_prompt, s, label) for s, label in kept()),
               "jsonl")
    write_rows(out / "decisions.csv", (_decision_row(decision_of(r)) for r in store.records()),
               "csv", DECISION_COLUMNS)
    summary = {**store.totals(), "task": "multiple_choice" if is_mc else "free_text",
               "input": str(input_path), "kept": n_kept,
               "outputs": {"curated": str(curated_path), "sft": str(out / "sft.jsonl"),
                           "decisions": str(out / "decisions.csv"),
                           "traces": str(out / "run.sqlite")}, **(extra or {})}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
