"""``robustft curate`` as a subprocess against the scripted server, on real ARC rows."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval.scripted_server import Reply, mc_reply, target_question

from .conftest import read_csv, write_jsonl

pytestmark = pytest.mark.e2e


def run_cli(*args: str, env: dict | None = None, timeout: int = 300):
    e = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "ROBUSTFT_MODEL")}
    e.update({"HF_HUB_OFFLINE": "1", **(env or {})})
    return subprocess.run([sys.executable, "-m", "robustft.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, env=e)


def truth_script(labeled: list[dict]):
    truth = {r["question"].strip(): (r["answer"], len(json.loads(r["options"]))) for r in labeled}

    def script(body: dict) -> Reply:
        answer, n = truth[target_question(body)]
        return mc_reply(answer, [chr(65 + i) for i in range(n)], confidence=0.85,
                        reasoning="Step 1: recall the relevant science fact.")
    return script


@pytest.fixture
def arc40(arc_dir, tmp_path) -> tuple[Path, list[dict], list[dict]]:
    noisy = read_csv(arc_dir / "noisy30.csv", 40)
    labeled = read_csv(arc_dir / "labeled.csv", 40)
    path = tmp_path / "noisy40.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(noisy[0]))
        w.writeheader()
        w.writerows(noisy)
    return path, noisy, labeled


def test_curate_arc40_detects_exactly_the_flips(arc40, tmp_path, serve):
    path, noisy, labeled = arc40
    srv = serve(truth_script(labeled))
    run = tmp_path / "run"
    res = run_cli("curate", "--input", str(path), "--output", str(run),
                  "--base-url", srv.base_url, "--model", "scripted")
    assert res.returncode == 0, res.stderr
    with (run / "decisions.csv").open() as f:
        decisions = list(csv.DictReader(f))
    assert len(decisions) == 40
    flagged = {d["id"] for d in decisions if d["fate"] != "clean"}
    flipped = {n["id"] for n, t in zip(noisy, labeled, strict=True) if n["answer"] != t["answer"]}
    assert flipped, "the first 40 rows of noisy30 hold flipped labels"
    tp = len(flagged & flipped)
    precision, recall = tp / len(flagged), tp / len(flipped)
    assert precision == recall == 1.0
    truth = {t["id"]: t["answer"] for t in labeled}
    with (run / "curated.csv").open(newline="") as f:
        curated = list(csv.DictReader(f))
    assert curated and all(r["answer"] == truth[r["id"]] for r in curated)
    assert list(curated[0]) == list(noisy[0])  # input columns kept, in order
    kept = {d["id"] for d in decisions if d["fate"] == "relabeled-kept"}
    assert len(kept) == -(-len(flipped) // 2)  # β = 0.5, rounded up

    sid = sorted(kept)[0]
    story = run_cli("trace", str(run), sid, env={"COLUMNS": "200"})
    assert story.returncode == 0, story.stderr
    out = story.stdout
    for needle in ("direct", "reasoning", "reflection", "checker", "verdict: noisy",
                   "retrieved clean neighbours", "context", "reviewer", "reviewer reasoning",
                   "entropy:", "relabeled-kept", truth[sid]):
        assert needle in out, needle
    neighbours = json.loads(next(d for d in decisions if d["id"] == sid)["neighbour_ids"])
    assert len(neighbours) == 3 and all(n in out for n in neighbours)
    summary = run_cli("summary", str(run))
    assert summary.returncode == 0 and "relabeled-kept" in summary.stdout


def test_prompt_override_shows_in_trace(tmp_path, serve):
    rows = [{"id": f"r{i}", "question": f"Is {i} even?", "options": ["yes", "no"],
             "answer": "A" if i % 2 == 0 else "B"} for i in range(4)]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    srv = serve(lambda body: mc_reply("A" if int(target_question(body).split()[1]) % 2 == 0
                                      else "B", ["A", "B"]))
    override = tmp_path / "my_prompts"
    override.mkdir()
    builtin = Path(__file__).resolve().parent.parent / "prompts" / "direct.yaml"
    text = builtin.read_text().replace("You are an expert", "You are a MARKER-42 expert")
    (override / "direct.yaml").write_text(text)
    run = tmp_path / "run"
    res = run_cli("curate", "-i", str(inp), "-o", str(run), "--base-url", srv.base_url,
                  "--model", "scripted", "--prompts", str(override))
    assert res.returncode == 0, res.stderr
    assert any("MARKER-42" in m["content"] for r in srv.requests for m in r["messages"])
    story = run_cli("trace", str(run), "r0", "--full", env={"COLUMNS": "200"})
    assert "MARKER-42" in story.stdout
    prompts = json.loads((run / "prompts.json").read_text())
    assert prompts["direct"]["path"] == str(override / "direct.yaml")


MC_ROWS = [{"id": f"r{i}", "question": f"Is {i} even?", "options": ["yes", "no"],
            "answer": "A" if i % 2 == 0 else "B"} for i in range(4)]


def parity(body: dict) -> Reply:
    return mc_reply("A" if int(target_question(body).split()[1]) % 2 == 0 else "B", ["A", "B"])


def test_bad_rows_become_error_rows_and_the_rest_runs(tmp_path, serve):
    srv = serve(parity)
    lines = [json.dumps(MC_ROWS[0]), '{"id": "broken", "question": ', json.dumps(MC_ROWS[1]),
             json.dumps({**MC_ROWS[2], "answer": "Z"}), json.dumps(MC_ROWS[3])]
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    before = inp.read_bytes()
    run = tmp_path / "run"
    res = run_cli("curate", "-i", str(inp), "-o", str(run), "--base-url", srv.base_url,
                  "--model", "scripted")
    assert res.returncode == 3, res.stderr
    assert "2 row(s) ended as errors" in res.stderr
    with (run / "decisions.csv").open() as f:
        dec = list(csv.DictReader(f))
    assert [d["fate"] for d in dec] == ["clean", "error", "clean", "error", "clean"]
    assert dec[1]["reason"].startswith(f"{inp}:2: malformed JSON")
    assert dec[3]["reason"] == f"{inp}:4: answer 'Z' is not an option letter A-B"
    assert inp.read_bytes() == before


@pytest.mark.parametrize("name,content,message", [
    ("empty.jsonl", "", "empty.jsonl: no data rows (empty file)"),
    ("nocol.csv", "id,question,options\n1,Q,\"[]\"\n", "nocol.csv:1: missing column(s)"),
])
def test_unusable_input_file_exits_2(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    res = run_cli("curate", "-i", str(tmp_path / name), "-o", str(tmp_path / "run"),
                  "--base-url", "http://127.0.0.1:9/v1", "--model", "m", env={"COLUMNS": "300"})
    assert res.returncode == 2
    assert message in " ".join(res.stderr.split())


def test_endpoint_from_environment_and_api_key_never_written(tmp_path, serve):
    srv = serve(parity, models=["env-model"])
    sentinel = "sk-SENTINEL-5f3a9c1e7b"
    inp = write_jsonl(tmp_path / "in.jsonl", MC_ROWS)
    run = tmp_path / "run"
    res = run_cli("curate", "-i", str(inp), "-o", str(run), "-v",
                  env={"OPENAI_BASE_URL": srv.base_url, "OPENAI_API_KEY": sentinel})
    assert res.returncode == 0, res.stderr
    assert {r["model"] for r in srv.requests} == {"env-model"}  # the endpoint's only model
    assert sentinel not in res.stdout + res.stderr
    for f in run.rglob("*"):
        if f.is_file():
            assert sentinel.encode() not in f.read_bytes(), f
