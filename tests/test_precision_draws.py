"""eval.probe_draws on a hand-made run directory: relabels, their agreement and the truth are
read from decisions.csv, and each draw keeps relabels per agreement stratum as a run does."""

import csv

import numpy as np

from eval.probe_draws import kept_by, main, outcome
from robustft.methods.precision import PrecisionCut

FIELDS = ["id", "fate", "original_label", "final_label", "context_answer", "reviewer_answer",
          "entropy"]


def _run(tmp_path):
    """100 clean rows (all right) and 200 relabels at entropies 0.005–1.0: the 120 where
    context and reviewer agree are all right (one of them without a context answer), of the
    80 that differ every other one."""
    truth, rows = [], []
    for i in range(100):
        truth.append({"id": f"c{i}", "answer": "A"})
        rows.append({"id": f"c{i}", "fate": "clean", "original_label": "A", "final_label": "A"})
    for i in range(200):
        agree, right = i % 5 < 3, i % 5 < 3 or i % 2 == 0
        truth.append({"id": f"r{i}", "answer": "B"})
        rows.append({"id": f"r{i}", "fate": "relabeled-kept", "original_label": "A",
                     "final_label": "B" if right else "C", "entropy": f"{(i + 1) / 200}",
                     "context_answer": ("B" if right else "C") if agree else "D",
                     "reviewer_answer": "B" if right else "C"})
    rows[-3]["context_answer"] = ""  # agreeing, but the context reply unparsed: differs
    for name, data, fields in (("labeled.csv", truth, ["id", "answer"]),
                               ("decisions.csv", rows, FIELDS)):
        with (tmp_path / name).open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(data)
    return tmp_path / "labeled.csv"


def test_outcome_and_kept_by(tmp_path):
    clean = _run(tmp_path)
    rows, n_clean, right_clean, e, y, g = outcome(str(tmp_path), str(clean))
    assert (rows, n_clean, right_clean, e.size) == (300, 100, 100, 200)
    assert g.sum() == 119 and y[g].all() and y[~g].sum() == 41
    cut = PrecisionCut(0.9, 0.5, 0, None, None, 0, None, "",
                       strata=[{"cutoff": None}, {"cutoff": 0.5}])
    assert (kept_by(cut, e, g) == (g & (e <= 0.5))).all()
    assert (kept_by(PrecisionCut(0.9, 0.5, 0, None, None, 0, None, ""), e, g) == (e <= 0.5)).all()


def test_draws_print_both_fits(tmp_path, capsys):
    clean = _run(tmp_path)
    args = [str(tmp_path), "--clean", str(clean), "--probes", "80", "--targets", "0.95",
            "--draws", "2"]
    main(args)
    strata = capsys.readouterr().out
    main([*args, "--entropy-only"])
    plain = capsys.readouterr().out
    # agreement separates all-right from half-right relabels: every draw keeps the agreeing
    # ones; entropy alone (0.8 right whatever it is) reaches 0.95 in none
    assert "200 relabels, 0.800 right" in strata
    assert "target 0.95: kept in 1.00 of draws" in strata
    assert "target 0.95: kept in 0.00 of draws" in plain
    assert np.isfinite(float(strata.split("mean estimate ")[1].split(",")[0]))
