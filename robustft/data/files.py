"""Reading and validating input rows (JSONL, CSV, Parquet) and writing outputs in kind.

File-level problems (unreadable, empty, a required column missing from the header) raise
:class:`InputFileError`. Row-level problems become :class:`InputError` rows naming file and
line, and the other rows are processed. The input file is only ever read.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from robustft.config import DataConfig
from robustft.llm.tokens import estimate_tokens
from robustft.schemas import LETTERS, InputError, Sample

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


class InputFileError(ValueError):
    """The input file as a whole cannot be used; the message names the file (and row)."""


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputFileError(f"{path}: unsupported format '{path.suffix}'; use "
                             f"{sorted(FORMATS)}")
    return fmt


def _read_raw(path: Path, fmt: str) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """(location, row dict) per data row, or (location, error message) for unreadable rows."""
    if fmt == "jsonl":
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield f"{path}:{lineno}", f"malformed JSON: {e.msg} at column {e.colno}"
                    continue
                yield f"{path}:{lineno}", obj if isinstance(obj, dict) else (
                    f"expected a JSON object, got {type(obj).__name__}")
    elif fmt == "csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return
            start = reader.line_num + 1
            for values in reader:
                loc, start = f"{path}:{start}", reader.line_num + 1
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    yield loc, f"row has {len(values)} fields, header has {len(header)}"
                    continue
                yield loc, dict(zip(header, values, strict=True))
    else:
        import pyarrow.parquet as pq

        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
            i = 0
            for batch in batches:  # streamed: one batch of rows in memory at a time
                for row in batch.to_pylist():
                    i += 1
                    yield f"{path}:row {i}", row
        except (OSError, ValueError) as e:  # pyarrow's errors for corrupt files
            raise InputFileError(f"{path}: cannot read Parquet: {e}") from e


def _header(path: Path, fmt: str) -> list[str] | None:
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as f:
            return next(csv.reader(f), None)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    return None


def _options(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"options are not a JSON list: {e.msg}") from e
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list):
        raise ValueError(f"options are not a list (got {type(value).__name__})")
    if not 2 <= len(value) <= len(LETTERS):
        raise ValueError(f"need 2 to {len(LETTERS)} options, got {len(value)}")
    if not all(isinstance(o, (str, int, float)) and str(o).strip() for o in value):
        raise ValueError("every option must be a non-empty string")
    return [str(o) for o in value]


def _text(row: dict[str, Any], col: str) -> str:
    if col not in row or row[col] is None:
        raise ValueError(f"missing column '{col}'")
    value = row[col]
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"column '{col}' must be text, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise ValueError(f"column '{col}' is empty")
    return text


def _to_sample(row: dict[str, Any], n: int, loc: str, cfg: DataConfig, mc: bool) -> Sample:
    question = _text(row, cfg.question_column)
    label = _text(row, cfg.answer_column)
    options: list[str] = []
    if mc:
        if row.get(cfg.options_column) is None:
            raise ValueError(f"missing column '{cfg.options_column}'")
        options = _options(row[cfg.options_column])
        letters = LETTERS[: len(options)]
        label = label.upper().strip("() .")
        if label not in letters:
            raise ValueError(f"answer {row[cfg.answer_column]!r} is not an option letter "
                             f"{letters[0]}-{letters[-1]}")
    truncated = False
    if cfg.max_prompt_tokens is not None:
        question, truncated = _fit(question, options, cfg)
    given = row.get(cfg.id_column) if cfg.id_column else None
    if given is not None and str(given).strip():
        sid = str(given).strip()
    else:
        sid = hashlib.sha1(json.dumps([question, options]).encode()).hexdigest()[:12]
    return Sample(id=sid, row=n, source=loc, question=question, options=options, label=label,
                  raw=row, truncated=truncated)


def _fit(question: str, options: list[str], cfg: DataConfig) -> tuple[str, bool]:
    """Apply the overlong-row policy: (question, truncated?) or ValueError."""
    limit = cfg.max_prompt_tokens
    opt_tokens = sum(estimate_tokens(o) for o in options)
    q_tokens = estimate_tokens(question)
    if q_tokens + opt_tokens <= limit:
        return question, False
    if cfg.overlong == "reject" or opt_tokens >= limit:
        raise ValueError(f"row has ~{q_tokens + opt_tokens} tokens, over "
                         f"data.max_prompt_tokens={limit} (policy: reject)")
    keep = len(question)
    while keep > 0 and estimate_tokens(question[:keep]) + opt_tokens > limit:
        keep = int(keep * 0.9)
    return question[:keep].rstrip() + " …", True


def iter_samples(path: str | Path, cfg: DataConfig
                 ) -> tuple[bool, Iterator[Sample | InputError]]:
    """(multiple choice?, validated samples and error rows in input order), streamed: the
    file is read as the iterator is consumed. File-level problems raise at once."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: input file not found")
    fmt = file_format(p)
    header = _header(p, fmt)
    rows = _read_raw(p, fmt)
    head: list[tuple[str, dict[str, Any] | str]] = []
    for item in rows:  # up to the first readable row: it tells JSONL's columns
        head.append(item)
        if isinstance(item[1], dict):
            break
    if not head:
        raise InputFileError(f"{p}: no data rows (empty file)")
    if header is not None:
        missing = [c for c in (cfg.question_column, cfg.answer_column) if c not in header]
        if missing:
            raise InputFileError(f"{p}:1: missing column(s) {missing}; header has {header}")
        has_options = cfg.options_column in header
    else:
        first = head[-1][1] if isinstance(head[-1][1], dict) else {}
        has_options = cfg.options_column in first
    mc = {"multiple_choice": True, "free_text": False}.get(cfg.task, has_options)
    return mc, _validated(p, itertools.chain(head, rows), cfg, mc)


def _validated(p: Path, rows: Iterable[tuple[str, dict[str, Any] | str]], cfg: DataConfig,
               mc: bool) -> Iterator[Sample | InputError]:
    seen: dict[str, str] = {}  # id -> where it first occurred (location without the path)
    cut = len(str(p)) + 1
    for n, (loc, row) in enumerate(rows, 1):
        raw = row if isinstance(row, dict) else {}
        given = str(raw.get(cfg.id_column, "") or "").strip() if cfg.id_column else ""
        try:
            if isinstance(row, str):
                raise ValueError(row)
            s = _to_sample(row, n, loc, cfg, mc)
            if s.id in seen:
                if given:
                    raise ValueError(f"duplicate id {s.id!r} (first at {p}:{seen[s.id]})")
                s.id = f"{s.id}-{n}"
            seen[s.id] = loc[cut:]
            yield s
        except ValueError as e:
            eid = given if given and given not in seen else f"row-{n}"
            seen.setdefault(eid, loc[cut:])
            yield InputError(id=eid, row=n, source=loc, reason=f"{loc}: {e}", raw=raw)


def load_samples(path: str | Path, cfg: DataConfig) -> tuple[list[Sample], list[InputError],
                                                                bool]:
    """Validated samples, error rows and whether the task is multiple choice."""
    mc, items = iter_samples(path, cfg)
    samples: list[Sample] = []
    errors: list[InputError] = []
    for item in items:
        (errors if isinstance(item, InputError) else samples).append(item)
    return samples, errors, mc


def write_rows(path: Path, rows: Iterable[dict[str, Any]], fmt: str,
               columns: list[str] | None = None) -> int:
    """Write rows in ``fmt``, streamed (JSONL, CSV) or in batches (Parquet); CSV list values
    are JSON-encoded and, without ``columns``, the first row's keys are the header. Returns
    the row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = iter(rows)
    n = 0
    if fmt == "jsonl":
        with path.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
                n += 1
    elif fmt == "csv":
        first = next(rows, None)
        cols = columns or (list(first) if first else [])
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in itertools.chain([first] if first else [], rows):
                w.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict))
                            else v for k, v in r.items()})
                n += 1
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        while chunk := list(itertools.islice(rows, 4096)):
            table = pa.Table.from_pylist(chunk)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
            n += len(chunk)
        if writer is None:
            pq.write_table(pa.table({}), path)
        else:
            writer.close()
    return n
