"""The shipped demos: country capitals with 30% injected label noise, as question/answer rows
(``capitals``) and as TRL chat rows answered in full sentences (``chat``), and their scoring.

``eval/make_demo.py`` writes the files; the truth files are never shown to the pipeline.
"""

from __future__ import annotations

import csv
import json
from importlib.resources import files
from pathlib import Path

from robustft.schemas import KEPT, Fate

DATA = Path(str(files("robustft.demo")))
DEMO_INPUT = DATA / "demo_capitals.jsonl"
DEMO_TRUTH = DATA / "demo_capitals_truth.jsonl"
CHAT_INPUT = DATA / "demo_chat.jsonl"
CHAT_TRUTH = DATA / "demo_chat_truth.jsonl"
DEMOS = {"capitals": (DEMO_INPUT, DEMO_TRUTH), "chat": (CHAT_INPUT, CHAT_TRUTH)}


def is_demo_input(path: str | Path) -> bool:
    """Whether ``path`` is one of the shipped demo inputs (the embedded model's home turf)."""
    try:
        return Path(path).resolve() in {p.resolve() for p, _ in DEMOS.values()}
    except OSError:
        return False


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
    """Detection scores of a run plus the label accuracy of its curated rows (short answers
    by token F1, full-sentence answers by equal normalised text: "The capital of France is
    Lyon." must not pass for "... Paris.")."""
    truth = {r["id"]: r for r in map(json.loads, truth_path.open())}
    with (run_dir / "decisions.csv").open(newline="") as f:
        decisions = [d for d in csv.DictReader(f) if d["id"] in truth]
    flagged = {d["id"] for d in decisions  # flagged by the checker: relabeled or confirmed
               if d["fate"].startswith("relabeled") or d["fate"] == Fate.CONFIRMED}
    noisy = {i for i, r in truth.items() if r["noisy"]}
    scores = detection_scores(flagged, noisy, len(decisions))
    kept = [d for d in decisions if d["fate"] in KEPT]
    from robustft.methods.matching import answers_match, exact_match, normalise

    def right(given: str, true: str) -> bool:
        if len(normalise(true)) > 4:
            return exact_match(given, true, is_mc=False)
        return answers_match(given, true, is_mc=False)

    correct = sum(right(d["final_label"], truth[d["id"]]["answer"]) for d in kept)
    noisy_given = sum(truth[d["id"]]["noisy"] for d in decisions)
    scores.update(kept=len(kept), curated_accuracy=correct / len(kept) if kept else 0.0,
                  input_accuracy=1 - noisy_given / len(decisions) if decisions else 0.0)
    return scores
