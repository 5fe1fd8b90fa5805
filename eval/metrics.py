"""Noise-audit metrics (pure: sequences in, numbers and arrays out).

Definitions, per run, against the true labels:
- *flagged*: the method took the sample out of the clean set (RobustFT: checker verdict noisy;
  CLEAR: confidence below γ), i.e. its fate is ``relabeled-kept`` or ``relabeled-dropped``;
- detection precision = truly noisy among flagged; recall = flagged among truly noisy;
  F1 their harmonic mean (0 when both are 0). Precision is NaN when nothing is flagged;
- relabel accuracy = final label equals the truth, among flagged samples that got a new
  label (kept or not); *kept* relabel accuracy counts only the relabeled-kept ones;
- curated accuracy = final label equals the truth, among kept rows (clean + relabeled-kept);
- retention = kept rows ÷ all rows; correct kept = kept rows whose final label is true ÷ all
  rows (what a precision target tries to maximise at a given curated accuracy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from robustft.demo import detection_scores
from robustft.methods.selection import select_lowest
from robustft.schemas import KEPT

FLAGGED = ("relabeled-kept", "relabeled-dropped")


@dataclass
class Outcome:
    """One input row's fate in a run, next to its true label."""

    id: str
    fate: str
    original: str | None
    final: str | None
    truth: str
    entropy: float = math.nan
    confidence: float = math.nan

    @property
    def noisy(self) -> bool:
        return self.original != self.truth

    @property
    def flagged(self) -> bool:
        return self.fate in FLAGGED

    @property
    def kept(self) -> bool:
        return self.fate in KEPT and self.final is not None


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def detection(flagged: Sequence[bool], noisy: Sequence[bool]) -> dict[str, float]:
    """Precision, recall, F1 of the flags against the true noise mask (the demo's scoring,
    with NaN instead of 0 where a ratio has nothing to count)."""
    f = {i for i, x in enumerate(flagged) if x}
    n = {i for i, x in enumerate(noisy) if x}
    d = detection_scores(f, n, len(flagged))
    return {"precision": d["precision"] if f else math.nan,
            "recall": d["recall"] if n else math.nan, "f1": d["f1"]}


def accuracy(pred: Sequence[str | None], truth: Sequence[str]) -> float:
    """Share of ``pred`` equal to ``truth`` (NaN for no rows)."""
    return _ratio(sum(p == t for p, t in zip(pred, truth, strict=True)), len(pred))


def audit(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """All per-run label metrics of the module docstring."""
    o = list(outcomes)
    relabeled = [x for x in o if x.flagged and x.final is not None]
    kept_rel = [x for x in relabeled if x.fate == "relabeled-kept"]
    kept = [x for x in o if x.kept]
    return {
        "rows": len(o), "noise_rate": _ratio(sum(x.noisy for x in o), len(o)),
        **detection([x.flagged for x in o], [x.noisy for x in o]),
        "flagged": sum(x.flagged for x in o),
        "relabel_acc": accuracy([x.final for x in relabeled], [x.truth for x in relabeled]),
        "relabel_acc_kept": accuracy([x.final for x in kept_rel], [x.truth for x in kept_rel]),
        "curated_acc": accuracy([x.final for x in kept], [x.truth for x in kept]),
        "retention": _ratio(len(kept), len(o)), "kept": len(kept),
        "correct_kept": _ratio(sum(x.final == x.truth for x in kept), len(o)),
        "errors": sum(x.fate == "error" for x in o),
    }


def pr_vs_beta(entropy: Sequence[float], correct: Sequence[bool], betas: Sequence[float]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Selection quality as β varies, over relabeled samples: precision = correct among the
    kept (lowest-entropy ⌈β·n⌉), recall = kept among the correct. NaN where undefined."""
    c = np.asarray(correct, bool)
    prec, rec = [], []
    for b in betas:
        keep = select_lowest(entropy, b)
        prec.append(_ratio(int((keep & c).sum()), int(keep.sum())))
        rec.append(_ratio(int((keep & c).sum()), int(c.sum())))
    return np.array(prec), np.array(rec)


def confusion(original: Sequence[str | None], final: Sequence[str | None],
              labels: Sequence[str]) -> np.ndarray:
    """Counts[i, j] of rows with original label ``labels[i]`` and final label ``labels[j]``;
    the last column counts rows with no final label (dropped or error) or one outside
    ``labels``. Rows whose original label is outside ``labels`` are not counted."""
    idx = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels) + 1), dtype=int)
    for a, b in zip(original, final, strict=True):
        if a in idx:
            m[idx[a], idx[b] if b in idx else len(labels)] += 1
    return m
