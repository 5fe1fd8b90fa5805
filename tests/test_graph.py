"""The RobustFT graph end to end, in process, against the scripted server."""

from __future__ import annotations

import asyncio
import csv
import gc
import json

import pytest

from eval.scripted_server import Fault, Reply, mc_reply, target_question
from robustft.config import Config
from robustft.graph.runner import curate
from robustft.pipeline.setup import GC_YOUNG
from robustft.store.runstore import RunStore

from .conftest import write_jsonl

TRUTH = {
    "What color is a clear daytime sky?": ("A", ["blue", "green", "red", "black"]),
    "Which planet do we live on?": ("B", ["Mars", "Earth", "Venus", "Jupiter"]),
    "What do plants need for photosynthesis?": ("C", ["salt", "iron", "sunlight", "sand"]),
    "How many legs does a spider have?": ("D", ["two", "four", "six", "eight"]),
    "What is frozen water called?": ("A", ["ice", "steam", "fog", "dew"]),
    "Which gas do humans breathe in to live?": ("B", ["helium", "oxygen", "neon", "argon"]),
}
FLIPPED = {"Which planet do we live on?": "C", "How many legs does a spider have?": "A"}


def mc_rows() -> list[dict]:
    return [{"id": f"q{i}", "question": q, "options": opts,
             "answer": FLIPPED.get(q, a)} for i, (q, (a, opts)) in enumerate(TRUTH.items())]


def truthful(body: dict) -> Reply:
    q = target_question(body)
    answer, opts = TRUTH[q]
    return mc_reply(answer, ["A", "B", "C", "D"][: len(opts)], confidence=0.9)


def cfg_for(url: str, **kw) -> Config:
    cfg = Config(**kw)
    cfg.endpoint.base_url = url
    cfg.endpoint.model = "scripted"
    cfg.endpoint.backoff_s = 0.01
    return cfg


def test_truthful_experts_find_flips_and_relabel(tmp_path, serve):
    srv = serve(truthful)
    inp = write_jsonl(tmp_path / "in.jsonl", mc_rows())
    summary = asyncio.run(curate(cfg_for(srv.base_url, selection={"beta": 1.0}), inp,
                                 tmp_path / "run"))
    assert summary["fates"] == {"clean": 4, "relabeled-kept": 2}
    curated = [json.loads(x) for x in (tmp_path / "run" / "curated.jsonl").open()]
    assert {r["question"]: r["answer"] for r in curated} == {q: a for q, (a, _) in TRUTH.items()}
    with (tmp_path / "run" / "decisions.csv").open() as f:
        dec = {r["id"]: r for r in csv.DictReader(f)}
    assert dec["q1"]["fate"] == "relabeled-kept" and dec["q1"]["final_label"] == "B"
    assert len(json.loads(dec["q1"]["neighbour_ids"])) == 3
    sft = [json.loads(x) for x in (tmp_path / "run" / "sft.jsonl").open()]
    assert len(sft) == 6 and all(r["completion"].startswith("Answer: ") for r in sft)
    # 6 samples × (direct + reasoning + reflection) + 2 noisy × (context + reviewer)
    assert summary["calls"] == 22 == len(srv.requests)
    store = RunStore.open_existing(tmp_path / "run")
    rec = store.record("q1")
    assert rec["entropy_source"] == "option-logprobs"
    # H = 0.9·ln(1/0.9) + 3·(1/30)·ln 30 = 0.09482 + 0.34012 nats
    assert abs(rec["entropy"] - 0.43494) < 1e-4


def test_collector_is_cheap_while_calls_are_in_flight_and_restored_after(tmp_path, serve):
    """Observed from the server's thread, in the same process, while each call is answered."""
    seen = []

    def watching(body: dict) -> Reply:
        seen.append((gc.get_threshold()[0], gc.get_freeze_count() > 0))
        return truthful(body)

    before = (gc.get_threshold(), gc.get_freeze_count())
    srv = serve(watching)
    asyncio.run(curate(cfg_for(srv.base_url), write_jsonl(tmp_path / "in.jsonl", mc_rows()),
                       tmp_path / "run"))
    assert len(seen) == 22 and set(seen) == {(GC_YOUNG, True)}
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


ARENAS_AFTER_THREADS = """
import ctypes, ctypes.util, sys, threading
from robustft.pipeline.setup import cap_malloc_arenas
capped = sys.argv[1] == "cap" and cap_malloc_arenas()
together = threading.Barrier(6)
def work():
    blocks = [bytearray(1 << 16) for _ in range(50)]
    together.wait()  # every thread alive and holding memory at once
threads = [threading.Thread(target=work) for _ in range(6)]
[t.start() for t in threads]; [t.join() for t in threads]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.open_memstream.restype = ctypes.c_void_p
buf, size = ctypes.c_char_p(), ctypes.c_size_t()
f = ctypes.c_void_p(libc.open_memstream(ctypes.byref(buf), ctypes.byref(size)))
libc.malloc_info(0, f); libc.fclose(f)
print(capped, buf.value.decode().count("<heap nr="))
"""


def test_malloc_arenas_are_capped_for_the_threads_a_run_starts():
    """glibc's malloc_info counts the arenas while six threads hold memory: one each without
    the cap, at most MALLOC_ARENAS with it."""
    import platform
    import subprocess
    import sys

    from robustft.pipeline.setup import MALLOC_ARENAS

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the cap is glibc's")

    def arenas(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", ARENAS_AFTER_THREADS, mode],
                             capture_output=True, text=True, check=True).stdout.split()
        return out[0], int(out[1])
    assert arenas("cap") == ("True", MALLOC_ARENAS)
    assert arenas("none")[1] > MALLOC_ARENAS


def per_role(body: dict) -> Reply:
    """Experts on separate models: the direct model always says A, the others tell the truth."""
    if body["model"] == "m-direct":
        return mc_reply("A", ["A", "B", "C", "D"])
    return truthful(body)


def test_multi_model_experts_and_majority_policy(tmp_path, serve):
    srv = serve(per_role, models=["m-direct", "m-big"])
    inp = write_jsonl(tmp_path / "in.jsonl", mc_rows())
    cfg = cfg_for(srv.base_url)
    cfg.roles["direct"].model = "m-direct"
    cfg.endpoint.model = "m-big"
    summary = asyncio.run(curate(cfg, inp, tmp_path / "all"))
    # policy all: every row whose truth is not A disagrees with the direct expert
    assert summary["fates"]["clean"] == 2
    assert {r["model"] for r in srv.requests} == {"m-direct", "m-big"}
    cfg.detect.policy = "majority"  # 1 of 2 is not a strict majority either
    assert asyncio.run(curate(cfg, inp, tmp_path / "maj"))["fates"]["clean"] == 2


def test_free_text_rows(tmp_path, serve):
    truth = {"How many touchdowns did Smith score?": "two touchdowns",
             "Who kicked the longest field goal?": "Jason Hanson",
             "How many yards was the longest pass?": "1,200 yards",
             "Which team won the game?": "the Lions"}
    given = {**truth, "Who kicked the longest field goal?": "Matt Prater",
             "How many yards was the longest pass?": "1200 Yards."}

    def script(body):
        return Reply(f"Thinking.\nAnswer: {truth[target_question(body)]}")

    srv = serve(script)
    rows = [{"question": q, "answer": a} for q, a in given.items()]
    inp = write_jsonl(tmp_path / "drop.jsonl", rows)
    summary = asyncio.run(curate(cfg_for(srv.base_url, selection={"beta": 1.0}), inp,
                                 tmp_path / "run"))
    assert summary["task"] == "free_text"
    assert summary["fates"] == {"clean": 3, "relabeled-kept": 1}  # "1200 Yards." matches
    curated = {r["question"]: r["answer"]
               for r in map(json.loads, (tmp_path / "run" / "curated.jsonl").open())}
    assert curated == {**given, "Who kicked the longest field goal?": "Jason Hanson"}
    rec = RunStore.open_existing(tmp_path / "run").record(
        next(r["id"] for r in RunStore.open_existing(tmp_path / "run").records()
             if r["fate"] == "relabeled-kept"))
    assert rec["entropy_source"] == "answer-token-logprobs" and rec["entropy"] >= 0


def test_no_logprobs_falls_back_to_agreement(tmp_path, serve):
    srv = serve(truthful)
    cfg = cfg_for(srv.base_url, selection={"beta": 0.5})
    for r in cfg.roles.values():
        r.top_logprobs = 0
    summary = asyncio.run(curate(cfg, write_jsonl(tmp_path / "in.jsonl", mc_rows()),
                                 tmp_path / "run"))
    assert summary["fates"] == {"clean": 4, "relabeled-kept": 1, "relabeled-dropped": 1}
    store = RunStore.open_existing(tmp_path / "run")
    recs = [r for r in store.records() if r["stage"] == "relabeled"]
    assert all(r["entropy_source"] == "agreement" and r["entropy"] == 0.0 for r in recs)
    assert all("logprobs" not in r for r in srv.requests)


def test_endpoint_failures_become_error_rows(tmp_path, serve):
    good, bad = serve(truthful), serve(truthful)
    bad.faults.extend([Fault(400)] * 10)
    cfg = cfg_for(good.base_url, selection={"beta": 1.0})
    cfg.roles["reviewer"].base_url = bad.base_url  # the reviewer's endpoint rejects everything
    summary = asyncio.run(curate(cfg, write_jsonl(tmp_path / "in.jsonl", mc_rows()),
                                 tmp_path / "run"))
    with (tmp_path / "run" / "decisions.csv").open() as f:
        dec = {r["id"]: r for r in csv.DictReader(f)}
    assert len(dec) == 6 and summary["fates"] == {"clean": 4, "error": 2}
    assert dec["q1"]["fate"] == "error" and "reviewer" in dec["q1"]["reason"]
    assert "HTTP 400" in dec["q1"]["reason"]
    assert len(bad.requests) == 2  # a 400 is never retried


def test_unparsed_expert_reply_counts_as_disagreement(tmp_path, serve):
    def script(body):
        if body["model"] == "m-direct" and "frozen" in target_question(body):
            return Reply("I am not sure, sorry.\n\nQuestion: something else")
        return truthful(body)

    srv = serve(script)
    cfg = cfg_for(srv.base_url, selection={"beta": 1.0})
    cfg.roles["direct"].model = "m-direct"
    asyncio.run(curate(cfg, write_jsonl(tmp_path / "in.jsonl", mc_rows()), tmp_path / "run"))
    rec = RunStore.open_existing(tmp_path / "run").record("q4")
    assert rec["experts"] == {"direct": None, "reasoning": "A"} and rec["verdict"] == "noisy"
    assert rec["fate"] == "relabeled-kept" and rec["final"] == "A"
    assert "confirmed" in rec["reason"]


def test_rerun_skips_finished_samples(tmp_path, serve):
    srv = serve(truthful)
    inp = write_jsonl(tmp_path / "in.jsonl", mc_rows())
    first = asyncio.run(curate(cfg_for(srv.base_url), inp, tmp_path / "run"))
    n = len(srv.requests)
    second = asyncio.run(curate(cfg_for(srv.base_url), inp, tmp_path / "run"))
    assert len(srv.requests) == n and first["fates"] == second["fates"]
    (tmp_path / "other.jsonl").write_text(inp.read_text().replace("Q", "q") + "\n")
    with pytest.raises(ValueError, match="different input"):
        asyncio.run(curate(cfg_for(srv.base_url), tmp_path / "other.jsonl", tmp_path / "run"))
