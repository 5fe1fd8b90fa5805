"""Structured outputs: multiple-choice answers held to a JSON schema of the option letters
where the endpoint accepts ``response_format``, with logprobs kept; an endpoint that refuses
it (HTTP 400) is remembered and asked in free text. Real scripted HTTP servers play both."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from eval.scripted_server import ScriptedServer, parity, write_parity_rows
from robustft.methods.parsing import answer_format, parse_choice
from tests.conftest import ROOT

LETTERS = ["A", "B", "C", "D"]


@pytest.mark.parametrize("text, answer, reasoning", [
    ('{"reasoning": "Whales nurse.", "answer": "B"}', "B", "Whales nurse."),
    ('{"answer": "c"}\nI hope this helps', "C", ""),  # trailing noise
    ('  {"answer": "A"}', "A", ""),
    ("", None, ""),  # empty
    ('{"answer": ', None, '{"answer":'),  # cut off
    ('{"answer": "E"}', None, '{"answer": "E"}'),  # not an option
    ('{"reasoning": "x"}', None, '{"reasoning": "x"}'),  # no answer
    ('{"reasoning": "Answer: D"}\nAnswer: A', "A", '{"reasoning": "Answer: D"}'),  # free text
])
def test_parse_structured_replies(text, answer, reasoning):
    parsed = parse_choice(text, LETTERS)
    assert parsed.answer == answer
    assert parsed.status == ("ok" if answer else "unparsed")
    assert parsed.reasoning == reasoning
    if answer:  # the offset points at the letter (answer logprobs are read there)
        assert text[parsed.start:parsed.end].upper() == answer


def test_answer_format_is_a_strict_enum_schema():
    fmt = answer_format("reasoning", ["A", "B"])
    schema = fmt["json_schema"]["schema"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert list(schema["properties"]) == ["reasoning", "answer"]  # reasoning comes first
    assert schema["properties"]["answer"]["enum"] == ["A", "B"]
    assert schema["required"] == ["reasoning", "answer"]
    assert list(answer_format("answer", ["A"])["json_schema"]["schema"]["properties"]) == [
        "answer"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "robustft.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OPENAI_API_KEY": "x", "COLUMNS": "200"})


def _curate(server: ScriptedServer, tmp_path, name: str, *extra: str):
    inp = tmp_path / "in.jsonl"
    write_parity_rows(inp, 9)
    out = tmp_path / name
    done = _cli("curate", "-i", str(inp), "-o", str(out), "--base-url", server.base_url,
                "--model", "m", *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    calls = [json.loads(d) for (d,) in __import__("sqlite3").connect(
        out / "run.sqlite").execute("SELECT data FROM calls")]
    return json.loads((out / "summary.json").read_text()), calls, done


def test_accepting_endpoint_holds_answers_and_keeps_logprobs(tmp_path):
    with ScriptedServer(parity, structured="accept") as server:
        summary, calls, _ = _curate(server, tmp_path, "run")
        sent = [b for b in server.requests if "response_format" in b]
    held = [c for c in calls if c["structured"]]
    assert held and {c["role"] for c in held} >= {"direct", "reasoning"}
    assert len(sent) == len(held)  # every structured call went out with its schema
    for body in sent:
        assert "stop" not in body  # the schema ends the reply
        assert body["response_format"]["json_schema"]["schema"]["properties"]["answer"][
            "enum"] == ["A", "B"]
    for c in held:
        assert json.loads(c["raw"])["answer"] == c["answer"]
        if c["role"] == "direct":  # the answer token's alternatives are still read
            assert {t.strip('" ') for t, _ in c["answer_top_logprobs"]} == {"A", "B"}
    assert summary["by_role"]["direct"]["structured"] == summary["by_role"]["direct"]["calls"]
    assert sum(v["unparsed"] for v in summary["by_role"].values()) == 0


def test_refusing_endpoint_is_remembered_and_asked_in_free_text(tmp_path):
    with ScriptedServer(parity, structured="reject") as server:
        summary, calls, done = _curate(server, tmp_path, "run")
        refused = [b for b in server.requests if "response_format" in b]
        assert len(refused) == 1  # asked once, then remembered for the endpoint
        assert "refused structured outputs" in done.stderr
        assert not any(c["structured"] for c in calls)
        assert all(c["parse_status"] == "ok" for c in calls)
        assert summary["failed_calls"] == 0
        before = len(server.requests)
        # a rerun in a new process is answered from the cache: same keys, refused or not
        _, _, again = _curate(server, tmp_path, "run")
        assert len(server.requests) == before, again.stdout


def test_switched_off_and_free_text_send_no_schema(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("endpoint:\n  structured_outputs: false\n")
    with ScriptedServer(parity, structured="accept") as server:
        _curate(server, tmp_path, "off", "-c", str(cfg))
        assert not any("response_format" in b for b in server.requests)
