"""Selection at a precision target (pure: arrays in, arrays out).

Probes are clean rows sent through the relabel path with their labels hidden; for each we know
its score (entropy: lower is more certain) and whether the relabel path got it right. From
them:

1. **Accuracy as a function of the score**: isotonic regression (pool-adjacent-violators),
   non-increasing in the score: the probes sorted by score are pooled into blocks whose
   accuracies fall strictly with the score (equal neighbours pool too: more probes per
   block, the same fit, tighter bounds).
2. **A relabel's estimated accuracy**: the accuracy of the block of the first probe whose score
   is at or above the relabel's (the next block up: on a non-increasing curve that is the
   cautious side); above every probe, the last block's.
3. **The precision of a kept set** (the relabels with score ≤ a cutoff): the mean of their
   estimated accuracies — the estimate — and, as its uncertainty, the same mean of the
   blocks' one-sided Wilson lower bounds (z = 1.2816, 90%): a block's bound is conservative
   for every relabel in it, so their mean bounds the kept set's precision.
4. **The cutoff**: the largest candidate score whose kept set's estimate meets the target,
   among the cutoffs the probes support: the blocks the kept relabels fall in hold at least
   ``MIN_PROBES`` probes. None qualifies (too few probes, or accuracy too low): keep none,
   and say why.

Scores that are NaN (unknown certainty) are never kept at a precision target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

Z = 1.2816  # one-sided 90% normal quantile for the Wilson lower bound
MIN_PROBES = 20  # probes a cutoff's estimate must rest on


def isotonic_blocks(scores: Sequence[float], correct: Sequence[bool]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pool-adjacent-violators on probes sorted by score: (upper score, accuracy, size,
    right answers) of each block, blocks in score order, accuracies non-increasing."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(correct, dtype=float)
    keep = ~np.isnan(s)
    s, y = s[keep], y[keep]
    order = np.lexsort((-y, s))  # ties: right answers first (the pooled mean is the same)
    s, y = s[order], y[order]
    hi: list[float] = []
    n: list[float] = []
    k: list[float] = []
    for score, right in zip(s, y, strict=True):
        hi.append(score)
        n.append(1.0)
        k.append(right)
        while len(n) > 1 and k[-2] / n[-2] <= k[-1] / n[-1]:  # no fall: pool the two
            right_sum, count, top = k.pop(), n.pop(), hi.pop()
            k[-1] += right_sum
            n[-1] += count
            hi[-1] = top
    n_arr, k_arr = np.array(n), np.array(k)
    return np.array(hi), k_arr / np.maximum(n_arr, 1), n_arr, k_arr


def wilson_lower(right: np.ndarray, n: np.ndarray, z: float = Z) -> np.ndarray:
    """One-sided Wilson score lower bound of a proportion (right of n); 0 where n = 0."""
    n = np.asarray(n, dtype=float)
    p = np.asarray(right, dtype=float) / np.maximum(n, 1)
    z2 = z * z
    centre = p + z2 / (2 * np.maximum(n, 1))
    spread = z * np.sqrt(p * (1 - p) / np.maximum(n, 1) + z2 / (4 * np.maximum(n, 1) ** 2))
    return np.where(n > 0, (centre - spread) / (1 + z2 / np.maximum(n, 1)), 0.0)


@dataclass
class PrecisionCut:
    """The outcome of :func:`precision_cutoff`."""

    target: float
    cutoff: float | None  # keep relabels with score <= cutoff; None: keep none
    kept: int  # candidates kept
    estimate: float | None  # estimated precision of the kept relabels
    lower: float | None  # its 90% lower bound
    probes: int  # probes with a known score
    probe_accuracy: float | None  # share of probes the relabel path got right
    reason: str
    # the fitted curve, for display: (upper score, accuracy, lower bound, probes) per block
    curve: list[tuple[float, float, float, int]] = field(default_factory=list)


def precision_cutoff(probe_scores: Sequence[float], probe_correct: Sequence[bool],
                     scores: Sequence[float], target: float) -> PrecisionCut:
    """The largest cutoff on ``scores`` (the relabels') whose kept set's estimated precision
    is ≥ ``target`` and rests on ≥ ``MIN_PROBES`` probes, from probes (score, right?)."""
    hi, acc, n, k = isotonic_blocks(probe_scores, probe_correct)
    lower = wilson_lower(k, n)
    curve = [(float(h), float(a), float(lo), int(m)) for h, a, lo, m in
             zip(hi, acc, lower, n, strict=True)]
    n_probes = int(n.sum())
    probe_acc = float(k.sum() / n_probes) if n_probes else None
    base = {"target": target, "probes": n_probes, "probe_accuracy": probe_acc, "curve": curve}
    if not n_probes:
        return PrecisionCut(cutoff=None, kept=0, estimate=None, lower=None,
                            reason="no probes with a known entropy: no relabel kept", **base)
    x = np.asarray(scores, dtype=float)
    x = np.sort(x[~np.isnan(x)])
    if not x.size:
        return PrecisionCut(cutoff=None, kept=0, estimate=None, lower=None,
                            reason="no relabel with a known entropy", **base)
    block = np.minimum(np.searchsorted(hi, x, side="left"), hi.size - 1)
    count = np.arange(1, x.size + 1)
    est = np.cumsum(acc[block]) / count
    low = np.cumsum(lower[block]) / count
    # probes behind each kept set: those of the blocks from the first to the highest used
    behind = np.cumsum(n)[np.maximum.accumulate(block)]
    # a cutoff keeps every relabel with the same score: only the last of equal scores counts
    ends = np.r_[x[1:] != x[:-1], True]
    supported = ends & (behind >= MIN_PROBES)
    ok = np.flatnonzero(supported & (est >= target - 1e-12))
    if not ok.size:
        if not supported.any():
            why = (f"{n_probes} probes with a known entropy: fewer than the {MIN_PROBES} an "
                   "estimate needs")
        else:
            best = int(np.argmax(np.where(supported, est, -np.inf)))
            why = (f"no cutoff reaches precision {target:.2f}: the best estimate is "
                   f"{est[best]:.3f} (90% lower bound {low[best]:.3f}; {n_probes} probes, "
                   f"{probe_acc:.0%} right)")
        return PrecisionCut(cutoff=None, kept=0, estimate=None, lower=None,
                            reason=why + ": no relabel kept", **base)
    i = int(ok[-1])
    return PrecisionCut(
        cutoff=float(x[i]), kept=i + 1, estimate=float(est[i]), lower=float(low[i]),
        reason=(f"entropy ≤ {x[i]:.4f}: estimated precision {est[i]:.3f} ≥ target "
                f"{target:.2f} (90% lower bound {low[i]:.3f}; {int(behind[i])} of "
                f"{n_probes} probes behind it)"), **base)


def finite(value: float | None) -> float:
    """A score for the arrays above: None becomes NaN."""
    return math.nan if value is None else float(value)
