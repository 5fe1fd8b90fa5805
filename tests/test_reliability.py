"""Reliability: SIGKILL and resume, the request cache, endpoint faults, budgets, bad input."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from eval.scripted_server import GARBAGE, NO_CHOICES, TRUNCATED, Fault, Reply, parity
from robustft.config import DataConfig, EndpointConfig
from robustft.data.files import load_samples
from robustft.errors import EndpointOutage
from robustft.graph.runner import curate
from robustft.llm.client import CallError, LLMClient, Target

from .conftest import write_jsonl
from .test_cli_e2e import run_cli
from .test_graph import cfg_for, mc_rows, truthful

MSG = [{"role": "user", "content": "Question: hi"}]


def parity_rows(n: int) -> list[dict]:
    """Every third label is flipped; the parity of the number is the truth."""
    return [{"id": f"p{i:03d}", "question": f"Is {i} even?", "options": ["yes", "no"],
             "answer": ("A" if i % 2 == 0 else "B") if i % 3 else ("B" if i % 2 == 0 else "A")}
            for i in range(n)]


def _cached(run) -> int:
    try:
        with sqlite3.connect(run / "cache.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
    except sqlite3.Error:
        return 0


def _outputs(run) -> dict[str, bytes]:
    return {f: (run / f).read_bytes() for f in ("curated.jsonl", "sft.jsonl", "decisions.csv")}


@pytest.mark.parametrize("gate_after", [45, 125])  # killed during detect / during relabel
def test_sigkill_mid_run_then_rerun_repeats_no_completed_call(tmp_path, serve, gate_after):
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(40))
    reference = serve(parity)
    res = run_cli("curate", "-i", str(inp), "-o", str(tmp_path / "ref"),
                  "--base-url", reference.base_url, "--model", "m")
    assert res.returncode == 0, res.stderr

    first = serve(parity, gate_after=gate_after)  # answers gate_after requests, then hangs
    run = tmp_path / "run"
    args = ["curate", "-i", str(inp), "-o", str(run), "--model", "m", "--concurrency", "8"]
    proc = subprocess.Popen([sys.executable, "-m", "robustft.cli.main", *args, "--base-url",
                             first.base_url], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while first.held < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    while _cached(run) < len(first.delivered) and time.time() < deadline:
        time.sleep(0.1)  # every reply the client received is in its cache
    proc.kill()
    proc.wait()
    assert first.held >= 2 and len(first.delivered) == gate_after

    second = serve(parity)
    res = run_cli(*args, "--base-url", second.base_url)
    assert res.returncode == 0, res.stderr
    assert _outputs(run) == _outputs(tmp_path / "ref")
    counts = Counter(first.delivered + second.delivered)
    assert max(counts.values()) == 1, "a completed call was sent again"
    assert len(counts) == len(reference.delivered)


def test_rerun_after_completion_costs_no_calls(tmp_path, serve):
    srv = serve(parity)
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(200))
    cfg = cfg_for(srv.base_url)
    asyncio.run(curate(cfg, inp, tmp_path / "run"))
    n = len(srv.requests)
    again = asyncio.run(curate(cfg, inp, tmp_path / "run"))
    assert len(srv.requests) == n and again["this_invocation"]["endpoint_calls"] == 0


def test_shared_cache_and_prompt_edit_reruns_only_that_prompt(tmp_path, serve):
    srv = serve(parity)
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(12))
    cache = tmp_path / "shared.sqlite"
    from robustft.config import RunOptions

    asyncio.run(curate(cfg_for(srv.base_url), inp, tmp_path / "a", options=RunOptions(cache)))
    first = len(srv.requests)
    override = tmp_path / "prompts"
    override.mkdir()
    from robustft.llm.prompt_files import builtin_dir

    text = (builtin_dir() / "reviewer.yaml").read_text().replace("senior reviewer",
                                                                 "meticulous reviewer")
    (override / "reviewer.yaml").write_text(text)
    cfg = cfg_for(srv.base_url, prompts_dir=str(override))
    summary = asyncio.run(curate(cfg, inp, tmp_path / "b", options=RunOptions(cache)))
    new = srv.requests[first:]
    assert new and all(any("meticulous" in m["content"] for m in r["messages"]) for r in new)
    assert len(new) == summary["by_role"]["reviewer"]["calls"]
    assert summary["this_invocation"]["cache_hits"] == summary["calls"] - len(new)


def _chat(url: str, retries: int = 3, timeout_s: float = 5.0, outage_timeout: float = 600.0):
    client = LLMClient(EndpointConfig(max_retries=retries, backoff_s=0.2, timeout_s=timeout_s),
                       outage_timeout=outage_timeout)

    async def go():
        try:
            return await client.chat(Target(url, "m", "NONE"), MSG, temperature=0,
                                     max_tokens=8, top_logprobs=2)
        finally:
            await client.aclose()
    return asyncio.run(go())


@pytest.mark.parametrize("fault", [GARBAGE, TRUNCATED, NO_CHOICES, Fault(500), Fault(503),
                                   Fault(200, body="{}", delay_s=1.5)],
                         ids=["garbage", "truncated", "empty-choices", "500", "503", "timeout"])
def test_each_fault_is_retried_then_succeeds(serve, fault):
    srv = serve(lambda b: Reply("Answer: A"))
    srv.faults.extend([fault, fault])
    c = _chat(srv.base_url, timeout_s=1.0)
    assert c.text == "Answer: A" and c.attempts == 3


@pytest.mark.parametrize("fault,reason", [(GARBAGE, "JSONDecodeError"),
                                          (NO_CHOICES, "no choices")])
def test_each_bad_reply_past_the_limit_is_a_clear_error(serve, fault, reason):
    """A reply that never reads is about this request: an error (its row's) after retries."""
    srv = serve(lambda b: Reply("Answer: A"))
    srv.faults.extend([fault] * 3)
    with pytest.raises(CallError, match=reason):
        _chat(srv.base_url, retries=1, timeout_s=1.0)
    assert len(srv.requests) == 2


@pytest.mark.parametrize("fault,reason", [(TRUNCATED, "connection error"),
                                          (Fault(200, delay_s=1.5), "timeout"),
                                          (Fault(503), "HTTP 503")])
def test_an_endpoint_failing_every_call_is_an_outage(serve, fault, reason):
    """Dropped connections, timeouts and 5xx on every call are the endpoint's: the call waits
    past max_retries, and stops the run (EndpointOutage) once client.outage_timeout passes."""
    srv = serve(lambda b: Reply("Answer: A"))
    srv.faults.extend([fault] * 100)
    with pytest.raises(EndpointOutage, match=f"outage_timeout 2 s.*{reason}"):
        _chat(srv.base_url, retries=1, timeout_s=1.0, outage_timeout=2.0)
    assert len(srv.requests) > 2  # it kept trying past max_retries


def test_server_that_dies_and_comes_back(serve):
    srv = serve(lambda b: Reply("Answer: A"))
    srv.die()
    threading.Timer(0.5, srv.come_back).start()
    c = _chat(srv.base_url, retries=5)
    assert c.text == "Answer: A" and c.attempts >= 2


def test_faulty_run_reports_error_rows_and_retry_errors_fixes_only_them(tmp_path, serve):
    good, flaky = serve(truthful), serve(truthful)
    flaky.faults.extend([Fault(400)] * 100)  # the reviewer's endpoint refuses these requests
    inp = write_jsonl(tmp_path / "in.jsonl", mc_rows())
    run = tmp_path / "run"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        f"endpoint: {{base_url: '{good.base_url}', model: m, max_retries: 1, backoff_s: 0.01}}\n"
        f"roles: {{reviewer: {{base_url: '{flaky.base_url}'}}}}\nselection: {{beta: 1.0}}\n")
    res = run_cli("curate", "-i", str(inp), "-o", str(run), "-c", str(cfg_path))
    assert res.returncode == 3 and "2 row(s) ended as errors" in res.stderr
    flaky.faults.clear()
    before_good, before_flaky = len(good.requests), len(flaky.requests)
    res = run_cli("curate", "--retry-errors", str(run))
    assert res.returncode == 0, res.stderr
    assert len(good.requests) == before_good  # detection and context calls came from cache
    assert len(flaky.requests) - before_flaky == 2  # one reviewer call per error row
    with (run / "decisions.csv").open() as f:
        fates = [line.split(",")[2] for line in f.readlines()[1:]]
    assert fates.count("relabeled-kept") == 2 and "error" not in fates


def test_dry_run_plans_without_calling(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(10))
    res = run_cli("curate", "-i", str(inp), "-o", str(tmp_path / "run"), "--dry-run",
                  "--base-url", "http://127.0.0.1:9/v1", "--model", "m", env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    lines = {ln.split("│")[3].strip(): ln for ln in res.stdout.splitlines() if ln.count("│") > 4}
    assert {"direct", "reasoning", "reflection", "context", "reviewer"} <= set(lines)
    assert lines["direct"].split("│")[4].strip() == "10"
    assert not (tmp_path / "run").exists()


def test_call_budget_stops_resumably(tmp_path, serve):
    srv = serve(parity)
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(20))
    args = ["curate", "-i", str(inp), "-o", str(tmp_path / "run"), "--base-url", srv.base_url,
            "--model", "m"]
    res = run_cli(*args, "--call-budget", "25")
    assert res.returncode == 4 and "resumable" in res.stderr
    assert len(srv.delivered) == 25
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    assert max(Counter(srv.delivered).values()) == 1
    decisions = (tmp_path / "run" / "decisions.csv").read_text().splitlines()
    assert len(decisions) == 21


@pytest.mark.parametrize("policy", ["reject", "truncate"])
def test_overlong_rows_follow_the_stated_policy(tmp_path, policy):
    rows = [{"id": "short", "question": "Is 2 even?", "options": ["yes", "no"], "answer": "A"},
            {"id": "long", "question": "word " * 400, "options": ["yes", "no"], "answer": "A"}]
    p = write_jsonl(tmp_path / "in.jsonl", rows)
    samples, errors, _ = load_samples(p, DataConfig(max_prompt_tokens=100, overlong=policy))
    if policy == "reject":
        assert [s.id for s in samples] == ["short"]
        assert errors[0].reason.startswith(f"{p}:2: row has ~") and "reject" in errors[0].reason
    else:
        assert [s.id for s in samples] == ["short", "long"] and not errors
        assert samples[1].truncated and samples[1].question.endswith(" …")
        from robustft.llm.tokens import estimate_tokens

        assert estimate_tokens(samples[1].question) + 2 <= 100


def test_input_file_is_never_modified(tmp_path, serve):
    srv = serve(parity)
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(6))
    before, mtime = inp.read_bytes(), inp.stat().st_mtime_ns
    asyncio.run(curate(cfg_for(srv.base_url), inp, tmp_path / "run"))
    assert inp.read_bytes() == before and inp.stat().st_mtime_ns == mtime
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["samples"] == 6
