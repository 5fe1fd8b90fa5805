"""CLEAR / BSDetector confidence (pure). Direction: **higher = more trustworthy**.

- observed consistency O = mean_i(α·s_i + (1−α)·r_i) over k sampled answers, s_i the similarity
  of sample i to the response being scored (in [0, 1]) and r_i its exact match (0 or 1);
- self-reflection certainty S = mean of the reflection verdicts scored correct = 1,
  incorrect = 0, not sure = 0.5;
- C = β·O + (1−β)·S. When one part is unavailable (NaN), C is the other part.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from robustft.methods.parsing import parse_choice

VERDICT_SCORE = {"correct": 1.0, "incorrect": 0.0, "unsure": 0.5}
_LETTER_VERDICT = {"A": "correct", "B": "incorrect", "C": "unsure"}


def observed_consistency(similarities: Sequence[float], matches: Sequence[float],
                         alpha: float) -> float:
    """Mean of α·s_i + (1−α)·r_i; NaN when no sampled answer exists."""
    s, r = np.asarray(similarities, dtype=float), np.asarray(matches, dtype=float)
    if s.size == 0:
        return float("nan")
    return float(np.mean(alpha * s + (1 - alpha) * r))


def reflection_certainty(verdicts: Sequence[str | None]) -> float:
    """Mean verdict score; an unparsed verdict (None) counts as not sure (0.5)."""
    if not verdicts:
        return float("nan")
    return float(np.mean([VERDICT_SCORE.get(v or "unsure", 0.5) for v in verdicts]))


def combine(observed: float, certainty: float, beta: float) -> float:
    """C = β·O + (1−β)·S, falling back to whichever part exists."""
    if math.isnan(observed):
        return certainty
    if math.isnan(certainty):
        return observed
    return beta * observed + (1 - beta) * certainty


def threshold(confidences: Sequence[float], gamma: float | None) -> float:
    """γ: the given absolute value, or the median of the known confidences when None."""
    if gamma is not None:
        return gamma
    known = [c for c in confidences if not math.isnan(c)]
    return float(np.median(known)) if known else float("nan")


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity clipped to [0, 1] (opposite directions count as unrelated), rounded
    to 6 decimals so that float32 noise does not rank identical texts below each other."""
    va, vb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    den = float(np.linalg.norm(va) * np.linalg.norm(vb))
    return round(max(0.0, min(1.0, float(va @ vb) / den)), 6) if den else 0.0


def parse_verdict(text: str | None) -> str | None:
    """"correct" / "incorrect" / "unsure" from a reflection reply; None when unparseable.

    Reads the last ``Answer: A|B|C`` first, then the words themselves as a fallback
    (a reply starting with yes/true or no/false, as base-model prompts elicit).
    """
    letter = parse_choice(text, ["A", "B", "C"]).answer
    if letter is not None:
        return _LETTER_VERDICT[letter]
    low = (text or "").lower()
    if re.search(r"\bnot sure\b|\bunsure\b|\buncertain\b", low):
        return "unsure"
    if re.search(r"\bincorrect\b|\bwrong\b|^\W*(no|false)\b", low):
        return "incorrect"
    if re.search(r"\bcorrect\b|^\W*(yes|true)\b", low):
        return "correct"
    return None
