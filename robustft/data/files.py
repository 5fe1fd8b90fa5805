"""Reading and validating input rows and writing outputs in kind: JSONL, JSON arrays, CSV,
Parquet, and directories written by ``datasets.Dataset.save_to_disk`` (Arrow files, read with
pyarrow: no hub access).

The dataset's shape (:mod:`robustft.data.shapes`) is detected from its columns and first rows.
File-level problems (unreadable, undecodable, empty, an unknown or ambiguous shape) raise
:class:`InputFileError`. Row-level problems become :class:`InputError` rows naming file and
line, and the other rows are processed. The input is only ever read.

Text files (CSV, JSONL, JSON) are UTF-8 unless a byte-order mark says otherwise (UTF-8,
UTF-16 or UTF-32) or ``data.encoding`` names a codec; bytes that do not decode stop the run
naming file, line and byte offset. Outputs are written to a temporary file and renamed, so a
failed write (a full disk) never leaves a half-written output in place.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from robustft.config import DataConfig
from robustft.data.shapes import DETECT_ROWS, Shape, ShapeError, detect_shape
from robustft.data.text import (
    TextEncoding,
    create_text,
    decode_error,
    open_text,
    text_encoding,
)
from robustft.errors import InputFileError as InputFileError  # its home is the errors family
from robustft.llm.tokens import estimate_tokens
from robustft.methods.matching import normalise
from robustft.schemas import InputError, Sample

FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
HF_DISK = "hf_disk"  # a directory written by datasets.Dataset.save_to_disk


def file_format(path: Path, encoding: str | None = None) -> str:
    """jsonl, json (an array; a ``.json`` file holding JSON lines reads as jsonl), csv,
    parquet, or hf_disk (a ``save_to_disk`` directory)."""
    if path.is_dir():
        if (path / "state.json").is_file():
            return HF_DISK
        raise InputFileError(f"{path}: a directory, but not one written by "
                             "datasets.Dataset.save_to_disk (no state.json)")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputFileError(f"{path}: unsupported format '{path.suffix}'; use "
                             f"{sorted(FORMATS)} or a save_to_disk directory")
    if fmt == "json" and path.is_file():
        enc = text_encoding(path, encoding)
        with path.open("rb") as f:
            raw = f.read(4096)[len(enc.bom_bytes):]
        head = codecs.decode(raw, enc.codec, "replace").lstrip()
        if not head.startswith("["):
            return "jsonl"
    return fmt


def output_name(input_path: Path) -> str:
    """The curated output's name: ``curated`` plus the input's suffix (a directory for a
    save_to_disk input)."""
    return "curated" if input_path.is_dir() else f"curated{input_path.suffix.lower()}"


def _arrow_files(path: Path) -> list[Path]:
    state = json.loads((path / "state.json").read_text())
    return [path / f["filename"] for f in state.get("_data_files", [])]


def _read_raw(path: Path, fmt: str, encoding: str | None = None
              ) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """(location, row dict) per data row, or (location, error message) for unreadable rows;
    text that does not decode raises :class:`InputFileError` naming line and byte."""
    if fmt in ("jsonl", "json", "csv"):
        enc = text_encoding(path, encoding)
        try:
            yield from _read_text(path, fmt, enc)
        except UnicodeDecodeError:
            raise decode_error(path, enc) from None
    else:
        yield from _read_binary(path, fmt)


def _read_text(path: Path, fmt: str, enc: TextEncoding
               ) -> Iterator[tuple[str, dict[str, Any] | str]]:
    if fmt == "jsonl":
        with open_text(path, enc) as f:
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
    elif fmt == "json":
        try:
            with open_text(path, enc) as f:
                items = json.loads(f.read())
        except json.JSONDecodeError as e:
            raise InputFileError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from e
        if not isinstance(items, list):
            raise InputFileError(f"{path}: expected a JSON array of objects")
        for i, obj in enumerate(items, 1):
            yield f"{path}:item {i}", obj if isinstance(obj, dict) else (
                f"expected a JSON object, got {type(obj).__name__}")
    else:
        with open_text(path, enc, newline="") as f:
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


def _read_binary(path: Path, fmt: str) -> Iterator[tuple[str, dict[str, Any] | str]]:
    if fmt == HF_DISK:
        import pyarrow as pa

        i = 0
        try:
            for part in _arrow_files(path):
                with pa.memory_map(str(part)) as source:
                    for batch in pa.ipc.open_stream(source):
                        for row in batch.to_pylist():
                            i += 1
                            yield f"{path}:row {i}", row
        except (OSError, ValueError, KeyError) as e:
            raise InputFileError(f"{path}: cannot read the save_to_disk directory: {e}") from e
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


def _header(path: Path, fmt: str, enc: TextEncoding) -> list[str] | None:
    if fmt == "csv":
        try:
            with open_text(path, enc, newline="") as f:
                return next(csv.reader(f), None)
        except UnicodeDecodeError:
            raise decode_error(path, enc) from None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    if fmt == HF_DISK:
        import pyarrow as pa

        files = _arrow_files(path)
        if files:
            with pa.memory_map(str(files[0])) as source:
                return pa.ipc.open_stream(source).schema.names
    return None


def _long_form(shape: Shape, rows: list[tuple[str, dict[str, Any]]], cfg: DataConfig) -> Shape:
    """A free-text dataset is long-form when the median response of its first rows has more
    than ``data.long_answer_tokens`` normalised tokens."""
    if shape.is_mc:
        return shape
    sizes = []
    for _, row in rows:
        try:
            sizes.append(len(normalise(shape.extract(row)[2])))
        except ValueError:
            continue
    sizes.sort()
    long = bool(sizes) and sizes[len(sizes) // 2] > cfg.long_answer_tokens
    return dataclasses.replace(shape, long_form=long)


def _to_sample(row: dict[str, Any], n: int, loc: str, cfg: DataConfig, shape: Shape) -> Sample:
    question, options, label = shape.extract(row)
    truncated = False
    if cfg.max_prompt_tokens is not None:
        question, truncated = _fit(question, options, cfg)
    given = row.get(cfg.id_column) if cfg.id_column else None
    if given is not None and str(given).strip():
        sid = str(given).strip()
    else:
        key = [question, options] if shape.format in ("multiple_choice", "free_text") else [
            question, options, shape.format]
        sid = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:12]
    long_form = not options and (shape.long_form
                                 or len(normalise(label)) > cfg.long_answer_tokens)
    return Sample(id=sid, row=n, source=loc, question=question, options=options, label=label,
                  raw=row, truncated=truncated, long_form=long_form)


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


def iter_samples(path: str | Path, cfg: DataConfig) -> tuple[Shape, Iterator[Sample | InputError]]:
    """(the detected shape, validated samples and error rows in input order), streamed: the
    file is read as the iterator is consumed (the first rows, up to
    :data:`~robustft.data.shapes.DETECT_ROWS` readable ones, decide the shape). File-level
    problems raise at once."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: input file not found")
    fmt = file_format(p, cfg.encoding)
    text = fmt in ("jsonl", "json", "csv")
    enc = text_encoding(p, cfg.encoding) if text else TextEncoding()
    header = _header(p, fmt, enc)
    rows = _read_raw(p, fmt, cfg.encoding)
    head: list[tuple[str, dict[str, Any] | str]] = []
    readable: list[tuple[str, dict[str, Any]]] = []
    for item in rows:
        head.append(item)
        if isinstance(item[1], dict):
            readable.append(item)  # type: ignore[arg-type]
            if len(readable) >= DETECT_ROWS:
                break
    if not head:
        raise InputFileError(f"{p}: no data rows (empty file)")
    try:
        shape = dataclasses.replace(_long_form(detect_shape(readable, header, cfg), readable,
                                               cfg), encoding=enc.codec, bom=enc.bom,
                                    line_end=_line_end(p, enc) if fmt == "csv" else "\r\n")
    except ShapeError as e:  # a message naming a row carries its location already
        msg = str(e)
        if not msg.startswith(str(p)):
            msg = f"{p}:1: {msg}" if header else f"{p}: {msg}"
        raise InputFileError(msg) from None
    return shape, _validated(p, itertools.chain(head, rows), cfg, shape)


def _line_end(path: Path, enc: TextEncoding) -> str:
    """A CSV file's line ending, from its first line (``\r\n`` when it has none)."""
    with open_text(path, enc, newline="") as f:
        first = f.readline()
    return "\n" if first.endswith("\n") and not first.endswith("\r\n") else "\r\n"


def _validated(p: Path, rows: Iterable[tuple[str, dict[str, Any] | str]], cfg: DataConfig,
               shape: Shape) -> Iterator[Sample | InputError]:
    seen: dict[str, str] = {}  # id -> where it first occurred (location without the path)
    cut = len(str(p)) + 1
    for n, (loc, row) in enumerate(rows, 1):
        raw = row if isinstance(row, dict) else {}
        given = str(raw.get(cfg.id_column, "") or "").strip() if cfg.id_column else ""
        try:
            if isinstance(row, str):
                raise ValueError(row)
            s = _to_sample(row, n, loc, cfg, shape)
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
                                                                Shape]:
    """Validated samples, error rows and the detected shape."""
    shape, items = iter_samples(path, cfg)
    samples: list[Sample] = []
    errors: list[InputError] = []
    for item in items:
        (errors if isinstance(item, InputError) else samples).append(item)
    return samples, errors, shape


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it once the block succeeds (removed
    when it fails: a failed write never leaves a half-written file as ``path``)."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_rows(path: Path, rows: Iterable[dict[str, Any]], fmt: str,
               columns: list[str] | None = None, like: Path | None = None,
               encoding: TextEncoding | None = None, line_end: str = "\r\n") -> int:
    """Write rows in ``fmt``, streamed (JSONL, JSON, CSV) or in batches (Parquet, a
    save_to_disk directory shaped ``like`` the input's); CSV list values are JSON-encoded
    and, without ``columns``, the first row's keys are the header; text in ``encoding``
    (BOM included), CSV lines ending in ``line_end``. A file is written beside its path and
    renamed into place. Returns the row count; a value ``encoding`` cannot hold raises
    ``UnicodeEncodeError`` (and nothing is replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, encoding = iter(rows), encoding or TextEncoding()
    if fmt == HF_DISK:
        return _write_hf_disk(path, rows, like)
    n = 0
    with _replacing(path) as tmp:
        if fmt == "jsonl":
            with create_text(tmp, encoding) as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
                    n += 1
        elif fmt == "json":  # an array, one object per line
            with create_text(tmp, encoding) as f:
                f.write("[")
                for r in rows:
                    f.write(("," if n else "") + "\n" + json.dumps(r, ensure_ascii=False,
                                                                    default=str))
                    n += 1
                f.write("\n]\n")
        elif fmt == "csv":
            first = next(rows, None)
            cols = columns or (list(first) if first else [])
            with create_text(tmp, encoding, newline="") as f:
                w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore",
                                   lineterminator=line_end)
                w.writeheader()
                for r in itertools.chain([first] if first else [], rows):
                    w.writerow({k: json.dumps(v, ensure_ascii=False)
                                if isinstance(v, (list, dict)) else v for k, v in r.items()})
                    n += 1
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            while chunk := list(itertools.islice(rows, 4096)):
                table = pa.Table.from_pylist(chunk)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
                n += len(chunk)
            if writer is None:
                pq.write_table(pa.table({}), tmp)
            else:
                writer.close()
    return n


def _write_hf_disk(path: Path, rows: Iterable[dict[str, Any]], like: Path | None) -> int:
    """A directory ``datasets.load_from_disk`` reads: one Arrow stream file with the input's
    schema, and the input's ``dataset_info.json`` / ``state.json`` naming it."""
    import shutil

    import pyarrow as pa

    path.mkdir(parents=True, exist_ok=True)
    schema = None
    if like is not None and _arrow_files(like):
        with pa.memory_map(str(_arrow_files(like)[0])) as source:
            schema = pa.ipc.open_stream(source).schema
    rows, n, writer = iter(rows), 0, None
    name = "data-00000-of-00001.arrow"
    with pa.OSFile(str(path / name), "wb") as sink:
        while chunk := list(itertools.islice(rows, 4096)):
            table = pa.Table.from_pylist(chunk, schema=schema)
            writer = writer or pa.ipc.new_stream(sink, table.schema)
            writer.write_table(table)
            n += len(chunk)
        if writer is None:
            writer = pa.ipc.new_stream(sink, schema or pa.schema([]))
        writer.close()
    state = json.loads((like / "state.json").read_text()) if like is not None else {}
    state["_data_files"] = [{"filename": name}]
    state["_fingerprint"] = hashlib.sha1(f"robustft:{path}:{n}".encode()).hexdigest()[:16]
    (path / "state.json").write_text(json.dumps(state, indent=2))
    if like is not None and (like / "dataset_info.json").is_file():
        shutil.copyfile(like / "dataset_info.json", path / "dataset_info.json")
    return n


def iter_raw_rows(path: str | Path, encoding: str | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a file as read (unreadable rows skipped): for reading outputs back
    (``encoding``: the input's, when it has no BOM)."""
    p = Path(path)
    for _, row in _read_raw(p, file_format(p, encoding), encoding):
        if isinstance(row, dict):
            yield row
