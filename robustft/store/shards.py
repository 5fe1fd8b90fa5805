"""Sharded run directories (``curate --ray``): the input split into blocks of rows, one shard
per block, written by whichever worker runs the block.

::

    RUN/blocks/plan.json       block size, block count, rows, task (written last: complete)
    RUN/blocks/NNNNN.jsonl     validated samples and input-error rows of block N, in row order
    RUN/shards/NNNNN/          block N's own run store: run.sqlite (samples + calls),
                               cache.sqlite, vectors.parquet, curated/sft/decisions shards
    RUN/run.sqlite             catalog: every sample's record, merged from the shards at the end;
                               the calls stay in the shards (RunStore reads them there)

Row ``r`` (1-based, input order) belongs to block ``(r - 1) // block_rows``, so a block's
shard is found from a sample's row alone. The driver streams the input once to write the
blocks: it holds the ids seen so far (to report duplicates exactly like a single-process run),
never the rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from robustft.config import DataConfig
from robustft.data.files import iter_samples
from robustft.errors import RunDirError
from robustft.schemas import InputError, Sample

BLOCKS, SHARDS = "blocks", "shards"


@dataclass
class BlockPlan:
    block_rows: int
    blocks: int
    rows: int
    shape: dict  # the detected input shape (robustft.data.shapes.Shape.to_dict)
    invalid: int = 0  # input rows that failed validation


def shard_dir(run_dir: Path, block: int) -> Path:
    return Path(run_dir) / SHARDS / f"{block:05d}"


def block_of(row: int, block_rows: int) -> int:
    return (row - 1) // block_rows


def write_blocks(input_path: Path, cfg: DataConfig, run_dir: Path, block_rows: int
                 ) -> BlockPlan:
    """Split the validated input into block files (once: a complete split is reused)."""
    d = Path(run_dir) / BLOCKS
    plan_path = d / "plan.json"
    if plan_path.is_file():
        plan = BlockPlan(**json.loads(plan_path.read_text()))
        if plan.block_rows != block_rows:
            raise RunDirError(f"{run_dir} was split into blocks of {plan.block_rows} rows; "
                             f"rerun with --block-rows {plan.block_rows}")
        return plan
    d.mkdir(parents=True, exist_ok=True)
    shape, items = iter_samples(input_path, cfg)
    f, current, rows, invalid = None, -1, 0, 0
    try:
        for item in items:
            b = block_of(item.row, block_rows)
            if b != current:
                if f is not None:
                    f.close()
                f, current = (d / f"{b:05d}.jsonl").open("w", encoding="utf-8"), b
            kind = "error" if isinstance(item, InputError) else "sample"
            invalid += kind == "error"
            f.write(json.dumps({"kind": kind, **item.model_dump()}, default=str) + "\n")
            rows = item.row
    finally:
        if f is not None:
            f.close()
    plan = BlockPlan(block_rows, current + 1, rows, shape.to_dict(), invalid)
    tmp = plan_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(plan)))
    os.replace(tmp, plan_path)
    return plan


def read_block(run_dir: Path, block: int) -> tuple[list[Sample], list[InputError]]:
    samples: list[Sample] = []
    errors: list[InputError] = []
    with (Path(run_dir) / BLOCKS / f"{block:05d}.jsonl").open(encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            if item.pop("kind") == "error":
                errors.append(InputError.model_validate(item))
            else:
                samples.append(Sample.model_validate(item))
    return samples, errors
