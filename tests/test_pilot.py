"""``curate --pilot N`` through the command line against the simulated endpoint (in this
process, so every request it answers is recorded): the pilot's figures, its projection
against the full run, and a full run afterwards that re-sends nothing the pilot sent."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from eval.sim_server import SimParams, SimServer, Simulator, sim_models
from robustft.methods.pilot import pilot_ids, project, unit_scale

from .conftest import noisy_mc_file, write_jsonl
from .test_cli_e2e import run_cli


def test_pilot_draw_is_seeded_and_nested():
    ids = [f"r{i}" for i in range(500)]
    a = pilot_ids(ids, 100, 0)
    assert len(a) == 100 and a == pilot_ids(ids, 100, 0) and a < pilot_ids(ids, 101, 0)
    assert a != pilot_ids(ids, 100, 1) and pilot_ids(ids[:5], 100, 0) == set(ids[:5])


def test_projection_scales_rows_and_capped_steps_apart():
    rows = [("detected", 300, 3000, 600, 0.3), ("relabeled", 100, 2000, 100, 0.2),
            ("probe", 40, 400, 40, 0.04), ("canary", 12, 120, 12, 0.0)]
    p = project(rows, 10.0, {"probe": unit_scale(20, min(50, 20 * 10.0)),
                             "canary": unit_scale(6, 6)})
    # rows ×10; probes 20 → 50 (the cap): ×2.5; canaries as many as the pilot planted: ×1
    assert p["calls"] == 3000 + 1000 + 100 + 12
    assert p["prompt_tokens"] == 30000 + 20000 + 1000 + 120
    assert p["cost"] == pytest.approx(3.0 + 2.0 + 0.1)
    assert p["calls_by_stage"] == {"detected": 3000, "relabeled": 1000, "probe": 100,
                                   "canary": 12}
    assert unit_scale(0, 7) == 1.0


def test_stage_spans_run_until_the_next_stage_starts():
    from robustft.graph.pilot import TimedReporter
    from robustft.pipeline.setup import QuietReporter

    t = TimedReporter(QuietReporter())
    t.starts = [("detect", 2.0), ("relabel", 10.0), ("canaries", 14.0)]
    assert t.spans(15.5) == {"": 2.0, "detect": 8.0, "relabel": 4.0, "canaries": 1.5}
    assert TimedReporter(QuietReporter()).spans(3.0) == {"": 3.0}
    t.note("indexing 120 clean samples")
    assert t.starts[-1][0] == "index"


@pytest.mark.e2e
def test_pilot_projects_the_full_run_which_resends_nothing(tmp_path):
    path, _, truth = noisy_mc_file(tmp_path, 600, 5, lambda i: i % 10 < 3)
    with SimServer(Simulator(truth, SimParams(accuracy=0.85, calibration=0.8))) as srv:
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(yaml.safe_dump({"endpoint": {"base_url": srv.base_url},
                                       "roles": {r: {"model": m}
                                                 for r, m in sim_models().items()},
                                       "prices": {"sim-": {"input": 0.5, "output": 2.0}}}))
        run = tmp_path / "run"
        common = ("curate", "-i", str(path), "-o", str(run), "-c", str(cfg),
                  "--concurrency", "32")
        p = run_cli(*common, "--pilot", "150")
        assert p.returncode == 0, p.stderr
        assert "pilot done" in p.stdout and "estimated noise rate" in p.stdout
        assert "; cost " in p.stdout
        assert not (run / "decisions.csv").exists()  # nothing of the full run's yet
        in_pilot = list(srv.delivered)
        report = json.loads((run / "pilot" / "pilot.json").read_text())
        assert report["rows"] == 150 and report["of"] == 600
        # as many canaries as the full run plants (2% of 600), from the pilot's clean rows
        assert report["canary_recall"]["n"] == 12
        again = run_cli(*common, "--pilot", "150")  # a rerun of the pilot costs nothing
        assert again.returncode == 0 and len(srv.delivered) == len(in_pilot)
        full = run_cli(*common)
        assert full.returncode == 0, full.stderr
        in_full = srv.delivered[len(in_pilot):]
        other = write_jsonl(tmp_path / "other.jsonl", [{"id": "x", "question": "q?",
                                                        "options": ["a", "b"], "answer": "A"}])
        refused = run_cli("curate", "-i", str(other), "-o", str(run), "-c", str(cfg),
                          "--pilot", "10")
    assert not set(in_pilot) & set(in_full)  # the cache answered every repeated request
    assert all(n == 1 for n in Counter(srv.delivered).values())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["samples"] == 600 and summary["canaries"]["planted"] == 12
    assert abs(report["projected"]["calls"] / summary["calls"] - 1) < 0.10
    assert abs(report["projected"]["cost"] / summary["cost"]["total"] - 1) < 0.10
    assert refused.returncode == 2 and "different input" in refused.stderr
