"""CLEAR at a precision target: the decoy estimator on hand-made confidences, then end to end
against the simulated endpoint (a real HTTP server) with known true labels."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from eval.sim_server import SimParams, SimServer, Simulator
from robustft.config import RunOptions
from robustft.methods import decoys as D
from robustft.store.runstore import RunStore
from robustft.viewer.server import Viewer
from tests.conftest import noisy_mc_file, sim_curate, wait


def test_wrong_share_and_posterior_by_hand():
    f_r, f_w = np.array([0.1, 0.9]), np.array([0.9, 0.1])
    rows = np.array([0] * 50 + [1] * 50)
    # symmetric: the likelihood of π0 is maximal at 0.5
    assert D.wrong_share(rows, f_r, f_w) == pytest.approx(0.5, abs=1e-6)
    # all rows in bin 1: π0 maximises Σ log((1-π0)·0.9 + π0·0.1) -> 0 (clipped by EM to ~0)
    assert D.wrong_share(np.ones(10, int), f_r, f_w) < 0.01


def test_option_fit_finds_the_right_option():
    # 40 rows of 4 options: the right one scores in bin 2, wrong ones in bin 0 (one in bin 1)
    rows = [np.array([2, 0, 0, 1 if i % 4 == 0 else 0]) for i in range(40)]
    f_r, f_w = D.option_fit(rows, 3)
    # ≈ the hard assignment: f_R = (0, 0, 40) + 0.1, f_W = (110, 10, 0) + 0.1, normalised
    # (the EM posteriors stay a hair below 1 through the pseudo-counts)
    assert f_r == pytest.approx(np.array([0.1, 0.1, 40.1]) / 40.3, abs=1e-4)
    assert f_w == pytest.approx(np.array([110.1, 10.1, 0.1]) / 120.3, abs=1e-4)


def test_separable_keeps_every_right_row():
    # decoy rows: right option 1.0, wrong ones 0.0; rows: 70 right (1.0), 30 wrong (0.0)
    decoy_rows = [[1.0, 0.0, 0.0, 0.0]] * 30
    conf = [1.0] * 70 + [0.0] * 30
    cut = D.decoy_cutoff(conf, decoy_rows, 0.95)
    assert cut.gamma == 1.0 and cut.kept == 70
    assert cut.wrong_share == pytest.approx(0.3, abs=0.01)
    # posterior in bin 1.0: 0.7·f_R / (0.7·f_R + 0.3·f_W), f_R = 30.1/30.2, f_W = 0.1/90.2
    f_r, f_w = 30.1 / 30.2, 0.1 / 90.2
    assert cut.estimate == pytest.approx(0.7 * f_r / (0.7 * f_r + 0.3 * f_w), abs=1e-3)
    assert cut.decoys == 90 and cut.decoys_below == 1.0


def test_inseparable_keeps_none_and_says_why():
    rng = np.random.default_rng(0)
    decoy_rows = [rng.choice([0.0, 0.5, 1.0], 4).tolist() for _ in range(50)]
    conf = rng.choice([0.0, 0.5, 1.0], 400).tolist()  # right and wrong score alike
    cut = D.decoy_cutoff(conf, decoy_rows, 0.95)
    assert cut.gamma is None and cut.kept == 0 and "no row kept" in cut.reason


def test_too_few_decoy_rows_and_unknown_confidences():
    cut = D.decoy_cutoff([1.0] * 50, [[1.0, 0.0]] * 10, 0.9)
    assert cut.gamma is None and "fewer than the 20" in cut.reason
    # decoy rows with an unknown option are left out; NaN rows are never kept
    rows = [[1.0, 0.0, 0.0]] * 25 + [[1.0, float("nan"), 0.0]] * 5
    cut = D.decoy_cutoff([1.0] * 60 + [float("nan")] * 10 + [0.0] * 40, rows, 0.9)
    assert cut.decoys == 50 and cut.kept == 60


# ---- end to end -------------------------------------------------------------------------

N = 600


def _data(tmp_path):
    return noisy_mc_file(tmp_path, N, 7, lambda i: i % 10 < 4)


def _run(path, out, url, clear) -> dict:
    """One cache: only the decoys differ (no canaries: their calls would count too)."""
    return sim_curate(path, out, url, RunOptions(
        method="clear", cache_path=out.parent / "cache.sqlite"), clear=clear,
        audit={"canaries": 0})


def _clean(out, truth) -> tuple[int, float]:
    with (out / "decisions.csv").open(newline="") as f:
        kept = [d for d in csv.DictReader(f) if d["fate"] == "clean"]
    return len(kept), sum(d["final_label"] == truth[d["id"]] for d in kept) / max(1, len(kept))


@pytest.mark.parametrize("accuracy", [0.85, 0.25])
def test_clear_target_against_the_median(tmp_path, accuracy):
    path, truth, sim_truth = _data(tmp_path)
    sim = Simulator(sim_truth, SimParams(accuracy=accuracy, seed=2))
    with SimServer(sim) as server:
        _run(path, tmp_path / "median", server.base_url, {"correct": False})
        sent = len(server.requests)
        summary = _run(path, tmp_path / "target", server.base_url,
                       {"correct": False, "target_precision": 0.95, "decoys": 60})
        decoy_requests = len(server.requests) - sent
    n_med, p_med = _clean(tmp_path / "median", truth)
    n_tgt, p_tgt = _clean(tmp_path / "target", truth)
    est = summary["precision"]
    assert est["kind"] == "decoys" and est["decoys"] == 180 and est["target"] == 0.95
    assert decoy_requests == 180 * 2  # two self-reflection prompts per other option
    if accuracy == 0.85:  # confidence separates: more rows kept, at the target
        assert n_tgt > n_med * 1.1 and p_tgt >= 0.95 - 0.03
        assert est["kept"] == n_tgt and abs(est["estimate"] - p_tgt) <= 0.03
        assert abs(est["wrong_share"] - 0.4) <= 0.06
    else:  # the endpoint is at chance: no γ reaches 0.95
        assert n_tgt == 0 and est["gamma"] is None and "no row kept" in est["reason"]
    with (tmp_path / "target" / "decisions.csv").open(newline="") as f:
        reasons = [d["reason"] for d in csv.DictReader(f)]
    assert all("precision" in r for r in reasons)


def test_decoys_leave_rows_as_they_are_and_resume(tmp_path):
    path, truth, sim_truth = _data(tmp_path)
    sim = Simulator(sim_truth, SimParams(accuracy=0.85, seed=2))
    clear = {"correct": False, "target_precision": 0.9, "decoys": 30}
    with SimServer(sim) as server:
        _run(path, tmp_path / "run", server.base_url, clear)
        sent = len(server.requests)
        _run(path, tmp_path / "run", server.base_url, clear)
        assert len(server.requests) == sent  # a rerun resumes: no decoy is scored twice
    store = RunStore.open_existing(tmp_path / "run")
    decoys = store.probes("decoy")
    assert len(decoys) == 30
    labels = {json.loads(line)["id"]: json.loads(line)["answer"]
              for line in path.read_text().splitlines()}
    for d in decoys:
        assert labels[d["id"]] not in d["decoys"] and len(d["decoys"]) == 3
        stages = [stage for stage, _ in store.calls(d["id"])]
        assert stages.count("decoy") == 6
        proposed = {m["content"].split("Proposed response: ", 1)[1].split("\n", 1)[0]
                    for stage, c in store.calls(d["id"]) if stage == "decoy"
                    for m in c.messages if "Proposed response: " in m["content"]}
        assert proposed == set(d["decoys"])  # each other option, never the label
    with (tmp_path / "run" / "decisions.csv").open(newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    for d in decoys:  # a decoy row keeps its own label whatever its fate
        assert rows[d["id"]]["original_label"] == labels[d["id"]]
        assert rows[d["id"]]["final_label"] in ("", labels[d["id"]])


def test_free_text_is_refused(tmp_path):
    path = tmp_path / "free.jsonl"
    path.write_text("".join(json.dumps({"id": f"f{i}", "question": f"Say {i}",
                                        "answer": f"number {i}"}) + "\n" for i in range(30)))
    sim_truth = {f"Say {i}": ("A", ["A", "B"]) for i in range(30)}
    with SimServer(Simulator(sim_truth, SimParams())) as server, \
            pytest.raises(ValueError, match="multiple-choice"):
        _run(path, tmp_path / "run", server.base_url, {"target_precision": 0.9})


def test_signal_z_by_hand():
    # 4 rows of 4 options, the response the most sampled answer in all: z = (4 - 1) / sqrt(0.75)
    assert D.signal_z([1, 1, 1, 1], [0.25] * 4) == pytest.approx(3 / 0.75 ** 0.5)
    assert D.signal_z([0.25] * 8, [0.25] * 8) == 0.0 and D.signal_z([], []) == 0.0
    cut = D.decoy_cutoff([1.0] * 70 + [0.0] * 30, [[1.0, 0.0, 0.0, 0.0]] * 30, 0.95, signal=1.0)
    assert cut.gamma is None and "z = 1.0" in cut.reason


def test_summary_and_viewer_show_precision_against_gamma(tmp_path, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    from robustft.cli.render import decoy_table

    path, truth, sim_truth = _data(tmp_path)
    with SimServer(Simulator(sim_truth, SimParams(accuracy=0.85, seed=2))) as server:
        summary = _run(path, tmp_path / "run", server.base_url,
                       {"correct": False, "target_precision": 0.9, "decoys": 40})
    p = summary["precision"]
    table = decoy_table(p)
    assert table.row_count == len(p["curve"]) and p["reason"] in str(table.caption)
    v = Viewer(tmp_path / "run", 0).start()
    try:
        browser.get(v.url)
        wait(browser, lambda d: d.find_elements(By.ID, "precision"))
        panel = browser.find_element(By.ID, "precision")
        assert f"{p['decoys']} decoys" in panel.text and p["reason"] in panel.text
        assert len(panel.find_elements(By.CSS_SELECTOR, "tbody tr")) == len(p["curve"])
        assert panel.find_elements(By.CSS_SELECTOR, "polyline.cutoff")
    finally:
        v.stop()
