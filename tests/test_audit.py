"""The blind audit sample on a run curated against a scripted endpoint whose answers are
wrong on purpose for five rows: two flipped labels the experts repeat (missed noise) and three
right labels they contradict (false flags). With the whole run drawn (a census), the estimates
are the true figures, counted by hand: precision 8/11, missed noise 2/29, recall 8/10, noise
rate 10/40. Served blind over HTTP; verdicts never change an output; the summary, summary.json,
the report and ``missed_noise`` carry the estimates; the study's machinery on a tiny run."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml

from eval.audit_coverage import coverage, scripted_review, table, true_values
from eval.scripted_server import ScriptedServer, mc_reply, target_question
from robustft.config import Config
from robustft.graph.runner import curate
from robustft.pipeline.audit import missed_noise, run_audit_summary
from robustft.store.audit import AuditStore
from robustft.store.reviews import ReviewStore
from robustft.store.runstore import RunStore
from robustft.viewer import audit as viewaudit
from robustft.viewer.server import Viewer, write_report
from tests.conftest import ROOT

MISSED, FALSE_FLAGS = (0, 4), (1, 2, 3)  # rows the scripted experts get wrong
FATE_WORDS = ("relabeled", "confirmed", '"clean"', "noisy")


def _rows(n: int = 40):
    """(rows with every fourth label flipped, question -> the scripted experts' answer,
    id -> true label)."""
    rng = random.Random(11)
    rows, says, truth = [], {}, {}
    for i in range(n):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        q = f"Row {i}: what is {a} plus {b}?"
        right = rng.choice("ABCD")
        wrong = "ABCD"[("ABCD".index(right) + 1 + i % 3) % 4]
        given = wrong if i % 4 == 0 else right
        says[q] = given if i in MISSED else wrong if i in FALSE_FLAGS else right
        opts = [str(a + b + d) for d in (3, 7, 11, 13)]
        opts["ABCD".index(right)] = str(a + b)
        rows.append({"id": f"r{i:02d}", "question": q, "options": opts, "answer": given})
        truth[f"r{i:02d}"] = right
    return rows, says, truth


def _curate(data, run, says):
    def script(body):
        q = target_question(body)
        return mc_reply(says[q], list("ABCD"), 0.55 + (sum(map(ord, q)) % 40) / 100)

    with ScriptedServer(script, models=["scripted"]) as srv:  # the model: its only one
        cfg = Config()
        cfg.endpoint.base_url, cfg.concurrency = srv.base_url, 8
        cfg.audit.sample_flagged = cfg.audit.sample_unflagged = 100  # the whole run
        asyncio.run(curate(cfg, data, run))


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """(a curated run nobody has audited, its data file, scripted answers, truth)."""
    d = tmp_path_factory.mktemp("audit")
    rows, says, truth = _rows()
    data = d / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _curate(data, d / "run", says)
    return d / "run", data, says, truth


@pytest.fixture
def run(audited, tmp_path):
    """A fresh copy of the curated run (its own people's file)."""
    src = audited[0]
    shutil.copytree(src, tmp_path / "run")
    return tmp_path / "run"


def _summary(run, draw=True):
    store = RunStore.reader(run)
    try:
        return run_audit_summary(run, store, draw_sample=draw)
    finally:
        store.close()


def test_census_estimates_are_the_hand_counted_truth(run, audited):
    truth = audited[3]
    a = _summary(run)
    assert a["size"] == 40 and a["judged"] == 0 and a["not_covered"] == 0
    assert a["strata"]["flagged"]["rows"] == 11 and a["strata"]["unflagged"]["rows"] == 29
    assert a["estimates"]["precision"]["value"] is None
    store, audit = RunStore.reader(run), AuditStore(run)
    try:
        scripted_review(store, audit, truth)
        expected = true_values(store, truth)
    finally:
        store.close()
        audit.close()
    a = _summary(run, draw=False)
    e = a["estimates"]
    assert a["judged"] == 40
    assert e["precision"]["value"] == pytest.approx(8 / 11, abs=1e-4)
    assert e["missed_noise"]["value"] == pytest.approx(2 / 29, abs=1e-4)
    assert e["recall"]["value"] == pytest.approx(0.8, abs=1e-4)
    assert e["noise_rate"]["value"] == pytest.approx(0.25, abs=1e-4)
    assert e["noisy"]["value"] == pytest.approx(10, abs=1e-3)
    assert expected["curated_accuracy"] is not None and expected["curated_accuracy"] < 1
    assert e["curated_accuracy"]["value"] == pytest.approx(expected["curated_accuracy"], abs=1e-4)
    assert a["finals"]["asked"] == a["finals"]["judged"] > 0  # kept relabels: second question
    for k, v in e.items():
        assert v["low"] <= v["value"] <= v["high"], k
    q = missed_noise(run)
    assert q.value == pytest.approx(2 / 29) and q.low < q.value < q.high
    # the verdicts are people's data beside the reviews, never a review: outputs untouched
    assert ReviewStore(run).count() == 0
    # robustft summary: the audit table from the current verdicts
    out = subprocess.run([sys.executable, "-m", "robustft.cli.main", "summary", str(run)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "blind audit: 40 of 40 judged" in out.stdout
    assert "detection precision" in out.stdout and "0.727" in out.stdout


def test_served_blind_until_the_verdict_and_writes_guarded(run, audited):
    truth = audited[3]
    v = Viewer(run, 0, reviewer="ann").start()
    token = v.token

    def get(path):
        return urllib.request.urlopen(v.url.rstrip("/") + path).read().decode()

    def post(body, **headers):
        req = urllib.request.Request(v.url + "api/audit", json.dumps(body).encode(), {
            "Content-Type": "application/json", "X-Robustft-Token": token, **headers})
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    try:
        raw = get("/api/audit?index=0")
        d = json.loads(raw)
        assert d["total"] == 40 and d["judged"] == 0 and d["story"] is None
        assert set(d["item"]) == {"question", "options", "response", "judged"}
        item_text = json.dumps(d["item"])
        assert not any(w in item_text for w in FATE_WORDS)
        assert not any(w in raw for w in ("relabeled", "confirmed", '"fate"', "checker"))
        store = RunStore.reader(run)
        entries = AuditStore(run).entries()
        fates = {e.sample_id: store.record(e.sample_id) for e in entries}
        kept_changed = next(i for i, e in enumerate(entries)
                            if fates[e.sample_id]["fate"] == "relabeled-kept")
        # guarded like reviews: token, origin, JSON
        assert post({"index": 0, "verdict": "right"}, **{"X-Robustft-Token": "x"})[0] == 403
        assert post({"index": 0, "verdict": "right"}, Origin="http://evil.example")[0] == 403
        assert post({"index": 0, "verdict": "maybe"})[0] == 400
        assert post({"index": 0, "verdict": "right", "question": "final"})[0] == 400
        # the blind verdict, then the story; a blind verdict is final
        sid = entries[kept_changed].sample_id
        given = fates[sid]["sample"]["label"]
        status, saved = post({"index": kept_changed,
                              "verdict": "right" if given == truth[sid] else "wrong"})
        assert status == 200 and saved["entry"]["reviewer"] == "ann"
        assert post({"index": kept_changed, "verdict": "right"})[0] == 409
        d = json.loads(get(f"/api/audit?index={kept_changed}"))
        assert d["story"]["fate"] == "relabeled-kept" and d["story"]["ask_final"]
        assert d["story"]["final_judged"] is None and d["judged"] == 1
        assert post({"index": kept_changed, "verdict": "right", "question": "final"})[0] == 200
        assert post({"index": kept_changed, "verdict": "wrong", "question": "final"})[0] == 409
        d = json.loads(get(f"/api/audit?index={kept_changed}"))
        assert d["story"]["final_judged"]["verdict"] == "right"
        assert d["estimates"]["finals"] == {"asked": 1, "judged": 1, "stale": 0}
        summary = json.loads(get("/api/summary"))
        assert summary["audit"]["judged"] == 1
    finally:
        v.stop()
    assert ReviewStore(run).count() == 0


def test_summary_json_report_and_no_draw_where_nobody_audits(run, audited, tmp_path):
    _, data, says, truth = audited
    # a run nobody audited: the report and summary.json draw nothing, create nothing
    write_report(run, tmp_path / "plain.html")
    assert not (run / "reviews.sqlite").exists()
    assert "audit" not in json.loads((run / "summary.json").read_text())
    store, audit = RunStore.reader(run), AuditStore(run)
    try:
        from robustft.pipeline.audit import audit_config, ensure_sample

        ensure_sample(store, audit, audit_config(run))
        scripted_review(store, audit, truth)
    finally:
        store.close()
        audit.close()
    curated = (run / "curated.jsonl").read_text()
    _curate(data, run, says)  # a rerun (every call cached) writes summary.json again
    assert (run / "curated.jsonl").read_text() == curated  # verdicts change no output
    a = json.loads((run / "summary.json").read_text())["audit"]
    assert a["judged"] == 40 and a["estimates"]["recall"]["value"] == pytest.approx(0.8)
    write_report(run, tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert '"audit": {' in html and "auditPanel" in html


def test_reruns_seeds_and_unfinished_runs(run, audited):
    truth = audited[3]
    db = sqlite3.connect(run / "run.sqlite")
    first = db.execute("SELECT id FROM samples ORDER BY row LIMIT 1").fetchone()[0]
    db.execute("UPDATE samples SET fate=NULL WHERE id=?", (first,))
    db.commit()
    assert "not finished" in _summary(run)["not_drawn"]
    db.execute("UPDATE samples SET fate='clean' WHERE id=?", (first,))
    db.commit()
    # a small sample: the same config draws the same rows; another seed redraws while unjudged
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["audit"] = {"sample_flagged": 4, "sample_unflagged": 4, "seed": 3}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert _summary(run)["size"] == 8
    drawn = [e.sample_id for e in AuditStore(run).entries()]
    shutil.copytree(run, run.parent / "again", ignore=shutil.ignore_patterns("reviews.sqlite*"))
    _summary(run.parent / "again")
    assert [e.sample_id for e in AuditStore(run.parent / "again").entries()] == drawn
    cfg["audit"]["seed"] = 4
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert _summary(run)["drawn"]["seed"] == 4
    redrawn = [e.sample_id for e in AuditStore(run).entries()]
    assert redrawn != drawn and len(redrawn) == 8
    # judged: kept although the seed changes (noted); grown when the sizes grow
    store, audit = RunStore.reader(run), AuditStore(run)
    scripted_review(store, audit, truth)
    cfg["audit"] = {"sample_flagged": 6, "sample_unflagged": 6, "seed": 4}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    a = _summary(run)
    assert a["size"] == 12 and a["judged"] == 8
    assert [e.sample_id for e in audit.entries()][:8] == redrawn
    cfg["audit"]["seed"] = 9
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    a = _summary(run)
    assert a["size"] == 12 and any("seed 4" in n for n in a["notes"])
    # a rerun that changes a judged final response makes that answer stale; one that moves a
    # drawn row to the other stratum is noted
    changed = next((e for e in audit.entries() if e.judged_final is not None), None)
    assert changed is not None
    db.execute("UPDATE samples SET final='D' || final WHERE id=?", (changed.sample_id,))
    moved = next(e for e in audit.entries() if e.stratum == "unflagged")
    db.execute("UPDATE samples SET fate='relabeled-dropped' WHERE id=?", (moved.sample_id,))
    db.commit()
    a = _summary(run)
    assert a["finals"]["stale"] == 1 and any("stale" in n for n in a["notes"])
    assert any("changed stratum" in n for n in a["notes"])
    st = viewaudit.story(store, audit.get(changed.sample_id))
    assert st["final_stale"] and st["final_judged"] is None
    store.close()
    audit.close()
    db.close()


def test_coverage_study_machinery(audited):
    run, _, _, truth = audited
    r = coverage(run, truth, [0, 1, 2], flagged=5, unflagged=5)
    assert r["draws"] == 3 and r["true"]["precision"] == pytest.approx(8 / 11)
    p = r["figures"]["precision"]
    assert p["given"] == 3 and 0 <= p["covered"] <= 3 and 0 < p["width"] < 1
    text = table("tiny", r)
    assert "| precision | 0.727 |" in text and "/3 (" in text


def test_every_fate_and_free_text_by_hand(tmp_path):
    """Free-text rows of every fate (tests.test_display.fate_run), all drawn: flagged long1,
    conf1, xss1, drop1; unflagged clean1, uns1, unsd1; err1 in neither. Judged by hand:
    P = 3/4, q = 1/3, noisy = 4·3/4 + 3·1/3 = 4 of 7, recall 3/4; curated accuracy = kept
    clean1 (right), uns1 (wrong), conf1 (right), long1's final (right), xss1's final (wrong):
    3/5."""
    from tests.test_display import ROWS, fate_run

    run = fate_run(tmp_path / "run")
    wrong = {"uns1", "long1", "xss1", "drop1"}
    a = _summary(run)
    assert a["size"] == 7 and a["not_covered"] == 1 and a["kept"] == 5
    store, audit = RunStore.reader(run), AuditStore(run)
    try:
        for i, e in enumerate(audit.entries()):
            item = viewaudit.blind(store, e)
            assert item["response"] == ROWS[e.sample_id][0] and item["options"] == []
            viewaudit.save_verdict(store, audit, {"index": i, "verdict": "wrong" if
                                                  e.sample_id in wrong else "right"}, "cy")
            st = viewaudit.story(store, audit.get(e.sample_id))
            assert st["ask_final"] == (e.sample_id in ("long1", "xss1"))
            if e.sample_id == "long1":
                assert st["diff"]["words"] == 2  # north -> south, 1889 -> 1887
            if st["ask_final"]:
                viewaudit.save_verdict(store, audit, {"index": i, "question": "final",
                                                      "verdict": "right" if e.sample_id ==
                                                      "long1" else "wrong"}, "cy")
    finally:
        store.close()
        audit.close()
    e = {k: v["value"] for k, v in _summary(run, draw=False)["estimates"].items()}
    assert e == pytest.approx({"precision": 0.75, "missed_noise": 1 / 3, "noisy": 4,
                               "noise_rate": 4 / 7, "recall": 0.75, "curated_accuracy": 0.6},
                              abs=1e-4)


def test_a_judged_audit_corrects_the_precision_targets_probe_labels(tmp_path):
    """With a precision target, a rerun after the blind audit fits the probes with the
    audit's missed noise q (2 of the 29 unflagged rows wrong, judged from the truth) in
    place of the label model's share, scaled to the probes by the model's q · probes / clean
    — here q as it is: every source repeats every label, so the model sees no wrong label
    among the confirmed rows (0 / 0), and the probes are all of them."""
    rows, says, truth = _rows()
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"

    def script(body):
        q = target_question(body)
        return mc_reply(says[q], list("ABCD"), 0.55 + (sum(map(ord, q)) % 40) / 100)

    with ScriptedServer(script, models=["scripted"]) as srv:
        cfg = Config()
        cfg.endpoint.base_url, cfg.concurrency = srv.base_url, 8
        cfg.audit.sample_flagged = cfg.audit.sample_unflagged = 100
        cfg.selection.target_precision = 0.9
        asyncio.run(curate(cfg, data, run))
        before = json.loads(RunStore.reader(run).get_meta("precision"))
        assert "audit" not in before["label_model"]
        store, audit = RunStore.reader(run), AuditStore(run)
        _summary(run)  # draws the sample (the whole run)
        scripted_review(store, audit, truth)
        store.close()
        asyncio.run(curate(cfg, data, run))
    after = json.loads(RunStore.reader(run).get_meta("precision"))
    model = after["label_model"]
    assert model["audit"]["missed_noise"] == pytest.approx(2 / 29)
    assert before["label_error"] == model["clean"] == 0 and before["probes"] == 29
    assert after["label_error"] == pytest.approx(2 / 29)
