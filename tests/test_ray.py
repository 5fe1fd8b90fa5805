"""curate --ray on a local Ray cluster (2 worker processes) against the scripted server: the
same outputs as a single-process run, every row accounted for, sharded traces readable, and a
rerun that recomputes nothing."""

import asyncio
import csv
import json

import pytest

from eval.scripted_server import mc_reply, target_question
from robustft.config import Config, RunOptions
from robustft.graph.runner import curate
from robustft.store.runstore import RunStore
from robustft.viewer.data import sample_detail, summary

from .conftest import write_jsonl
from .test_viewer import _sums

pytest.importorskip("ray")


def _outputs(run) -> dict[str, bytes]:
    return {f: (run / f).read_bytes() for f in ("curated.jsonl", "sft.jsonl", "decisions.csv")}


def test_ray_run_matches_single_process_and_resumes(tmp_path, serve):
    from robustft.graph.ray_run import curate_ray

    rows, truth = _sums(70)
    rows.insert(33, {"id": "bad", "question": "Broken?", "options": ["x"], "answer": "A"})
    inp = write_jsonl(tmp_path / "sums.jsonl", rows)

    def script(body):
        q = target_question(body)
        conf = 0.55 + (sum(map(ord, q)) % 40) / 100
        return mc_reply(truth[q], list("ABCD"), conf, reasoning="Add the two numbers.")

    srv = serve(script)
    cfg = Config()
    cfg.endpoint.base_url, cfg.endpoint.model, cfg.concurrency = srv.base_url, "m", 8
    ref = tmp_path / "ref"
    ref_summary = asyncio.run(curate(cfg, inp, ref))

    run = tmp_path / "ray"
    before = len(srv.requests)
    s = curate_ray(cfg, inp, run, "local", workers=2, block_rows=16)
    sent = len(srv.requests) - before
    assert s["ray"]["blocks"] == 5 and sent == ref_summary["calls"]

    # identical decisions and outputs; every input row accounted for
    assert _outputs(run) == _outputs(ref)
    with (run / "decisions.csv").open() as f:
        decisions = list(csv.DictReader(f))
    assert len(decisions) == len(rows) == 71
    assert [d["fate"] for d in decisions if d["id"] == "bad"] == ["error"]
    assert s["fates"] == ref_summary["fates"] and s["calls"] == ref_summary["calls"]
    assert s["by_role"] == ref_summary["by_role"]

    # the sharded run reads like any other: summary, one sample's whole trace, the viewer data
    store = RunStore.reader(run)
    sid = next(d["id"] for d in decisions if d["fate"] == "relabeled-kept")
    roles = [c["role"] for c in sample_detail(store, sid)["calls"]]
    assert {"direct", "reasoning", "context", "reviewer"} <= set(roles)
    assert summary(store)["calls"] == ref_summary["calls"]
    assert json.loads((run / "summary.json").read_text())["kept"] == ref_summary["kept"]

    # a rerun on the same directory recomputes nothing and writes the same outputs
    first = _outputs(run)
    again = curate_ray(cfg, inp, run, "local", workers=2, block_rows=16)
    assert len(srv.requests) - before == sent and again["calls"] == s["calls"]
    assert _outputs(run) == first


def test_ray_refuses_what_it_cannot_honour(tmp_path, serve):
    from robustft.graph.ray_run import curate_ray

    inp = write_jsonl(tmp_path / "in.jsonl", _sums(4)[0])
    cfg = Config()
    cfg.endpoint.base_url, cfg.endpoint.model = "http://127.0.0.1:9/v1", "m"
    with pytest.raises(ValueError, match="budgets count one process"):
        curate_ray(cfg, inp, tmp_path / "r", "local", options=RunOptions(call_budget=5))
    with pytest.raises(ValueError, match="budgets count one process"):  # the config's too
        curate_ray(cfg.model_copy(update={"token_budget": 100}), inp, tmp_path / "r", "local")
    with pytest.raises(ValueError, match="robustft method only"):
        curate_ray(cfg, inp, tmp_path / "r", "local", options=RunOptions(method="clear"))


def _worker_pids() -> list[int]:
    """Ray Data's actor processes running BlockWorker (their title names the class)."""
    from pathlib import Path

    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and b"BlockWorker" in (p / "cmdline").read_bytes():
                pids.append(int(p.name))
        except OSError:
            continue
    return pids


def test_killed_worker_is_restarted_and_its_block_resumes(tmp_path, serve):
    import os
    import signal
    import threading
    import time
    from collections import Counter

    from robustft.graph.ray_run import curate_ray

    from .test_reliability import parity_rows

    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(48))
    from eval.scripted_server import parity

    ref_srv = serve(parity)
    cfg = Config()
    cfg.endpoint.base_url, cfg.endpoint.model, cfg.concurrency = ref_srv.base_url, "m", 4
    asyncio.run(curate(cfg, inp, tmp_path / "ref"))

    srv = serve(parity, delay_s=0.05)
    cfg.endpoint.base_url = srv.base_url
    run, result = tmp_path / "ray", {}
    t = threading.Thread(target=lambda: result.update(
        s=curate_ray(cfg, inp, run, "local", workers=2, block_rows=24)))
    t.start()
    deadline = time.time() + 120
    while len(srv.delivered) < 40 and time.time() < deadline:
        time.sleep(0.05)
    pids = _worker_pids()
    assert pids, "no Ray worker found"
    os.kill(pids[0], signal.SIGKILL)  # a worker dies mid-detect
    at_kill = len(srv.delivered)
    t.join(timeout=300)
    assert "s" in result, "the run did not complete after a worker died"
    assert _outputs(run) == _outputs(tmp_path / "ref")
    repeats = sum(n - 1 for n in Counter(srv.delivered).values())
    # only calls in flight on the killed worker went out again (at most 2 per sample in
    # flight: the two experts run in parallel); the dozens it had completed came from its
    # shard and its cache
    assert at_kill >= 40 and repeats <= 2 * cfg.concurrency


def test_ray_retry_errors_reruns_only_the_failed_rows(tmp_path, serve):
    from eval.scripted_server import Fault
    from robustft.graph.ray_run import curate_ray

    rows, truth = _sums(30)
    inp = write_jsonl(tmp_path / "sums.jsonl", rows)

    def script(body):
        return mc_reply(truth[target_question(body)], list("ABCD"), 0.8)

    good, bad = serve(script), serve(script)
    bad.faults.extend([Fault(400)] * 1000)  # the reviewer's endpoint rejects everything
    cfg = Config()
    cfg.endpoint.base_url, cfg.endpoint.model, cfg.concurrency = good.base_url, "m", 4
    ref = asyncio.run(curate(cfg, inp, tmp_path / "ref"))
    cfg.roles["reviewer"].base_url = bad.base_url
    run = tmp_path / "ray"
    first = curate_ray(cfg, inp, run, "local", workers=2, block_rows=10)
    assert first["fates"]["error"] == ref["fates"]["relabeled-kept"] + ref["fates"].get(
        "relabeled-dropped", 0) > 0
    cfg.roles["reviewer"].base_url = None  # the endpoint is fixed; rerun only the errors
    before = len(good.requests)
    again = curate_ray(cfg, inp, run, "local", workers=2, block_rows=10,
                       options=RunOptions(retry_errors=True))
    assert again["fates"] == ref["fates"] and "error" not in again["fates"]
    assert len(good.requests) - before == first["fates"]["error"]  # the reviewer calls only
    assert _outputs(run) == _outputs(tmp_path / "ref")


def test_ray_on_a_chat_json_array_matches_single_process(tmp_path, serve):
    """Shapes travel through the blocks: a JSON array of TRL chat rows comes back as one
    JSON array in chat shape, identical to a single-process run."""
    from robustft.graph.ray_run import curate_ray

    from .test_shapes_e2e import truthful_script

    truth = {f"What is {a} plus {b}?": (0, [str(a + b)]) for a in range(5) for b in range(4)}
    rows = [{"id": f"c{i}", "messages": [
        {"role": "system", "content": "Answer with the number."},
        {"role": "user", "content": q},
        {"role": "assistant", "content": opts[0] if i % 4 else str(int(opts[0]) + 1)}]}
        for i, (q, (_, opts)) in enumerate(truth.items())]
    inp = tmp_path / "chat.json"
    inp.write_text(json.dumps(rows))
    srv = serve(truthful_script(truth))
    cfg = Config(selection={"beta": 1.0})
    cfg.endpoint.base_url, cfg.endpoint.model, cfg.concurrency = srv.base_url, "m", 4
    ref = asyncio.run(curate(cfg, inp, tmp_path / "ref"))
    s = curate_ray(cfg, inp, tmp_path / "ray", "local", workers=2, block_rows=6)
    assert s["fates"] == ref["fates"] == {"clean": 15, "relabeled-kept": 5}
    assert s["format"] == "messages"
    for name in ("curated.json", "sft.jsonl", "decisions.csv"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    curated = json.loads((tmp_path / "ray" / "curated.json").read_text())
    assert [r["messages"][-1]["content"] for r in curated] == [o[0] for _, o in truth.values()]
