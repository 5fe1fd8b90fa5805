"""Planted errors (canaries), the pure part: how many, from which rows, with which wrong
response, and what their outcomes say (recall and share fixed, with Wilson intervals).

A canary is a copy of a confirmed-clean row whose response is made wrong: multiple choice
another option (uniform among the wrong ones), a short answer another row's answer, a
long-form response one changed fact (the ``corruptor`` agent writes it). Canaries run through
detection and relabeling like any sample and never reach an output; their figures are an
upper bound of the detector's recall (planted errors are easier to find than real ones).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from robustft.methods.estimates import wilson
from robustft.methods.matching import answers_match, exact_match

UPPER_BOUND = ("an upper bound: planted errors are easier to find and fix than real ones "
               "(canaries come from rows the experts already answered right)")


def canary_count(rows: int, share: float, cap: int) -> int:
    """Canaries of a run over ``rows`` rows: ``share`` of them (rounded half up), at most
    ``cap`` (none below half a canary: 25 rows at the default 2%)."""
    if share <= 0 or cap <= 0 or rows <= 0:
        return 0
    return min(cap, math.floor(share * rows + 0.5))


def draw_sources(pool: Sequence[str], n: int, seed: int) -> list[str]:
    """A seeded draw of ``n`` source ids from ``pool`` (fewer when the pool is smaller), in
    the pool's order. The draw of n is a prefix of the draw of n + 1 over the same pool."""
    order = list(pool)
    random.Random(f"canaries|{seed}").shuffle(order)
    chosen = set(order[:n])
    return [sid for sid in pool if sid in chosen]


def _rng(seed: int, source: str) -> random.Random:
    return random.Random(f"canary|{seed}|{source}")


def wrong_option(label: str, letters: Sequence[str], seed: int, source: str) -> str | None:
    """Another option than ``label``, uniformly among the wrong ones (None with one option)."""
    wrong = [x for x in letters if x.upper() != label.strip().upper()]
    return _rng(seed, source).choice(wrong) if wrong else None


def other_answer(label: str, answers: Sequence[str], seed: int, source: str,
                 threshold: float = 0.8) -> str | None:
    """Another row's answer to the same field that does not match ``label`` (token F1 below
    ``threshold``, as the checker compares short answers); None when every answer matches."""
    wrong = sorted({a for a in answers if a.strip() and not answers_match(a, label, False,
                                                                          threshold)})
    return _rng(seed, source).choice(wrong) if wrong else None


def wilson_interval(k: int, n: int) -> tuple[float, float] | None:
    """95% interval of the share k / n: :func:`robustft.methods.estimates.wilson` (the
    modified Wilson interval the blind audit uses too); None when n = 0."""
    return wilson(k, n) if n > 0 else None


@dataclass(frozen=True)
class CanaryOutcome:
    """What became of one canary: ``verdict`` of the checker (clean | noisy | unsure |
    error), ``relabel`` the final relabel's answer (None: not relabeled, or unparsed)."""

    kind: str  # choice | short | long
    verdict: str
    original: str  # the source row's response (what a fix must restore)
    relabel: str | None = None
    relabeled: bool = False  # the relabel step ran without error

    @property
    def fixed(self) -> bool:
        """The relabel restored the original response: the same letter, a matching short
        answer (token F1 ≥ 0.8), or the same normalised long-form text."""
        if self.kind == "long":
            return exact_match(self.relabel, self.original, False)
        return answers_match(self.relabel, self.original, self.kind == "choice")


def _share(k: int, n: int) -> dict:
    ci = wilson_interval(k, n)
    return {"k": k, "n": n, "share": k / n if n else None,
            "ci95": list(ci) if ci is not None else None}


def canary_report(outcomes: Iterable[CanaryOutcome], planned: int) -> dict:
    """Recall (share flagged among the canaries detection finished) and, among the flagged
    ones whose relabel ran, the share fixed, each with a 95% Wilson interval; counts by kind
    and verdict. Canaries that ended in an error count in neither denominator."""
    out = list(outcomes)
    done = [o for o in out if o.verdict != "error"]
    flagged = [o for o in done if o.verdict == "noisy"]
    relabeled = [o for o in flagged if o.relabeled]
    kinds: dict[str, int] = {}
    verdicts: dict[str, int] = {}
    for o in out:
        kinds[o.kind] = kinds.get(o.kind, 0) + 1
        verdicts[o.verdict] = verdicts.get(o.verdict, 0) + 1
    return {"planned": planned, "planted": len(out), "by_kind": kinds, "verdicts": verdicts,
            "recall": _share(len(flagged), len(done)),
            "fixed": _share(sum(o.fixed for o in relabeled), len(relabeled)),
            "note": UPPER_BOUND}


def describe(report: dict) -> list[str]:
    """Readable lines of a :func:`canary_report` (command line, eval reports)."""
    def fig(s: dict) -> str:
        if not s["n"]:
            return "n/a (none)"
        lo, hi = s["ci95"]
        return f"{s['share']:.3f} ({s['k']}/{s['n']}; 95% CI {lo:.3f}–{hi:.3f})"

    kinds = ", ".join(f"{n} {k}" for k, n in sorted(report["by_kind"].items()))
    return [f"canaries: {report['planted']} planted" + (f" ({kinds})" if kinds else ""),
            f"  recall (share flagged): {fig(report['recall'])}",
            f"  fixed by the relabel:   {fig(report['fixed'])}",
            f"  {report['note']}"]
