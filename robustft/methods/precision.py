"""Selection at a precision target (pure: arrays in, arrays out).

Probes are clean rows sent through the relabel path with their labels hidden; for each we know
its score (entropy: lower is more certain) and whether the relabel path got it right. From
them:

1. **Accuracy as a function of the score**: p(s) = c·σ(a + b·s), fitted by maximum
   likelihood (EM over "slips": with probability 1 − c an answer is wrong whatever its score,
   else right with probability σ; a ridge of ``RIDGE`` keeps separable probes finite without
   softening the fall they show). The ceiling c
   is what a plain logistic lacks: when part of the wrong answers come with high confidence
   (a model confidently wrong), accuracy plateaus below 1 at low entropy, and a logistic
   forced towards 1 there over-claimed (measured: 0.96 estimated, 0.91 achieved at
   calibration 0.5) while flattening its fall (0.91 estimated, 0.98 achieved at 0.9). p must
   fall with the score (b < 0); otherwise the score carries no signal and every relabel gets
   the probes' overall accuracy. Three parameters cannot chase the noise of 100 probes the
   way a step function can (measured: an isotonic fit kept relabels at 0.83 claiming 0.95
   when confidence was pure noise).
2. **The precision of a kept set** (the relabels with score ≤ a cutoff): the mean of p over
   them — the estimate.
3. **Its uncertainty**: the same estimate on ``BOOTSTRAP`` resamples of the probes (seeded);
   ``lower`` is their 10% quantile.
4. **The cutoff**: the largest score whose kept set's estimate meets the target and is
   supported — at least ``MIN_PROBES`` probes, and the 10% bootstrap quantile within
   ``TOLERANCE`` of the target — and at which p is still at least ``FLOOR``: a relabel the
   fit calls more likely wrong than right is never kept, however much the kept set's mean
   could absorb it (where accuracy drops off a cliff, the mean alone kept relabels past it
   that were all wrong). None qualifies: keep none, and say why.

**Probes whose own label is wrong.** A probe is judged against its label, and a share π of
the labels are wrong (confirmed rows where every expert repeated a flip; estimated by
:mod:`robustft.methods.label_error`, or a blind audit's missed-noise share): a right relabel
of a wrong label is judged wrong, and a wrong relabel that lands on the wrong label (chance h,
1/(k − 1) on k options) is judged right. What the probes show is a mixture,

    P(judged right | s) = (1 − π)·p(s) + π·(1 − p(s))·h,

and every likelihood above is of that mixture (the EM's latent "relabel right" replaces the
judged outcome by its posterior), so p(s) is the relabel's own accuracy, not the accuracy
against labels of which a share is wrong: the latter sits about π·(p − h·(1 − p)) low, which
read against a target just under the endpoint's best is the difference between keeping the
plateau and keeping nothing. π = 0 gives back the plain fit exactly.

The empirical curve (isotonic blocks of the probes with one-sided 90% Wilson bounds) is kept
for display beside the fit.

Scores that are NaN (unknown certainty) are never kept at a precision target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

Z = 1.2816  # one-sided 90% normal quantile for the Wilson lower bound
MIN_PROBES = 20  # probes an estimate must rest on
BOOTSTRAP = 200  # probe resamples for the uncertainty
TOLERANCE = 0.03  # how far below the target the lower bootstrap quantile may fall
QUANTILE = 0.10  # the lower bootstrap quantile
LR_MIN = 9.21  # likelihood ratio the fall with the score needs: χ², 2 degrees, 1%
FLOOR = 0.5  # the least fitted accuracy a kept relabel may have
RIDGE = 1e-6  # on (a, b): finite fits for separable probes; 1e-3 held slopes near 40 per nat


def logistic_fit(scores: np.ndarray, correct: np.ndarray, ridge: float = RIDGE,
                 weights: np.ndarray | None = None,
                 start: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """(a, b) of p(s) = σ(a + b·s) by Newton's method on the log-likelihood (+ ridge), each
    probe counted with its weight (default 1), starting from ``start``."""
    x = np.c_[np.ones_like(scores), scores]
    wt = np.ones_like(scores) if weights is None else weights
    beta = np.array(start, dtype=float)
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(x @ beta, -30, 30)))
        grad = x.T @ (wt * (correct - p)) - ridge * beta
        hess = x.T @ (x * (wt * p * (1 - p))[:, None]) + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-9:
            break
    return float(beta[0]), float(beta[1])


def observed(p: np.ndarray, label_error: np.ndarray | float = 0.0,
             chance: np.ndarray | float = 0.0) -> np.ndarray:
    """P(a probe is judged right) when its relabel is right with probability ``p``, its label
    is wrong with probability ``label_error`` and a wrong relabel lands on a wrong label with
    probability ``chance`` (1/(k − 1) on k options): (1 − π)·p + π·(1 − p)·h."""
    return (1 - label_error) * p + label_error * (1 - p) * chance


def _right_posterior(p: np.ndarray, judged: np.ndarray, label_error: np.ndarray | float,
                     chance: np.ndarray | float) -> np.ndarray:
    """P(the relabel is right | judged right or not): judged right, its label is right
    ((1 − π)·p against π·(1 − p)·h); judged wrong, its label is wrong (π·p against
    (1 − p)·(1 − π·h))."""
    yes = (1 - label_error) * p / np.maximum(observed(p, label_error, chance), 1e-300)
    no = label_error * p / np.maximum(1 - observed(p, label_error, chance), 1e-300)
    return np.where(judged > 0, yes, no)


def ceiling_fit(scores: np.ndarray, correct: np.ndarray, iters: int = 200,
                label_error: np.ndarray | float = 0.0, chance: np.ndarray | float = 0.0
                ) -> tuple[float, float, float]:
    """(c, a, b) of p(s) = c·σ(a + b·s), the relabel's accuracy, by EM on the probes judged
    ``correct`` against their labels (see :func:`observed`). Latent per probe: whether the
    relabel is right (certain when no label is wrong) and, when wrong, whether it was a slip
    (probability 1 − c) or a miss of the logistic part; the right ones are never slips. The
    logistic part is fitted on each probe's posterior of being right, weighted by its
    posterior of coming from the logistic part. With wrong labels it starts from the plain
    fit: started at c ≈ 1 it explained every confident probe judged wrong as a wrong label
    and stayed there (a likelihood far below the plain fit's)."""
    if np.any(label_error):
        c, a, b = ceiling_fit(scores, correct, iters)
    else:
        (a, b), c = logistic_fit(scores, correct), 1.0 - 1e-6
    for _ in range(iters):
        sig = 1 / (1 + np.exp(-np.clip(a + b * scores, -30, 30)))
        right = _right_posterior(c * sig, correct, label_error, chance)
        # posterior that an answer came from the logistic part (not a slip)
        w = right + (1 - right) * c * (1 - sig) / np.maximum(1 - c * sig, 1e-12)
        c_new = float(w.mean())
        a, b = logistic_fit(scores, right / np.maximum(w, 1e-12), weights=w, start=(a, b))
        done = abs(c_new - c) < 1e-7
        c = c_new
        if done:
            break
    return c, a, b


def _log_lik(q: np.ndarray, correct: np.ndarray) -> float:
    q = np.clip(q, 1e-12, 1 - 1e-12)
    return float(np.sum(correct * np.log(q) + (1 - correct) * np.log(1 - q)))


def _curve(fit: tuple[float, float, float], x: np.ndarray) -> np.ndarray:
    c, a, b = fit
    return c / (1 + np.exp(-np.clip(a + b * x, -30, 30)))


def flat_accuracy(correct: np.ndarray, label_error: np.ndarray | float = 0.0,
                  chance: np.ndarray | float = 0.0, iters: int = 200) -> float:
    """The relabels' one accuracy (no dependence on the score), maximum likelihood by EM:
    the probes' share judged right when no label is wrong; with wrong labels,
    (share − π·h)/(1 − π − π·h) for a common π and h."""
    p = float(correct.mean()) if correct.size else 0.0
    if not np.any(label_error):
        return p
    for _ in range(iters):
        new = float(_right_posterior(np.full(correct.shape, p), correct, label_error,
                                     chance).mean())
        if abs(new - p) < 1e-10:
            return new
        p = new
    return p


def falling_fit(scores: np.ndarray, correct: np.ndarray, label_error: np.ndarray | float = 0.0,
                chance: np.ndarray | float = 0.0) -> tuple[float, float, float] | None:
    """(c, a, b) when p falls with the score significantly (b < 0 and the likelihood ratio
    over the flat accuracy ≥ ``LR_MIN``, 1% for χ² with two extra parameters); else None: the
    score carries no signal. Both likelihoods are of the probes as judged (:func:`observed`)."""
    fit = ceiling_fit(scores, correct, label_error=label_error, chance=chance)
    if fit[2] >= 0:
        return None
    flat = np.full(scores.shape, flat_accuracy(correct, label_error, chance))
    lr = 2 * (_log_lik(observed(_curve(fit, scores), label_error, chance), correct)
              - _log_lik(observed(flat, label_error, chance), correct))
    return fit if lr >= LR_MIN else None


def accuracy_at(fit: tuple[float, float, float] | None, flat: float, x: np.ndarray
                ) -> np.ndarray:
    """p at ``x`` from a :func:`falling_fit`; ``flat`` (the probes' accuracy) where None."""
    return np.full(x.shape, flat) if fit is None else _curve(fit, x)


def fitted_accuracy(scores: np.ndarray, correct: np.ndarray, x: np.ndarray,
                    label_error: np.ndarray | float = 0.0, chance: np.ndarray | float = 0.0
                    ) -> np.ndarray:
    """p at ``x`` from the probes; their :func:`flat_accuracy` where :func:`falling_fit`
    finds no signal."""
    return accuracy_at(falling_fit(scores, correct, label_error, chance),
                       flat_accuracy(correct, label_error, chance), x)


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
    lower: float | None  # its 10% bootstrap quantile
    probes: int  # probes with a known score
    probe_accuracy: float | None  # share of probes the relabel path got right (as judged)
    reason: str
    label_error: float = 0.0  # share of the probes' labels taken to be wrong (corrected for)
    fit: tuple[float, float, float] | None = None  # (c, a, b) of p(s) = c·σ(a + b·s)
    # the empirical curve, for display: (upper score, accuracy, 90% lower bound, probes)
    curve: list[tuple[float, float, float, int]] = field(default_factory=list)


def precision_cutoff(probe_scores: Sequence[float], probe_correct: Sequence[bool],
                     scores: Sequence[float], target: float, seed: int = 0,
                     label_error: float = 0.0, chance: Sequence[float] | float = 0.0
                     ) -> PrecisionCut:
    """The largest cutoff on ``scores`` (the relabels') whose kept set's estimated precision
    is ≥ ``target`` and supported by the probes (score, relabel judged right against the
    probe's label?); see the module. ``label_error``: the share of the probes' labels that
    are wrong (from :func:`robustft.methods.label_error.fit_label_model`, or a blind audit's
    missed-noise share); ``chance``: per probe (or one for all), the probability that a wrong
    relabel lands on a wrong label, 1/(k − 1) on k options, 0 for free text."""
    ps = np.asarray(probe_scores, dtype=float)
    py = np.asarray(probe_correct, dtype=float)
    ph = np.broadcast_to(np.asarray(chance, dtype=float), ps.shape)
    known = ~np.isnan(ps)
    ps, py, ph = ps[known], py[known], ph[known]
    pi = float(label_error)
    hi, acc, n, k = isotonic_blocks(ps, py)
    curve = [(float(h), float(a), float(lo), int(m)) for h, a, lo, m in
             zip(hi, acc, wilson_lower(k, n), n, strict=True)]
    n_probes = int(ps.size)
    probe_acc = float(py.mean()) if n_probes else None
    base = {"target": target, "probes": n_probes, "probe_accuracy": probe_acc, "curve": curve,
            "label_error": pi}
    labels = (f"; probe labels {pi:.2%} wrong, corrected for" if pi else "")
    none = {"cutoff": None, "kept": 0, "estimate": None, "lower": None}
    if n_probes < MIN_PROBES:
        return PrecisionCut(reason=f"{n_probes} probes with a known entropy: fewer than the "
                            f"{MIN_PROBES} an estimate needs: no relabel kept", **none, **base)
    base["fit"] = falling_fit(ps, py, pi, ph)  # None: entropy carries no signal, one flat accuracy
    x = np.asarray(scores, dtype=float)
    x = np.sort(x[~np.isnan(x)])
    if not x.size:
        return PrecisionCut(reason="no relabel with a known entropy", **none, **base)
    count = np.arange(1, x.size + 1)
    acc = accuracy_at(base["fit"], flat_accuracy(py, pi, ph), x)
    est = np.cumsum(acc) / count
    rng = np.random.default_rng(seed)
    boot = np.empty((BOOTSTRAP, x.size))
    for j in range(BOOTSTRAP):
        i = rng.integers(0, n_probes, n_probes)
        boot[j] = np.cumsum(fitted_accuracy(ps[i], py[i], x, pi, ph[i])) / count
    low = np.quantile(boot, QUANTILE, axis=0)
    # a cutoff keeps every relabel with the same score: only the last of equal scores counts
    ends = np.r_[x[1:] != x[:-1], True]
    reach = ends & (est >= target - 1e-12)
    meets = reach & (acc >= FLOOR)
    ok = np.flatnonzero(meets & (low >= target - TOLERANCE - 1e-12))
    if not ok.size:
        if meets.any():
            i = int(np.flatnonzero(meets)[-1])
            why = (f"the probes do not support precision {target:.2f}: at entropy ≤ "
                   f"{x[i]:.4f} the estimate is {est[i]:.3f} but its 10% bootstrap "
                   f"quantile {low[i]:.3f} is more than {TOLERANCE} below the target"
                   f"{labels}")
        else:
            why = (f"no cutoff reaches precision {target:.2f}: the best estimate is "
                   f"{est[ends].max():.3f} ({n_probes} probes, {probe_acc:.0%} judged right"
                   + labels + ("; entropy carries no significant signal)" if base["fit"] is None
                               else ")"))
        return PrecisionCut(reason=why + ": no relabel kept", **none, **base)
    i = int(ok[-1])
    return PrecisionCut(
        cutoff=float(x[i]), kept=i + 1, estimate=float(est[i]), lower=float(low[i]),
        reason=(f"entropy ≤ {x[i]:.4f}: estimated precision {est[i]:.3f} ≥ target "
                f"{target:.2f} (10% bootstrap quantile {low[i]:.3f}; {n_probes} probes"
                f"{labels})"
                + (f"; past it a relabel's fitted accuracy falls below {FLOOR}"
                   if (reach[i + 1:] & (acc[i + 1:] < FLOOR)).any() else "")),
        **base)


def finite(value: float | None) -> float:
    """A score for the arrays above: None becomes NaN."""
    return math.nan if value is None else float(value)
