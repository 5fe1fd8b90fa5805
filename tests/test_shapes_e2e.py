"""Curation end to end on every input shape: the first 60 rows of the noisy ARC file converted
to each shape, a scripted endpoint answering the true labels; every kept response is the true
one and every curated file is in its input's shape (types included)."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eval.scripted_server import Reply, mc_reply
from robustft.config import RunOptions
from robustft.data.files import iter_raw_rows
from robustft.graph.runner import curate
from robustft.methods.matching import normalise
from robustft.schemas import LETTERS

from .conftest import read_csv, write_jsonl
from .test_graph import cfg_for

N = 60


def _arc(arc_dir: Path) -> tuple[list[dict], dict[str, tuple[int, list[str]]]]:
    """(noisy rows with options as lists and the given index, truth: question -> (index,
    options))."""
    truth = {r["question"]: (LETTERS.index(r["answer"]), json.loads(r["options"]))
             for r in read_csv(arc_dir / "labeled.csv", N)}
    rows = []
    for r in read_csv(arc_dir / "noisy30.csv", N):
        opts = json.loads(r["options"])
        if LETTERS.index(r["answer"]) < len(opts):
            rows.append({"id": r["id"], "question": r["question"], "options": opts,
                         "given": LETTERS.index(r["answer"])})
    return rows, truth


def _user(r: dict) -> str:
    return r["question"] + "\nOptions: " + " | ".join(r["options"])


def _convert(fmt: str, rows: list[dict], d: Path) -> tuple[Path, str]:
    """The rows written in shape ``fmt``; returns (path, the field holding the response)."""
    def resp(r):
        return r["options"][r["given"]]

    if fmt == "mc_letter_csv":
        out = [{"id": r["id"], "question": r["question"], "answer": LETTERS[r["given"]],
                "options": json.dumps(r["options"])} for r in rows]
        path = d / "mc.csv"
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(out[0]))
            w.writeheader()
            w.writerows(out)
        return path, "answer"
    if fmt == "mc_index_jsonl":  # the Hub layout: choices + 0-based integer answer
        return write_jsonl(d / "hf.jsonl", [{"id": r["id"], "question": r["question"],
                                             "choices": r["options"], "answer": r["given"]}
                                            for r in rows]), "answer"
    if fmt == "mc_text_python_csv":
        path = d / "text.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "question", "choices", "answer"])
            w.writerows([[r["id"], r["question"], str(r["options"]), resp(r)] for r in rows])
        return path, "answer"
    if fmt == "mc_dict_parquet":
        path = d / "dict.parquet"
        pq.write_table(pa.Table.from_pylist([{
            "id": r["id"], "question": r["question"],
            "choices": {"text": r["options"], "label": list(LETTERS[:len(r["options"])])},
            "answerKey": LETTERS[r["given"]]} for r in rows]), path)
        return path, "answerKey"
    if fmt == "messages":
        return write_jsonl(d / "chat.jsonl", [{"id": r["id"], "messages": [
            {"role": "system", "content": "Reply with the right option's text."},
            {"role": "user", "content": _user(r)},
            {"role": "assistant", "content": resp(r)}]} for r in rows]), "messages"
    if fmt == "messages_multi_turn_json":
        path = d / "multi.json"
        path.write_text(json.dumps([{"id": r["id"], "messages": [
            {"role": "user", "content": "Ready for a science question?"},
            {"role": "assistant", "content": "Yes."},
            {"role": "user", "content": _user(r)},
            {"role": "assistant", "content": resp(r)}]} for r in rows]))
        return path, "messages"
    if fmt == "prompt_completion":
        return write_jsonl(d / "pc.jsonl", [{"id": r["id"], "prompt": _user(r),
                                             "completion": resp(r)} for r in rows]), "completion"
    if fmt == "prompt_completion_conversational":
        return write_jsonl(d / "pcc.jsonl", [{
            "id": r["id"], "prompt": [{"role": "user", "content": _user(r)}],
            "completion": [{"role": "assistant", "content": resp(r)}]} for r in rows]), \
            "completion"
    if fmt == "alpaca":
        return write_jsonl(d / "alpaca.jsonl", [{
            "id": r["id"], "instruction": r["question"],
            "input": "Options: " + " | ".join(r["options"]) if i % 2 else "",
            "output": resp(r)} for i, r in enumerate(rows)]), "output"
    if fmt == "sharegpt":
        return write_jsonl(d / "share.jsonl", [{"id": r["id"], "conversations": [
            {"from": "human", "value": _user(r)}, {"from": "gpt", "value": resp(r)}]}
            for r in rows]), "conversations"
    if fmt == "save_to_disk":
        datasets = pytest.importorskip("datasets")
        path = d / "ds"
        datasets.Dataset.from_list([{"id": r["id"], "question": r["question"],
                                     "choices": r["options"], "answer": r["given"]}
                                    for r in rows]).save_to_disk(str(path))
        return path, "answer"
    raise AssertionError(fmt)


def same_responses(judge_prompt: str) -> bool:
    reference, audited = judge_prompt.split("Reference response:", 1)[1].split(
        "Response under audit:", 1)
    return normalise(reference) == normalise(audited)


def truthful_script(truth: dict[str, tuple[int, list[str]]]):
    """Answers the target question (after the last 'Question: ') truthfully: the letter when
    the prompt lists lettered options, the option's text otherwise; a judge calls a response
    wrong when it differs from the reference, a correction returns the true option."""
    def script(body: dict) -> Reply:
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        if "Response under audit:" in user:  # the judge: another option's text is wrong
            return Reply("Compared.\nAnswer: " + ("A" if same_responses(user) else "B"))
        correcting = "Response to correct:" in user
        target = (user.split("Prompt:\n", 1)[1] if correcting
                  else user.rsplit("Question: ", 1)[-1])
        q = max((q for q in truth if q in target), key=len)
        i, opts = truth[q]
        if f"\nA. {opts[0]}" in target:
            return mc_reply(LETTERS[i], list(LETTERS[:len(opts)]), 0.9)
        return Reply(f"Checked the options.\nAnswer: {opts[i]}")
    return script


def _response(row: dict, field: str):
    value = row[field]
    if field in ("messages", "conversations"):
        return value[-1]["content" if field == "messages" else "value"]
    if isinstance(value, list):
        return value[-1]["content"]
    return value


FORMATS = ["mc_letter_csv", "mc_index_jsonl", "mc_text_python_csv", "mc_dict_parquet",
           "messages", "messages_multi_turn_json", "prompt_completion",
           "prompt_completion_conversational", "alpaca", "sharegpt", "save_to_disk"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_arc_rows_in_every_shape(tmp_path, serve, arc_dir, fmt):
    rows, truth = _arc(arc_dir)
    path, field = _convert(fmt, rows, tmp_path)
    srv = serve(truthful_script(truth))
    cfg = cfg_for(srv.base_url, selection={"beta": 1.0})
    run = tmp_path / "run"
    summary = asyncio.run(curate(cfg, path, run))
    assert summary["fates"].get("error", 0) == 0
    noisy = sum(r["given"] != truth[r["question"]][0] for r in rows)
    assert summary["fates"]["relabeled-kept"] == noisy > 5
    detected = json.loads((run / "input_shape.json").read_text())
    inp = list(iter_raw_rows(path))
    out = list(iter_raw_rows(Path(summary["outputs"]["curated"])))
    assert len(out) == len(inp) == len(rows)
    by_id = {r["id"]: r for r in rows}
    for before, after in zip(inp, out, strict=True):
        assert set(after) == set(before)
        for k in before:  # every other field as it was, types included
            if k != field:
                assert after[k] == before[k], k
        i, opts = truth[by_id[before["id"]]["question"]]
        got = _response(after, field)
        assert type(got) is type(_response(before, field))
        want = {"answer": {"letter": LETTERS[i], "index": i if isinstance(got, int) else str(i),
                           "text": opts[i]}.get(detected["answer_encoding"], opts[i]),
                "answerKey": LETTERS[i]}.get(field, opts[i])
        assert got == want, (before["id"], got, want)
    sft = [json.loads(x) for x in (run / "sft.jsonl").open()]
    if detected["conversational"]:
        assert all(s["messages"][-1]["role"] == "assistant" for s in sft)
    else:
        assert all(set(s) == {"id", "prompt", "completion"} for s in sft)


def test_hub_multiple_choice_comes_back_with_integer_answers(tmp_path, serve):
    """Regression: a choices + integer-answer file was read as free text and its answers
    rewritten as letters, with exit 0."""
    truth = {"2+1?": (0, ["3", "5", "8"]), "2+3?": (1, ["3", "5", "8"]),
             "4+4?": (2, ["3", "5", "8"]), "1+2?": (0, ["3", "5", "8"])}
    rows = [{"id": f"h{i}", "question": q, "choices": o, "answer": (a + (i == 3)) % 3}
            for i, (q, (a, o)) in enumerate(truth.items())]
    inp = write_jsonl(tmp_path / "hf.jsonl", rows)
    srv = serve(truthful_script(truth))
    summary = asyncio.run(curate(cfg_for(srv.base_url, selection={"beta": 1.0}), inp,
                                 tmp_path / "run", options=RunOptions()))
    assert summary["task"] == "multiple_choice" and summary["fates"]["relabeled-kept"] == 1
    curated = [json.loads(x) for x in (tmp_path / "run" / "curated.jsonl").open()]
    assert [r["answer"] for r in curated] == [0, 1, 2, 0]
    assert all(type(r["answer"]) is int for r in curated)


@pytest.mark.parametrize("fmt", ["messages", "alpaca"])
def test_clear_runs_on_chat_and_instruction_shapes(tmp_path, serve, arc_dir, fmt):
    rows, truth = _arc(arc_dir)
    rows = rows[:12]
    path, field = _convert(fmt, rows, tmp_path)
    base = truthful_script(truth)

    def script(body):  # CLEAR's roles: samplers and corrector tell the truth; reflection and
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        if body["model"] in ("m-certainty", "m-judge"):  # judge compare with the truth
            q = max((q for q in truth if q in user), key=len)
            i, opts = truth[q]
            if body["model"] == "m-certainty":
                proposed = user.split("Proposed response:", 1)[1].split("\n", 1)[0].strip()
                return Reply(f"Checked.\nAnswer: {'A' if proposed == opts[i] else 'B'}")
            cand = user.split("Response B (candidate):", 1)[1].split("\n", 1)[0].strip()
            return Reply(f"Compared.\nAnswer: {'B' if cand == opts[i] else 'A'}")
        return base(body)

    srv = serve(script)
    cfg = cfg_for(srv.base_url, clear={"k": 2, "judge_k": 2})
    for role in ("sampler", "certainty", "corrector", "judge"):
        cfg.roles[role].model = f"m-{role}"
    summary = asyncio.run(curate(cfg, path, tmp_path / "run",
                                 options=RunOptions(method="clear")))
    assert summary["fates"].get("error", 0) == 0 and summary["format"] == fmt
    out = list(iter_raw_rows(Path(summary["outputs"]["curated"])))
    for r in out:
        i, opts = truth[next(x["question"] for x in rows if x["id"] == r["id"])]
        assert _response(r, field) == opts[i]
