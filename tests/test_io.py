"""Input reading and validation: every bad row named by file and line, the rest kept."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robustft.config import DataConfig
from robustft.data.files import InputFileError, load_samples, write_rows

from .conftest import write_jsonl

ROWS = [{"id": "a", "question": "Q1?", "options": ["x", "y"], "answer": "B"},
        {"id": "b", "question": "Q2?", "options": ["x", "y", "z"], "answer": "c"}]


def test_jsonl_csv_parquet_read_alike(tmp_path: Path):
    write_jsonl(tmp_path / "d.jsonl", ROWS)
    write_rows(tmp_path / "d.csv", ROWS, "csv")
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.csv", "d.parquet"):
        samples, errors, shape = load_samples(tmp_path / name, DataConfig())
        assert shape.is_mc and not errors
        assert [(s.id, s.options, s.label) for s in samples] == [
            ("a", ["x", "y"], "B"), ("b", ["x", "y", "z"], "C")]


def test_column_mapping_free_text_and_generated_ids(tmp_path: Path):
    rows = [{"prompt": "How many?", "target": "3"}, {"prompt": "Who?", "target": "Ann"}]
    p = write_jsonl(tmp_path / "f.jsonl", rows)
    cfg = DataConfig(question_column="prompt", answer_column="target", id_column=None)
    s1, _, shape = load_samples(p, cfg)
    s2, _, _ = load_samples(p, cfg)
    assert not shape.is_mc and [s.label for s in s1] == ["3", "Ann"]
    assert [s.id for s in s1] == [s.id for s in s2] and len({s.id for s in s1}) == 2


def test_bad_rows_become_errors_with_file_and_line(tmp_path: Path):
    p = tmp_path / "bad.jsonl"
    lines = [json.dumps(ROWS[0]),
             '{"id": "c", "question": "Q3?", "options": ["x", "y"], "answer": "B"',  # malformed
             json.dumps({"id": "d", "question": "Q4?", "options": ["x", "y"], "answer": "E"}),
             json.dumps({"id": "e", "question": "Q5?", "options": "not a list", "answer": "A"}),
             json.dumps({"id": "f", "options": ["x", "y"], "answer": "A"}),
             json.dumps({"id": "a", "question": "Q6?", "options": ["x", "y"], "answer": "A"}),
             json.dumps({"id": "g", "question": ["list"], "options": ["x", "y"], "answer": "A"}),
             json.dumps(ROWS[1])]
    p.write_text("\n".join(lines) + "\n")
    samples, errors, _ = load_samples(p, DataConfig())
    assert [s.id for s in samples] == ["a", "b"]
    reasons = {e.row: e.reason for e in errors}
    assert reasons[2].startswith(f"{p}:2: malformed JSON")
    assert reasons[3] == f"{p}:3: answer 'E' is not an option letter A-B"
    assert reasons[4].startswith(f"{p}:4: options are not a JSON list")
    assert reasons[5] == f"{p}:5: missing column 'question'"
    assert reasons[6] == f"{p}:6: duplicate id 'a' (first at {p}:1)"
    assert "must be text" in reasons[7]
    assert len(samples) + len(errors) == len(lines)


def test_csv_missing_column_and_empty_file(tmp_path: Path):
    p = tmp_path / "m.csv"
    p.write_text("id,question,options\n1,Q?,\"[\"\"a\"\",\"\"b\"\"]\"\n")
    with pytest.raises(InputFileError, match=r"m\.csv:1: missing column\(s\) \['answer'\]"):
        load_samples(p, DataConfig())
    for name, text in (("e.csv", ""), ("e.jsonl", "\n\n"), ("h.csv", "id,question,answer\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(InputFileError, match="empty file"):
            load_samples(tmp_path / name, DataConfig())
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InputFileError, match="unsupported format"):
        load_samples(tmp_path / "x.txt", DataConfig())


def test_csv_short_row_is_an_error_row(tmp_path: Path):
    p = tmp_path / "s.csv"
    p.write_text('id,question,options,answer\n1,Q?,"[""a"",""b""]",A\n2,Q2?\n')
    samples, errors, _ = load_samples(p, DataConfig())
    assert len(samples) == 1 and errors[0].reason == f"{p}:3: row has 2 fields, header has 4"
