"""Human review: the store (versions, conflicts, stale reviews), what a review does to a row,
agreement statistics, the viewer's write guards over real HTTP, reruns and export through the
CLI. The browser flows are in test_review_browser.py."""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from eval.scripted_server import ScriptedServer, parity, write_parity_rows
from robustft.methods.review_stats import review_stats
from robustft.store.reviews import Review, ReviewConflict, ReviewStore, effective
from robustft.viewer.server import MAX_BODY, Viewer
from tests.conftest import ROOT

KEPT = ("clean", "relabeled-kept")


def test_store_versions_conflicts_and_log(tmp_path):
    store = ReviewStore(tmp_path)
    first = store.save("s1", "edit", "C", "looks like C", "ann", "relabeled-kept", "B", 0)
    assert first.version == 1 and store.get("s1").response == "C"
    with pytest.raises(ReviewConflict, match="ann reviewed this sample first"):
        store.save("s1", "drop", None, None, "bob", "relabeled-kept", "B", 0)  # stale base
    second = store.save("s1", "accept", None, None, "bob", "relabeled-kept", "B", 1)
    assert second.version == 2 and store.count() == 1
    assert store.db.execute("SELECT COUNT(*) FROM review_log").fetchone()[0] == 2
    with pytest.raises(ValueError, match="needs the new response"):
        store.save("s2", "edit", " ", None, "ann", "error", None, 0)
    with pytest.raises(ValueError, match="action must be"):
        store.save("s2", "delete", None, None, "ann", "error", None, 0)
    assert second.stale("relabeled-kept", "B") is False
    assert second.stale("relabeled-dropped", "B") and second.stale("relabeled-kept", "D")
    store.close()


def test_concurrent_saves_one_wins(tmp_path):
    """The viewer's threads share one store: 16 saves of one sample against version 0 at
    once: exactly one lands, the rest are conflicts (no lost update, no SQLite error)."""
    from concurrent.futures import ThreadPoolExecutor

    store = ReviewStore(tmp_path)

    def save(i: int) -> str:
        try:
            store.save("s1", "edit", f"v{i}", None, f"r{i}", "error", None, 0)
            return "saved"
        except ReviewConflict:
            return "conflict"

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(save, range(16)))
    assert outcomes.count("saved") == 1 and outcomes.count("conflict") == 15
    assert store.get("s1").version == 1
    store.close()


@pytest.mark.parametrize("action, response, fate, final, want", [
    (None, None, "relabeled-kept", "B", (True, "B")),  # no review: the agents' decision
    ("accept", None, "relabeled-dropped", "B", (False, "B")),
    ("restore", "A", "relabeled-kept", "B", (True, "A")),  # the original comes back
    ("restore", "A", "relabeled-dropped", "B", (True, "A")),
    ("drop", None, "relabeled-kept", "B", (False, "B")),
    ("edit", "C", "error", None, (True, "C")),
])
def test_effective_decision(action, response, fate, final, want):
    review = Review("s", action, response, None, "ann", 0.0, fate, final, 1) if action else None
    assert effective(fate, final, "A", review, KEPT) == want


def test_stale_review_is_not_applied():
    review = Review("s", "edit", "C", None, "ann", 0.0, "error", None, 1)
    # a rerun relabeled the row: the edit was made against an error, so it stays unapplied
    assert effective("relabeled-kept", "D", "A", review, KEPT) == (True, "D")


def test_review_stats_by_hand():
    rows = [("relabeled-kept", 0.1, "accept", False), ("relabeled-kept", 0.7, "restore", False),
            ("relabeled-dropped", 1.2, "accept", False), ("relabeled-dropped", 1.0, "edit", False),
            ("error", None, "drop", False), ("relabeled-kept", 0.1, "drop", True)]
    s = review_stats(rows, queue=40)
    assert s["reviews"] == 6 and s["stale"] == 1 and s["queue"] == 40
    assert s["actions"] == {"accept": 2, "restore": 1, "drop": 1, "edit": 1}
    assert s["agreement"] == 0.4  # 2 of the 5 live reviews accepted
    assert s["by_fate"]["relabeled-kept"] == {"reviews": 2, "accept": 0.5, "restore": 0.5,
                                              "drop": 0.0, "edit": 0.0}
    assert s["by_fate"]["relabeled-dropped"]["edit"] == 0.5
    assert list(s["by_uncertainty"]) == ["< 0.2", "0.5–0.9", "≥ 0.9", "none"]
    assert s["by_uncertainty"]["≥ 0.9"] == {"reviews": 2, "accept": 0.5, "restore": 0.0,
                                           "drop": 0.0, "edit": 0.5}
    assert review_stats([], 3)["agreement"] is None


# ---- a real run, reviewed over HTTP ---------------------------------------------------------

def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "robustft.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OPENAI_API_KEY": "x", "COLUMNS": "200",
                               **(env or {})})


def _failing_on(question: str):
    def script(body):
        from eval.scripted_server import target_question
        if target_question(body) == question:
            raise LookupError("scripted refusal")
        return parity(body)
    return script


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """12 parity rows, every third label flipped; 'Is 4 even?' ends as an error row."""
    d = tmp_path_factory.mktemp("review")
    inp = d / "in.jsonl"
    write_parity_rows(inp, 12)
    with ScriptedServer(_failing_on("Is 4 even?")) as server:
        done = _cli("curate", "-i", str(inp), "-o", str(d / "run"), "--base-url",
                    server.base_url, "--model", "m")
    assert done.returncode == 3, done.stderr[-2000:]  # one error row
    return d / "run", inp


@pytest.fixture
def run(base_run, tmp_path):
    shutil.copytree(base_run[0], tmp_path / "run")
    return tmp_path / "run", base_run[1]


def _request(viewer: Viewer, path: str, body: bytes | None = None, **headers: str):
    req = urllib.request.Request(viewer.url.rstrip("/") + path, data=body, headers=headers,
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _token(viewer: Viewer) -> str:
    page = urllib.request.urlopen(viewer.url).read().decode()
    return page.split('name="robustft-token" content="', 1)[1].split('"', 1)[0]


def review(viewer: Viewer, **body):
    return _request(viewer, "/api/review", json.dumps(body).encode(),
                    **{"Content-Type": "application/json", "X-Robustft-Token": _token(viewer)})


def _queue(viewer: Viewer) -> list[str]:
    total = _request(viewer, "/api/queue?index=0")[1]["total"]
    return [_request(viewer, f"/api/queue?index={i}")[1]["id"] for i in range(total)]


def test_writes_need_the_token_our_origin_json_and_a_small_body(run):
    v = Viewer(run[0], 0).start()
    try:
        sid = _queue(v)[0]
        body = json.dumps({"id": sid, "action": "drop"}).encode()
        json_ct = {"Content-Type": "application/json"}
        assert _request(v, "/api/review", body, **json_ct)[0] == 403  # no token
        assert _request(v, "/api/review", body, **json_ct, X_Robustft_Token="guess")[0] == 403
        token = {"X-Robustft-Token": _token(v)}
        status, reply = _request(v, "/api/review", body, **json_ct, **token,
                                 Origin="http://evil.example")
        assert status == 403 and "cross-origin" in reply["error"]
        assert _request(v, "/api/review", body, **token, **{"Content-Type": "text/plain"})[
            0] == 415
        big = json.dumps({"id": sid, "action": "edit", "response": "x" * MAX_BODY}).encode()
        assert _request(v, "/api/review", big, **json_ct, **token)[0] == 413
        assert ReviewStore(run[0]).count() == 0  # nothing got through
        status, reply = _request(v, "/api/review", body, **json_ct, **token,
                                 Origin=v.url.rstrip("/"))
        assert status == 200 and reply["review"]["action"] == "drop"
        # a second save against the version the first one replaced is a conflict
        status, reply = review(v, id=sid, action="accept", base_version=0)
        assert status == 409 and "conflict" in reply["error"]
        assert review(v, id=sid, action="edit", response="Z", base_version=1)[0] == 400
        clean = next(r["id"] for r in _request(v, "/api/samples?fate=clean")[1]["rows"])
        assert "only the samples the agents flagged or failed on" in review(
            v, id=clean, action="drop")[1]["error"]
    finally:
        v.stop()


def test_network_bind_needs_a_password(run):
    with pytest.raises(ValueError, match="--password"):
        Viewer(run[0], 0, host="0.0.0.0")
    refused = _cli("view", str(run[0]), "--host", "0.0.0.0", "--port", "0",
                   env={"ROBUSTFT_VIEW_PASSWORD": ""})
    assert refused.returncode == 2 and "--password" in refused.stderr + refused.stdout
    v = Viewer(run[0], 0, host="0.0.0.0", password="s3cret").start()
    try:
        port = v.httpd.server_address[1]
        v_url = f"http://127.0.0.1:{port}"
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(v_url + "/api/summary")
        auth = "Basic " + base64.b64encode(b"carol:s3cret").decode()
        wrong = "Basic " + base64.b64encode(b"carol:guess").decode()
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(urllib.request.Request(v_url + "/", headers={
                "Authorization": wrong}))
        page = urllib.request.urlopen(urllib.request.Request(v_url + "/", headers={
            "Authorization": auth})).read().decode()
        token = page.split('name="robustft-token" content="', 1)[1].split('"', 1)[0]
        sid = json.loads(urllib.request.urlopen(urllib.request.Request(
            v_url + "/api/queue?index=0", headers={"Authorization": auth})).read())["id"]
        saved = json.loads(urllib.request.urlopen(urllib.request.Request(
            v_url + "/api/review", data=json.dumps({"id": sid, "action": "accept"}).encode(),
            headers={"Authorization": auth, "Content-Type": "application/json",
                     "X-Robustft-Token": token})).read())
        assert saved["review"]["reviewer"] == "carol"  # the Basic-auth user names the reviewer
    finally:
        v.stop()


def _rows(path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def _decisions(run) -> dict[str, dict]:
    with (run / "decisions.csv").open(newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def test_reruns_keep_reviews_and_flag_changed_decisions_stale(run):
    run_dir, inp = run
    v = Viewer(run_dir, 0, reviewer="ann").start()
    try:
        queue = _queue(v)
        error_id = next(i for i in queue if _request(v, f"/api/sample?id={i}")[1]["fate"]
                        == "error")
        changed = [i for i in queue if i != error_id]
        assert review(v, id=error_id, action="edit", response="B")[0] == 200
        assert review(v, id=changed[0], action="restore", note="the given label was right")[
            0] == 200
    finally:
        v.stop()
    with ScriptedServer(parity) as server:
        again = _cli("curate", "-i", str(inp), "-o", str(run_dir), "--base-url",
                     server.base_url, "--model", "m")
        assert again.returncode == 3  # unchanged: the error row stays an error
        assert "reviews applied" in again.stdout and ReviewStore(run_dir).count() == 2
        rows = _decisions(run_dir)
        assert rows[error_id]["review_stale"] == "False"
        assert rows[error_id]["exported_label"] == "B"  # the edit applies to the error row
        retried = _cli("curate", "--retry-errors", str(run_dir), "--base-url",
                       server.base_url, "--model", "m")
        assert retried.returncode == 0, retried.stderr[-2000:]
    assert "1 stale" in retried.stdout
    rows = _decisions(run_dir)
    assert rows[error_id]["fate"] != "error" and rows[error_id]["review_stale"] == "True"
    assert rows[error_id]["exported_label"] == rows[error_id]["final_label"]  # not the edit
    assert rows[changed[0]]["review_stale"] == "False"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["reviews"]["stale"] == 1 and summary["reviews"]["reviews"] == 2
    trace = _cli("trace", str(run_dir), error_id)
    assert "STALE" in trace.stdout


def test_export_applies_reviews_in_the_input_shape(run, tmp_path):
    run_dir, inp = run
    given = _rows(inp)
    v = Viewer(run_dir, 0, reviewer="ann").start()
    try:
        details = {i: _request(v, f"/api/sample?id={i}")[1] for i in _queue(v)}
        kept = [i for i, d in details.items() if d["fate"] == "relabeled-kept"]
        dropped = [i for i, d in details.items() if d["fate"] == "relabeled-dropped"]
        error_id = next(i for i, d in details.items() if d["fate"] == "error")
        assert kept and dropped
        review(v, id=kept[0], action="restore")
        review(v, id=dropped[0], action="accept")
        review(v, id=error_id, action="edit", response="b")  # letters are case-blind
        if len(kept) > 1:
            review(v, id=kept[1], action="drop")
    finally:
        v.stop()
    out = tmp_path / "export" / "reviewed.jsonl"
    done = _cli("export", str(run_dir), "-o", str(out))
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert f"{3 + (len(kept) > 1)} review(s) applied" in said
    rows = _rows(out)
    assert rows[kept[0]]["answer"] == given[kept[0]]["answer"]  # restored
    assert rows[kept[0]].keys() == given[kept[0]].keys()  # the input's shape
    assert dropped[0] not in rows  # the agents' drop accepted
    assert rows[error_id]["answer"] == "B"
    if len(kept) > 1:
        assert kept[1] not in rows
    sft = [json.loads(x) for x in (out.parent / "sft.jsonl").read_text().splitlines()]
    assert {s["id"] for s in sft} == set(rows)
    only = _cli("export", str(run_dir), "-o", str(tmp_path / "only.jsonl"), "--reviewed-only")
    assert only.returncode == 0
    assert set(_rows(tmp_path / "only.jsonl")) == {kept[0], error_id}
    decided = _decisions(run_dir)
    assert decided[kept[0]]["review_action"] == "restore"
    assert decided[kept[0]]["reviewed_by"] == "ann"
    wrong = _cli("export", str(run_dir), "-o", str(tmp_path / "x.csv"))
    assert wrong.returncode == 2 and "suffix .jsonl" in wrong.stderr + wrong.stdout
