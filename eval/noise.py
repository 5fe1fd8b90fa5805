"""Seeded, nested label-noise injection for noise audits.

Nesting: one seeded permutation of the rows decides the flip order, and each row's corrupted
label is drawn once, so the rows flipped at rate 0.3 are also flipped (to the same wrong label)
at 0.5 and 0.7, like the RobustFT benchmark files.

Multiple choice: the label becomes a different option, uniformly at random.
Free text: one of these documented corruptions, chosen per row (seeded):
- ``swap``: the response of another row (a fluent but unrelated answer);
- ``number``: every number in the response changed (off by 1..9, or doubled);
- ``truncate``: only the first half of the words kept (at least one word dropped);
- ``negate``: a negation inserted after the first auxiliary verb, or "not " prepended.
A corruption that leaves the text unchanged falls back to ``swap``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

CORRUPTIONS = ("swap", "number", "truncate", "negate")
_AUX = re.compile(r"\b(is|are|was|were|can|will|does|do|did|has|have)\b", re.I)


def flip_order(n: int, seed: int) -> list[int]:
    """Row indices in the order they get corrupted as the rate rises."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def n_flipped(n: int, rate: float) -> int:
    if not 0 <= rate <= 1:
        raise ValueError(f"noise rate must be in [0, 1], got {rate}")
    return round(n * rate)


def flip_choices(labels: Sequence[str], letters: Sequence[Sequence[str]], rate: float,
                 seed: int) -> list[str]:
    """Multiple-choice labels with ``round(rate·n)`` rows flipped to another option."""
    rng = random.Random(f"{seed}:wrong")
    wrong = []
    for lab, opts in zip(labels, letters, strict=True):
        others = [x for x in opts if x != lab]
        if not others:
            raise ValueError(f"label {lab!r} has no other option to flip to")
        wrong.append(rng.choice(others))
    out = list(labels)
    for i in flip_order(len(labels), seed)[:n_flipped(len(labels), rate)]:
        out[i] = wrong[i]
    return out


def corrupt_text(text: str, kind: str, other: str, rng: random.Random) -> str:
    """One corruption of a free-text response (see the module docstring)."""
    if kind == "number" and re.search(r"\d", text):
        def bump(m: re.Match) -> str:
            v = int(m.group())
            return str(v * 2 if v and rng.random() < 0.3 else v + rng.randint(1, 9))
        out = re.sub(r"\d+", bump, text)
    elif kind == "truncate" and len(text.split()) > 1:
        words = text.split()
        out = " ".join(words[:max(1, len(words) // 2)])
    elif kind == "negate" and text.strip():
        m = _AUX.search(text)
        out = text[:m.end()] + " not" + text[m.end():] if m else "not " + text
    else:
        out = other
    return out if out != text else other


def corrupt_responses(responses: Sequence[str], rate: float, seed: int,
                      kinds: Sequence[str] = CORRUPTIONS) -> tuple[list[str], list[str | None]]:
    """(responses with ``round(rate·n)`` rows corrupted, the corruption applied per row)."""
    n = len(responses)
    if n < 2:
        raise ValueError("free-text corruption needs at least 2 rows (swap)")
    rng = random.Random(f"{seed}:text")
    corrupted, applied = [], []
    for i, text in enumerate(responses):
        kind = rng.choice(list(kinds))
        j = rng.randrange(n - 1)
        other = responses[j if j < i else j + 1]
        if other == text:  # identical responses: swapping would change nothing
            other = text + " (unrelated)"
        corrupted.append(corrupt_text(text, kind, other, rng))
        applied.append(kind if corrupted[-1] != other or kind == "swap" else "swap")
    out, kinds_out = list(responses), [None] * n
    for i in flip_order(n, seed)[:n_flipped(n, rate)]:
        out[i], kinds_out[i] = corrupted[i], applied[i]
    return out, kinds_out
