"""The RobustFT graph end to end, in process, against the scripted server."""

from __future__ import annotations

import asyncio
import csv
import json

from graph.runner import curate
from robustft.config import Config
from robustft.runstore import RunStore

from .conftest import write_jsonl
from .scripted_server import Reply, mc_reply, target_question

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
