"""Answer comparison and the checker's verdict (pure functions).

Multiple choice compares option letters. Free text compares *whole* normalised strings with a
DROP-style token F1 (lowercase, punctuation and articles removed, numbers canonicalised) — never
character by character, the reference code's defect.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalise(text: str) -> list[str]:
    """Tokens of a normalised answer: lowercase, no punctuation/articles, canonical numbers."""
    out: list[str] = []
    for word in text.lower().split():
        core = word.strip(string.punctuation)
        try:
            f = float(core.replace(",", ""))
            out.append(str(int(f)) if f.is_integer() else str(f))
            continue
        except ValueError:
            pass
        out.extend(_ARTICLES.sub(" ", word.translate(_PUNCT)).split())
    return out


def token_f1(a: str, b: str) -> float:
    """Token-overlap F1 of two normalised whole answers; 1.0 for two empty answers."""
    ta, tb = normalise(a), normalise(b)
    if not ta or not tb:
        return float(ta == tb)
    common = sum((Counter(ta) & Counter(tb)).values())
    if common == 0:
        return 0.0
    p, r = common / len(ta), common / len(tb)
    return 2 * p * r / (p + r)


def exact_match(a: str | None, b: str | None, is_mc: bool) -> bool:
    """Same answer: equal letters, or equal normalised token *sequences* (order matters, so
    '{"x": 1, "y": 2}' and '{"x": 2, "y": 1}' differ)."""
    if a is None or b is None:
        return False
    return a.strip().upper() == b.strip().upper() if is_mc else normalise(a) == normalise(b)


def answers_match(a: str | None, b: str | None, is_mc: bool, threshold: float = 0.8) -> bool:
    """True when two answers are the same: letters for MC, token F1 ≥ threshold for free text."""
    if a is None or b is None:
        return False
    if is_mc:
        return a.strip().upper() == b.strip().upper()
    return token_f1(a, b) >= threshold


def match_mode(setting: str, is_mc: bool, long_form: bool) -> str:
    """How the checker compares one sample's answers: letter, f1, exact or judge."""
    if is_mc:
        return "letter"
    if setting == "auto":
        return "judge" if long_form else "f1"
    return setting


def similarity_mode(setting: str, is_mc: bool, long_form: bool) -> str:
    """CLEAR's s_i for one sample: letter (multiple choice), match (token F1), embedding or
    judge (non-contradiction); auto = judge for long-form responses, match for short ones."""
    if is_mc:
        return "letter"
    if setting == "auto":
        return "judge" if long_form else "match"
    return setting


def agrees(a: str | None, label: str, mode: str, threshold: float = 0.8) -> bool:
    """Whether an answer matches the label in ``mode`` (letter, f1 or exact)."""
    if mode == "exact":
        return exact_match(a, label, False)
    return answers_match(a, label, mode == "letter", threshold)


def check(expert_answers: Mapping[str, str | None], label: str, policy: str, is_mc: bool,
          threshold: float = 0.8, same: Mapping[str, bool] | None = None,
          mode: str | None = None) -> tuple[str, str]:
    """Checker verdict ("clean" | "noisy") and a readable reason.

    ``same`` gives each expert's agreement when it was decided elsewhere (the matcher agent);
    otherwise answers are compared in ``mode`` (default: letters for MC, token F1 otherwise).
    policy "all": clean only when every expert matches the label (an unparsed answer counts as
    a mismatch). policy "majority": clean when strictly more than half match.
    """
    mode = mode or ("letter" if is_mc else "f1")
    if same is None:
        same = {r: agrees(a, label, mode, threshold) for r, a in expert_answers.items()}
    agree = [r for r in expert_answers if same.get(r, False)]
    n = len(expert_answers)
    clean = len(agree) == n if policy == "all" else len(agree) * 2 > n
    shown = ", ".join(f"{r}={a if a is not None else 'unparsed'}"
                      for r, a in expert_answers.items())
    verdict = "clean" if clean else "noisy"
    how = "" if mode in ("letter", "f1") else f", {mode}"
    return verdict, (f"{len(agree)}/{n} experts agree with label {label!r} ({shown}; "
                     f"{policy}{how})")
