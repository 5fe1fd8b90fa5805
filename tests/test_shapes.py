"""Dataset shapes: detection, row in (question, options, label) and row out in the input's own
encoding; ambiguous files stop with the column and row named; bad rows become error rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robustft.config import DataConfig
from robustft.data.files import InputFileError, load_samples, write_rows
from robustft.schemas import InputError

from .conftest import write_jsonl

OPTS = ["3", "5", "8"]


def _load(tmp_path: Path, rows: list[dict], name: str = "d.jsonl", **cfg):
    path = tmp_path / name
    write_jsonl(path, rows) if name.endswith(".jsonl") else write_rows(path, rows, "csv")
    return load_samples(path, DataConfig(**cfg))


@pytest.mark.parametrize("answers, encoding, restored", [
    (["B", "c"], "letter", ["B", "C"]),
    ([1, 2], "index", [1, 2]),
    (["Q5", "Q8"], "text", ["Q5", "Q8"]),
])
def test_multiple_choice_answer_encodings_round_trip(tmp_path, answers, encoding, restored):
    opts = [f"Q{o}" for o in OPTS]
    rows = [{"id": f"r{i}", "question": f"Q{i}?", "choices": opts, "answer": a}
            for i, a in enumerate(answers)]
    samples, errors, shape = _load(tmp_path, rows)
    assert not errors and shape.format == "multiple_choice"
    assert (shape.options_column, shape.answer_encoding) == ("choices", encoding)
    assert [s.label for s in samples] == ["B", "C"]
    out = [shape.restore(s.raw, s.label) for s in samples]
    assert [r["answer"] for r in out] == restored
    assert [type(r["answer"]) for r in out] == [type(x) for x in restored]
    # a relabel writes the new option in the same encoding, every other field untouched
    moved = shape.restore(samples[0].raw, "A")
    assert moved == {**rows[0], "answer": {"letter": "A", "index": 0, "text": "Q3"}[encoding]}


def test_csv_python_literal_choices_and_string_indices(tmp_path):
    rows = [{"question": "2+1?", "choices": str(OPTS), "answer": "0"},
            {"question": "2+3?", "choices": str(OPTS), "answer": "1"}]
    samples, errors, shape = _load(tmp_path, rows, "d.csv")
    assert not errors and shape.options_encoding == "python"
    assert shape.answer_encoding == "index" and [s.label for s in samples] == ["A", "B"]
    assert [s.options for s in samples] == [OPTS, OPTS]
    assert shape.restore(samples[1].raw, "C")["answer"] == "2"  # a CSV string stays a string


def test_hub_dict_choices_with_answer_key(tmp_path):
    rows = [{"id": "x", "question": "Which?", "choices": {"text": ["a", "b", "c"],
                                                          "label": ["1", "2", "3"]},
             "answerKey": "2"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    samples, errors, shape = load_samples(tmp_path / "d.parquet", DataConfig())
    assert not errors and (shape.answer_column, shape.options_encoding) == ("answerKey", "dict")
    assert samples[0].label == "B" and samples[0].options == ["a", "b", "c"]
    assert shape.restore(samples[0].raw, "C")["answerKey"] == "3"


def test_integer_answers_out_of_range_stop_naming_column_and_row(tmp_path):
    rows = [{"question": f"Q{i}?", "choices": OPTS, "answer": a} for i, a in enumerate(
        [1, 2, 3])]
    with pytest.raises(InputFileError, match=r"d\.jsonl:3: column 'answer' holds integer "
                                             r"answers, but 3 is out of range"):
        _load(tmp_path, rows)


def test_an_index_out_of_range_among_zero_based_answers_is_an_error_row(tmp_path):
    rows = [{"question": f"Q{i}?", "choices": OPTS, "answer": a} for i, a in enumerate(
        [0, 2, 7, 1])]
    samples, errors, shape = _load(tmp_path, rows)
    assert shape.answer_encoding == "index" and [s.label for s in samples] == ["A", "C", "B"]
    assert errors[0].reason.endswith("d.jsonl:3: answer 7 is not a 0-based option index 0-2")


def test_two_readings_that_disagree_stop(tmp_path):
    rows = [{"question": "Q?", "choices": ["1", "0", "2"], "answer": "1"},
            {"question": "R?", "choices": ["1", "0", "2"], "answer": "2"}]
    with pytest.raises(InputFileError, match=r"d\.jsonl:1: column 'answer' value '1' is "
                                             r"ambiguous: it reads as index .* or text"):
        _load(tmp_path, rows)
    samples, _, shape = _load(tmp_path, rows, answer_encoding="text")
    assert shape.answer_encoding == "text" and [s.label for s in samples] == ["A", "C"]


def test_a_letter_out_of_range_is_an_error_row(tmp_path):
    rows = [{"question": "Q?", "options": ["x", "y", "z"], "answer": "B"},
            {"question": "R?", "options": ["x", "y", "z"], "answer": "D"}]
    samples, errors, shape = _load(tmp_path, rows)
    assert shape.answer_encoding == "letter" and len(samples) == 1
    assert "d.jsonl:2: answer 'D' is not an option letter A-C" in errors[0].reason


CHAT = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Lyon."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome is the capital of Italy."}]


def test_messages_last_assistant_turn_is_audited(tmp_path):
    rows = [{"id": "m1", "messages": CHAT, "meta": {"src": "x"}},
            {"id": "m2", "messages": [{"role": "user", "content": "Hi?"},
                                      {"role": "assistant", "content": "Hello."}]},
            {"id": "bad1", "messages": [{"role": "user", "content": "No reply?"}]},
            {"id": "bad2", "messages": [{"role": "user", "content": "Empty?"},
                                        {"role": "assistant", "content": "  "}]}]
    samples, errors, shape = _load(tmp_path, rows)
    assert shape.format == "messages" and shape.conversational
    assert [s.label for s in samples] == ["Rome is the capital of Italy.", "Hello."]
    assert samples[0].question == ("System: Be brief.\n\nUser: Capital of France?\n\n"
                                   "Assistant: Lyon.\n\nUser: And of Italy?")
    assert samples[1].question == "Hi?"
    assert ["no assistant turn" in errors[0].reason, "empty response" in errors[1].reason] == [
        True, True]
    assert errors[0].reason.startswith(str(tmp_path / "d.jsonl") + ":3:")
    out = shape.restore(samples[0].raw, "Rome.")
    assert out["messages"][:4] == CHAT[:4] and out["messages"][4] == {
        "role": "assistant", "content": "Rome."} and out["meta"] == {"src": "x"}
    assert shape.prompt_messages(samples[0].raw) == CHAT[:4]


def test_prompt_completion_plain_and_conversational(tmp_path):
    plain = [{"prompt": "2+2=", "completion": "4"}]
    samples, _, shape = _load(tmp_path, plain)
    assert (shape.format, shape.conversational) == ("prompt_completion", False)
    assert shape.restore(samples[0].raw, "5") == {"prompt": "2+2=", "completion": "5"}
    conv = [{"prompt": [{"role": "user", "content": "2+2?"}],
             "completion": [{"role": "assistant", "content": "4"}]}]
    samples, _, shape = _load(tmp_path, conv, "c.jsonl")
    assert shape.conversational and samples[0].question == "2+2?"
    assert shape.restore(samples[0].raw, "5")["completion"] == [{"role": "assistant",
                                                                 "content": "5"}]


def test_alpaca_with_and_without_input_and_sharegpt(tmp_path):
    rows = [{"instruction": "Translate to French.", "input": "cat", "output": "chien"},
            {"instruction": "Name a prime.", "input": "", "output": "4"}]
    samples, _, shape = _load(tmp_path, rows)
    assert shape.format == "alpaca"
    assert [s.question for s in samples] == ["Translate to French.\n\ncat", "Name a prime."]
    assert shape.restore(samples[0].raw, "chat") == {**rows[0], "output": "chat"}
    share = [{"conversations": [{"from": "system", "value": "Be nice."},
                                {"from": "human", "value": "Sky colour?"},
                                {"from": "gpt", "value": "Green."}]}]
    samples, _, shape = _load(tmp_path, share, "s.jsonl")
    assert shape.format == "sharegpt" and samples[0].label == "Green."
    assert samples[0].question == "System: Be nice.\n\nUser: Sky colour?"
    out = shape.restore(samples[0].raw, "Blue.")
    assert out["conversations"][-1] == {"from": "gpt", "value": "Blue."}
    assert shape.prompt_messages(samples[0].raw) == [{"role": "system", "content": "Be nice."},
                                                     {"role": "user", "content": "Sky colour?"}]


def test_json_array_and_save_to_disk_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"id": "a", "question": "Q?", "choices": OPTS, "answer": 2}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    samples, _, shape = load_samples(tmp_path / "d.json", DataConfig())
    assert shape.answer_encoding == "index" and samples[0].label == "C"
    datasets.Dataset.from_list([{**rows[0], "id": f"a{i}"} for i in range(3)]).save_to_disk(
        str(tmp_path / "ds"))
    samples, errors, shape = load_samples(tmp_path / "ds", DataConfig())
    assert not errors and len(samples) == 3 and samples[0].raw["answer"] == 2
    write_rows(tmp_path / "out", [shape.restore(s.raw, "A") for s in samples], "hf_disk",
               like=tmp_path / "ds")
    back = datasets.load_from_disk(str(tmp_path / "out"))
    assert back.to_list()[0] == {**rows[0], "id": "a0", "answer": 0}
    assert back.features == datasets.load_from_disk(str(tmp_path / "ds")).features


def test_unknown_shape_names_the_columns(tmp_path):
    with pytest.raises(InputFileError, match=r"cannot tell the dataset's shape from its "
                                             r"columns \['text'\]"):
        _load(tmp_path, [{"text": "hello"}])
    samples, errors, _ = _load(tmp_path, [{"question": "Q?", "answer": "A"},
                                          {"question": "R?", "answer": ""}], "f.jsonl")
    assert len(samples) == 1 and isinstance(errors[0], InputError)
    assert "column 'answer' is empty" in errors[0].reason


def test_conversational_sft_rows_read_for_training(tmp_path):
    from robustft.training.train import read_sft

    path = write_jsonl(tmp_path / "sft.jsonl", [
        {"id": "m1", "messages": [*CHAT[:4], {"role": "assistant", "content": "Rome."}]},
        {"id": "p1", "prompt": "2+2=", "completion": "4"}])
    assert read_sft(path) == [
        {"prompt": "System: Be brief.\n\nUser: Capital of France?\n\nAssistant: Lyon.\n\n"
                   "User: And of Italy?\n", "completion": "Rome."},
        {"prompt": "2+2=", "completion": "4"}]
