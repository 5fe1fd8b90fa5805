"""CLEAR at a precision target: the confidence cutoff from decoys (pure: arrays in, arrays out).

CLEAR asks of every row "is the given response right?", and a noisy dataset has no response
known to be right. Multiple choice gives a handle: a **decoy row** is a drawn row with each of
its other options scored exactly as its response is (the same k sampled answers,
self-reflection on the option), so that of its k scored options exactly one is right. Then:

1. **How right and wrong options score**: f_R and f_W, the distributions of the confidence of
   a right and of a wrong option (histograms over the confidence values), fitted by EM over
   the decoy rows with "which option is right" latent (its posterior ∝ f_R/f_W of the
   option's confidence); start: the best-scored option of each row is the right one.
2. **Share of wrong responses π0** (the estimated noise rate): maximum likelihood of all rows'
   confidences as the mixture (1 − π0)·f_R + π0·f_W, wrong responses scoring as a wrong option
   drawn at random.
3. **Precision of the kept rows** (C ≥ γ): the mean over them of the posterior that the
   response is right, (1 − π0)·f_R / ((1 − π0)·f_R + π0·f_W); its uncertainty from
   ``BOOTSTRAP`` resamples of decoy rows and rows (10% quantile, seeded).
4. **γ**: the lowest (keeping the most) whose estimate meets the target with the 10% quantile
   within ``TOLERANCE`` of it. None: keep none, and say why.

The label plays no part in scoring (CLEAR scores a (question, response) pair), so a decoy
scores as that response would. Decoys are the question's own options; where a dataset's
errors sit on plausible distractors rather than on any wrong option, its wrong responses score
higher than the average wrong option and the estimate is optimistic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from robustft.methods.precision import BOOTSTRAP, MIN_PROBES

TOLERANCE = 0.03  # how far below the target the 10% bootstrap quantile may fall


@dataclass
class DecoyCut:
    """The outcome of :func:`decoy_cutoff`."""

    target: float
    gamma: float | None  # keep rows with confidence >= gamma; None: keep none
    kept: int  # rows kept
    estimate: float | None  # estimated precision of the kept rows
    lower: float | None  # its 10% bootstrap quantile
    decoys: int  # decoys with a known confidence
    wrong_share: float | None  # π0, the estimated share of wrong responses
    decoys_below: float | None  # share of decoys filtered at gamma
    reason: str
    # (γ, estimated precision of rows ≥ γ, 10% bootstrap quantile, rows kept) per distinct γ
    curve: list[tuple[float, float, float, int]] = field(default_factory=list)
    kind: str = "decoys"


SMOOTH = 0.1  # pseudo-count per confidence bin of f_R and f_W
EM_ITERS = 100


def _bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, values, side="right") - 1


def option_fit(bins: list[np.ndarray], n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(f_R, f_W) over ``n_bins`` confidence bins from decoy rows, each the bins of all its
    options, exactly one of which is right (EM; see the module)."""
    flat = np.concatenate(bins)
    row = np.repeat(np.arange(len(bins)), [b.size for b in bins])
    w = np.concatenate([(b == b.max()) / (b == b.max()).sum() for b in bins])
    for _ in range(EM_ITERS):
        f_r = np.bincount(flat, w, n_bins) + SMOOTH
        f_r /= f_r.sum()
        f_w = np.bincount(flat, 1 - w, n_bins) + SMOOTH
        f_w /= f_w.sum()
        ratio = f_r[flat] / f_w[flat]
        new = ratio / np.bincount(row, ratio)[row]
        if np.abs(new - w).max() < 1e-9:
            break
        w = new
    return f_r, f_w


def wrong_share(row_bins: np.ndarray, f_r: np.ndarray, f_w: np.ndarray) -> float:
    """π0: maximum likelihood of the rows' bins under (1 − π0)·f_R + π0·f_W (EM)."""
    pi0 = 0.5
    for _ in range(EM_ITERS):
        wrong = pi0 * f_w[row_bins] / (pi0 * f_w[row_bins] + (1 - pi0) * f_r[row_bins])
        new = float(wrong.mean())
        if abs(new - pi0) < 1e-9:
            break
        pi0 = new
    return pi0


def decoy_precision(conf: np.ndarray, decoy_rows: list[np.ndarray], edges: np.ndarray,
                    gammas: np.ndarray) -> tuple[np.ndarray, float]:
    """(estimated precision of the rows with confidence ≥ each γ, π0); see the module."""
    f_r, f_w = option_fit([_bins(r, edges) for r in decoy_rows], edges.size)
    rb = _bins(conf, edges)
    pi0 = wrong_share(rb, f_r, f_w)
    right = (1 - pi0) * f_r[rb] / ((1 - pi0) * f_r[rb] + pi0 * f_w[rb])
    order = np.argsort(-conf, kind="stable")
    mean = np.cumsum(right[order]) / np.arange(1, conf.size + 1)
    kept = conf.size - np.searchsorted(np.sort(conf), gammas, side="left")
    return np.where(kept > 0, mean[np.maximum(kept - 1, 0)], np.nan), pi0


MAX_BINS = 40  # distinct confidences kept as they are; more are pooled into quantile bins


def _edges(values: np.ndarray) -> np.ndarray:
    u = np.unique(values)
    return u if u.size <= MAX_BINS else np.unique(np.quantile(values, np.linspace(0, 1, 21)[:-1]))


Z_SIGNAL = 3.0  # how far above chance the responses' agreement with the samples must be


def signal_z(label_top: Sequence[float], chance: Sequence[float]) -> float:
    """z of the share of rows whose response is the most sampled answer (ties shared) against
    chance (1/k per row). Near 0: the responses agree with the model no more than random
    options do, so "the right option scores higher" — what the decoys rest on — is untested:
    a model at chance and a noise rate near 1 − 1/k look the same."""
    top, p = np.asarray(label_top, dtype=float), np.asarray(chance, dtype=float)
    if not top.size:
        return 0.0
    var = float(np.sum(p * (1 - p)))
    return float(np.sum(top - p) / math.sqrt(var)) if var > 0 else 0.0


def decoy_cutoff(confidences: Sequence[float], decoy_rows: Sequence[Sequence[float]],
                 target: float, seed: int = 0, signal: float = math.inf) -> DecoyCut:
    """The lowest γ whose kept rows (confidence ≥ γ) reach ``target`` precision, estimated
    from decoy rows (the confidences of all options of each, its response's included); NaN
    confidences are never kept, decoy rows with one are left out. ``signal`` (see
    :func:`signal_z`) below ``Z_SIGNAL``: keep none."""
    c = np.asarray(confidences, dtype=float)
    c = c[~np.isnan(c)]
    rows = [np.asarray(r, dtype=float) for r in decoy_rows]
    rows = [r for r in rows if r.size > 1 and not np.isnan(r).any()]
    n_decoys = sum(r.size - 1 for r in rows)
    base = {"target": target, "decoys": n_decoys}
    none = {"gamma": None, "kept": 0, "estimate": None, "lower": None, "decoys_below": None}
    if len(rows) < MIN_PROBES:
        return DecoyCut(reason=f"{len(rows)} decoy rows with known confidences: fewer than "
                        f"the {MIN_PROBES} an estimate needs: no row kept", wrong_share=None,
                        **none, **base)
    if not c.size:
        return DecoyCut(reason="no row with a known confidence", wrong_share=None, **none,
                        **base)
    if signal < Z_SIGNAL:
        return DecoyCut(reason=f"the responses are the most sampled answer no more often than "
                        f"random options would be (z = {signal:.1f} < {Z_SIGNAL}): the model "
                        "is at chance or nearly every response is wrong; no row kept",
                        wrong_share=None, **none, **base)
    edges = _edges(np.concatenate([c, *rows]))
    gammas = np.unique(c)
    est, pi0 = decoy_precision(c, rows, edges, gammas)
    rng = np.random.default_rng(seed)
    boot = np.empty((BOOTSTRAP, gammas.size))
    for j in range(BOOTSTRAP):
        pick = rng.integers(0, len(rows), len(rows))
        boot[j] = decoy_precision(c[rng.integers(0, c.size, c.size)], [rows[i] for i in pick],
                                  edges, gammas)[0]
    low = np.nanquantile(boot, 0.10, axis=0)
    kept = c.size - np.searchsorted(np.sort(c), gammas, side="left")
    curve = [(float(g), float(e), float(lo), int(n))
             for g, e, lo, n in zip(gammas, est, low, kept, strict=True)]
    base |= {"wrong_share": pi0, "curve": curve}
    meets = est >= target - 1e-12
    ok = np.flatnonzero(meets & (low >= target - TOLERANCE - 1e-12))
    if not ok.size:
        if meets.any():
            i = int(np.flatnonzero(meets)[0])
            why = (f"the decoys do not support precision {target:.2f}: at confidence ≥ "
                   f"{gammas[i]:.3f} the estimate is {est[i]:.3f} but its 10% bootstrap "
                   f"quantile {low[i]:.3f} is more than {TOLERANCE} below the target")
        else:
            why = (f"no cutoff reaches precision {target:.2f}: the best estimate is "
                   f"{np.nanmax(est):.3f} ({len(rows)} decoy rows; estimated wrong "
                   f"responses {pi0:.0%})")
        return DecoyCut(reason=why + ": no row kept", **none, **base)
    i = int(ok[0])
    others = np.concatenate([np.delete(r, 0) for r in rows])
    below = float(np.mean(others < gammas[i]))
    return DecoyCut(
        gamma=float(gammas[i]), kept=int(kept[i]), estimate=float(est[i]),
        lower=float(low[i]), decoys_below=below,
        reason=(f"confidence ≥ {gammas[i]:.3f}: estimated precision {est[i]:.3f} ≥ target "
                f"{target:.2f} (10% bootstrap quantile {low[i]:.3f}; {len(rows)} decoy rows, "
                f"{below:.0%} of their other options filtered; estimated wrong responses "
                f"{pi0:.0%})"),
        **base)
