"""The shipped demo: country capitals with 30% injected label noise, and its scoring.

``eval/make_demo.py`` writes the two files; the truth file is never shown to the pipeline.
"""

from __future__ import annotations

import csv
import json
from importlib.resources import files
from pathlib import Path

DATA = Path(str(files("robustft.demo")))
DEMO_INPUT = DATA / "demo_capitals.jsonl"
DEMO_TRUTH = DATA / "demo_capitals_truth.jsonl"


def detection_scores(flagged: set[str], noisy: set[str], total: int) -> dict[str, float]:
    """Precision, recall and F1 of flagged ids against the truly noisy ids, plus the noise
    base rate (the precision of flagging at random)."""
    tp = len(flagged & noisy)
    p = tp / len(flagged) if flagged else 0.0
    r = tp / len(noisy) if noisy else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "base_rate": len(noisy) / total if total else 0.0, "flagged": len(flagged),
            "noisy": len(noisy)}


def score_run(run_dir: Path, truth_path: Path = DEMO_TRUTH) -> dict[str, float]:
    """Detection scores of a run plus the label accuracy of its curated rows."""
    truth = {r["id"]: r for r in map(json.loads, truth_path.open())}
    with (run_dir / "decisions.csv").open(newline="") as f:
        decisions = [d for d in csv.DictReader(f) if d["id"] in truth]
    flagged = {d["id"] for d in decisions if d["fate"].startswith("relabeled")}
    noisy = {i for i, r in truth.items() if r["noisy"]}
    scores = detection_scores(flagged, noisy, len(decisions))
    kept = [d for d in decisions if d["fate"] in ("clean", "relabeled-kept")]
    from robustft.methods.matching import answers_match

    correct = sum(answers_match(d["final_label"], truth[d["id"]]["answer"], is_mc=False)
                  for d in kept)
    noisy_given = sum(truth[d["id"]]["noisy"] for d in decisions)
    scores.update(kept=len(kept), curated_accuracy=correct / len(kept) if kept else 0.0,
                  input_accuracy=1 - noisy_given / len(decisions) if decisions else 0.0)
    return scores
