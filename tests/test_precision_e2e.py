"""Selection at a precision target, end to end: the simulated endpoint (a real HTTP server) on
800 multiple-choice rows with 40% flipped labels, curated once with β = 0.5 and once with
``selection.target_precision``; probes are checked in the traces and the outputs."""

from __future__ import annotations

import csv
import json

import pytest

from eval.sim_server import SimParams, SimServer, Simulator
from robustft.config import RunOptions
from robustft.store.runstore import RunStore
from robustft.viewer.server import Viewer
from tests.conftest import noisy_mc_file, sim_curate, wait

N = 800


def _data(tmp_path, n: int = N):
    return noisy_mc_file(tmp_path, n, 5, lambda i: i % 5 < 2)


def _run(path, out, url, selection) -> dict:
    return sim_curate(path, out, url, RunOptions(), selection=selection)


def _kept_relabels(out, truth) -> tuple[int, float]:
    with (out / "decisions.csv").open(newline="") as f:
        kept = [d for d in csv.DictReader(f) if d["fate"] == "relabeled-kept"]
    return len(kept), sum(d["final_label"] == truth[d["id"]] for d in kept) / max(1, len(kept))


@pytest.mark.parametrize("calibration", [1.0, 0.0])
def test_precision_target_against_fixed_beta(tmp_path, calibration):
    path, truth, sim_truth = _data(tmp_path)
    sim = Simulator(sim_truth, SimParams(accuracy=0.85, calibration=calibration, seed=1))
    with SimServer(sim) as server:
        _run(path, tmp_path / "beta", server.base_url, {"beta": 0.5})
        summary = _run(path, tmp_path / "target", server.base_url,
                       {"target_precision": 0.95, "probes": 100})
    n_beta, p_beta = _kept_relabels(tmp_path / "beta", truth)
    n_target, p_target = _kept_relabels(tmp_path / "target", truth)
    est = summary["precision"]
    assert est["probes"] == 100 and est["target"] == 0.95
    # the probes' label-error share, from the label model fitted on the detection answers:
    # 40% of the labels flipped, three detection answers per row (direct, reasoning,
    # reflection); a flip all three repeat is rare (5 options: ~6e-5 of the probes)
    model = est["label_model"]
    assert model["noise"] == pytest.approx(0.4, abs=0.04) and len(model["accuracy"]) == 3
    assert all(a == pytest.approx(0.85, abs=0.04) for a in model["accuracy"])
    assert 0 < est["label_error"] < 0.001
    # the second, probe-free estimate: the same model with the relabel agents' answers as
    # two more sources (context, reviewer), fitted on every detected row; the kept set's
    # estimate is the lower of the probes' fit and its mean posterior over the kept relabels
    relabel = est["relabel_model"]
    assert relabel["noise"] == pytest.approx(0.4, abs=0.04) and len(relabel["accuracy"]) == 5
    assert all(a == pytest.approx(0.85, abs=0.05) for a in relabel["accuracy"])
    assert est["estimate"] == pytest.approx(min(est["fitted"], est["support"]))
    assert abs(est["support"] - p_target) <= 0.03
    if calibration == 1.0:  # confidence separates right from wrong: keep more, at the target
        assert n_target > 1.5 * n_beta and p_beta >= 0.95 and p_target >= 0.95 - 0.03
        assert est["kept"] == n_target and est["estimate"] >= est["lower"] >= 0.95
        assert abs(est["estimate"] - p_target) <= 0.03
    else:  # entropy says nothing (85% right whatever it is), but two agents that err
        # independently rarely agree on one wrong option of five: 0.85² / (0.85² + 0.15²/4)
        # = 0.992 right where they agree; those are kept, whatever their entropy, and of the
        # differing ones (about half right) only as many as the 10% quantile allows
        differ, same = est["strata"]
        assert differ["fit"] is None and same["fit"] is None
        assert same["kept"] + differ["kept"] == est["kept"] == n_target > 0
        assert same["kept"] > 4 * differ["kept"]
        assert est["estimate"] >= est["lower"] >= 0.95 and p_target >= 0.95 - 0.03
        assert abs(est["estimate"] - p_target) <= 0.03
        assert "context and reviewer agree: entropy ≤" in est["reason"]


def test_probes_stay_clean_and_never_see_their_label(tmp_path):
    path, truth, sim_truth = _data(tmp_path)
    sim = Simulator(sim_truth, SimParams(accuracy=0.85, calibration=1.0, seed=1))
    with SimServer(sim) as server:
        _run(path, tmp_path / "run", server.base_url, {"target_precision": 0.9, "probes": 50})
        sent = len(server.requests)
        again = _run(path, tmp_path / "run", server.base_url,
                     {"target_precision": 0.9, "probes": 50})
        assert len(server.requests) == sent  # a rerun resumes: probes are not sent again
    store = RunStore.open_existing(tmp_path / "run")
    probes = store.probes()
    assert len(probes) == 50 and again["precision"]["probes"] == 50
    with (tmp_path / "run" / "decisions.csv").open(newline="") as f:
        fate = {d["id"]: d for d in csv.DictReader(f)}
    given = {json.loads(line)["id"]: json.loads(line)["answer"]
             for line in path.read_text().splitlines()}
    for p in probes:
        d = fate[p["id"]]
        assert d["fate"] == "clean" and d["final_label"] == d["original_label"] == given[p["id"]]
        assert p["id"] not in [n["id"] for n in p.get("neighbours", [])]  # never its own
        calls = {c.role: c for stage, c in store.calls(p["id"]) if stage == "probe"}
        assert set(calls) == {"context", "reviewer"}
        # drawn only from clean rows whose every detection answer is the label
        detect = [c.answer for stage, c in store.calls(p["id"]) if stage == "detected"]
        assert len(detect) == 3 and set(detect) == {given[p["id"]]}
        # no label in the prompts: the context prompt's own question has no answer line, and
        # the reviewer sees only the agents' answers (the reasoning expert's from detection)
        context, review = (calls[r].messages[-1]["content"] for r in ("context", "reviewer"))
        assert "Answer:" not in context.split("Now the question to answer")[-1]
        data = store.data(p["id"])
        assert f"Candidate 1 (reasoning expert): {data['reasoning_answer']}\n" in review
        assert (f"Candidate 2 (expert with similar solved examples): {p['context_answer']}\n"
                in review)
    split = [sid for sid, d in fate.items() if d["fate"] == "clean" and
             {c.answer for stage, c in store.calls(sid) if stage == "detected"} != {given[sid]}]
    assert split and not set(split) & {p["id"] for p in probes}  # clean, not unanimous
    assert "precision" in store.totals()
    store.close()


def test_summary_and_viewer_show_the_curve_and_cutoff(tmp_path, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    from robustft.cli.render import precision_table

    path, truth, sim_truth = _data(tmp_path, 300)
    sim = Simulator(sim_truth, SimParams(accuracy=0.85, calibration=1.0, seed=1))
    with SimServer(sim) as server:
        summary = _run(path, tmp_path / "run", server.base_url, {"target_precision": 0.9})
    p = summary["precision"]
    table = precision_table(p)
    assert table.row_count == len(p["curve"]) and p["reason"] in str(table.caption)
    v = Viewer(tmp_path / "run", 0).start()
    try:
        browser.get(v.url)
        wait(browser, lambda d: d.find_elements(By.ID, "precision"))
        panel = browser.find_element(By.ID, "precision")
        assert f"{p['probes']} probes" in panel.text and p["reason"] in panel.text
        assert len(panel.find_elements(By.CSS_SELECTOR, "tbody tr")) == len(p["curve"])
        assert panel.find_elements(By.CSS_SELECTOR, "polyline.cutoff")
    finally:
        v.stop()
