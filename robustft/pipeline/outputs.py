"""Final outputs of a run, written from the run store in input order, with the people's
reviews (``RUN/reviews.sqlite``) applied where they are not stale.

- ``curated.<ext>``: kept rows (clean + relabeled-kept) in the input's file format and shape,
  only the audited response replaced, in its own encoding (:meth:`Shape.restore`);
- ``sft.jsonl``: TRL's format matching the input: ``{"id", "messages"}`` for conversational
  inputs, ``{"id", "prompt", "completion"}`` otherwise (``Answer: X`` for question/answer
  files, the response itself for instruction files);
- ``decisions.csv``: one row per input row with its fate and why, its review (if any) and the
  label it is exported with;
- ``summary.json``: counts by fate, calls and tokens (and the blind audit's estimates, where
  ``RUN/reviews.sqlite`` holds an audit sample: :mod:`robustft.pipeline.audit`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from robustft.data.files import file_format, output_name, write_rows
from robustft.data.shapes import Shape
from robustft.data.text import TextEncoding
from robustft.errors import RunDirError, UsageError
from robustft.llm.prompt_files import Prompt
from robustft.pipeline.audit import run_audit_summary
from robustft.pipeline.contract import KEPT
from robustft.schemas import Decision, Sample
from robustft.store.lock import lock_run_dir
from robustft.store.reviews import Review, ReviewStore, effective, run_review_summary
from robustft.store.runstore import RunStore

log = logging.getLogger("robustft")

DECISION_COLUMNS = ["id", "row", "fate", "reason", "original_label", "final_label",
                    "expert_direct", "expert_reasoning", "context_answer", "reviewer_answer",
                    "entropy", "entropy_source", "confidence", "neighbour_ids",
                    "review_action", "review_response", "review_note", "reviewed_by",
                    "reviewed_at", "review_stale", "exported_label"]


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


def _decision_row(d: Decision, review: Review | None, kept: bool,
                  label: str | None) -> dict[str, Any]:
    row = d.model_dump(exclude={"expert_answers", "neighbour_ids"})
    row["expert_direct"] = d.expert_answers.get("direct")
    row["expert_reasoning"] = d.expert_answers.get("reasoning")
    row["neighbour_ids"] = json.dumps(d.neighbour_ids)
    if review is not None:
        row.update(review_action=review.action, review_response=review.response,
                   review_note=review.note, reviewed_by=review.reviewer,
                   reviewed_at=datetime.fromtimestamp(review.at, UTC).isoformat(
                       timespec="seconds"),
                   review_stale=review.stale(d.fate, d.final_label))
    row["exported_label"] = label if kept else None
    return row


def sft_example(prompt: Prompt, sample: Sample, label: str) -> dict[str, str]:
    """One SFT pair; evaluation sends exactly this prompt text. The prompt ends with a
    newline, so that the completion (``Answer: X``) starts on a line of its own once TRL
    concatenates the two."""
    msgs = prompt.render(**sample.prompt_vars())
    return {"id": sample.id, "prompt": "\n\n".join(m["content"] for m in msgs) + "\n",
            "completion": f"Answer: {label}"}


def sft_row(prompt: Prompt, sample: Sample, label: str, shape: Shape) -> dict[str, Any]:
    """The SFT example of a kept row, in the TRL format that matches the input's shape."""
    if shape.conversational:
        return {"id": sample.id, "messages": [*shape.prompt_messages(sample.raw),
                                              {"role": "assistant", "content": label}]}
    if shape.format in ("alpaca", "prompt_completion"):
        return {"id": sample.id, "prompt": sample.question, "completion": label}
    return sft_example(prompt, sample, label)


def reviewed_records(store: RunStore, reviews: dict[str, Review]
                     ) -> Iterator[tuple[dict[str, Any], Review | None, bool, str | None]]:
    """Every record in input order with its review and what becomes of it once the review
    applies: (record, review, kept, final response)."""
    for r in store.records():
        review = reviews.get(r["id"])
        kept, label = effective(r.get("fate"), r.get("final"),
                                (r.get("sample") or {}).get("label"), review, KEPT)
        yield r, review, kept, label


def write_files(store: RunStore, sft_prompt: Prompt, input_path: Path, shape: Shape,
                curated: Path | None = None, sft: Path | None = None,
                reviewed_only: bool = False) -> int:
    """The curated, sft and decisions files of ``store`` with the people's reviews applied
    (stale ones are not), streamed (one pass per file); returns the number of kept rows.
    ``curated``/``sft`` default to the run directory's files; ``reviewed_only`` keeps only
    reviewed rows (``robustft export``)."""
    out = store.dir
    reviews = ReviewStore(out).all() if ReviewStore.exists(out) else {}

    def kept():
        for r, review, keep, label in reviewed_records(store, reviews):
            if keep and label is not None and (review is not None or not reviewed_only):
                yield Sample.model_validate(r["sample"]), label

    target = curated or out / output_name(input_path)

    def curated_rows(enc: TextEncoding) -> int:
        return write_rows(target, (shape.restore(s.raw, label) for s, label in kept()),
                          file_format(input_path, shape.encoding), like=input_path,
                          encoding=enc, line_end=shape.line_end)

    try:  # in the input's own encoding, BOM and line endings
        n_kept = curated_rows(TextEncoding(shape.encoding, shape.bom))
    except UnicodeEncodeError as e:
        log.warning("%s: written in UTF-8, not %s: a new response holds %r, which %s cannot "
                    "encode", target, shape.encoding, e.object[e.start:e.end], shape.encoding)
        n_kept = curated_rows(TextEncoding("utf-8", shape.bom))
    write_rows(sft or out / "sft.jsonl",
               (sft_row(sft_prompt, s, label, shape) for s, label in kept()), "jsonl")
    write_rows(out / "decisions.csv", (_decision_row(decision_of(r), review, keep, label)
                                       for r, review, keep, label in
                                       reviewed_records(store, reviews)),
               "csv", DECISION_COLUMNS)
    return n_kept


def write_summary(store: RunStore, input_path: Path, shape: Shape, kept: int, method: str,
                  extra: dict[str, Any] | None = None,
                  more_outputs: dict[str, str] | None = None) -> dict[str, Any]:
    """summary.json of a finished run (single-process or Ray): totals from the store, the
    task and shape, the outputs, the method, and ``extra`` facts of this invocation."""
    out = store.dir
    summary = {**store.totals(), "task": shape.task, "format": shape.format,
               "input": str(input_path), "kept": kept,
               "outputs": {"curated": str(out / output_name(input_path)),
                           "sft": str(out / "sft.jsonl"),
                           "decisions": str(out / "decisions.csv"),
                           "traces": str(out / "run.sqlite"), **(more_outputs or {})},
               "method": method, **(extra or {})}
    if (audit := run_audit_summary(out, store)) is not None:  # only where people audited
        summary["audit"] = audit
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def write_outputs(store: RunStore, sft_prompt: Prompt, input_path: Path, shape: Shape,
                  method: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The output files and summary.json of a single-process run."""
    kept = write_files(store, sft_prompt, input_path, shape)
    return write_summary(store, input_path, shape, kept, method, extra)


def export_run(run_dir: str | Path, output: Path, reviewed_only: bool = False
               ) -> tuple[int, dict[str, Any] | None]:
    """``robustft export``: the run's curated data with its reviews applied, written to
    ``output`` in the input's format and shape (``sft.jsonl`` beside it, ``decisions.csv``
    rewritten in the run: under the run's writer lock); returns (rows written, review
    statistics or None)."""
    from robustft.config import load_config
    from robustft.llm.prompt_files import load_prompts

    store = RunStore.open_existing(run_dir)
    try:
        with lock_run_dir(run_dir):
            input_path = Path(store.get_meta("input_path") or "")
            if not input_path.exists():
                raise RunDirError(f"{run_dir}: its input {input_path} is gone; export reads "
                                  "the rows from it")
            if output.suffix.lower() != ("" if input_path.is_dir()
                                         else input_path.suffix.lower()):
                raise UsageError(f"{output}: write the input's format ({input_path.name}): "
                                 f"use the suffix {input_path.suffix or '(none: a directory)'}")
            shape = Shape.from_dict(json.loads((store.dir / "input_shape.json").read_text()))
            config = load_config(store.dir / "config.yaml")
            sft_prompt = load_prompts(config.prompts_dir)["sft"]
            n = write_files(store, sft_prompt, input_path, shape, output,
                            output.parent / "sft.jsonl", reviewed_only)
            return n, run_review_summary(store.dir, store.db)
    finally:
        store.close()
