"""A relabel's accuracy from the probes (pure: arrays in, arrays out).

Probes are clean rows sent through the relabel path with their labels hidden; for each we know
its score (entropy: lower is more certain), whether the two relabel agents (the context agent
and the reviewer) gave the same answer, and whether the relabel path got it right. From them:

1. **Accuracy as a function of the score**: p(s) = c·σ(a + b·s), fitted by maximum
   likelihood (EM over "slips": with probability 1 − c an answer is wrong whatever its score,
   else right with probability σ; a ridge of ``RIDGE`` keeps separable probes finite without
   softening the fall they show). The ceiling c is what a plain logistic lacks: when part of
   the wrong answers come with high confidence (a model confidently wrong), accuracy plateaus
   below 1 at low entropy, and a logistic forced towards 1 there over-claimed (measured: 0.96
   estimated, 0.91 achieved at calibration 0.5) while flattening its fall (0.91 estimated,
   0.98 achieved at 0.9). p must fall with the score (b < 0) and beat one flat accuracy by a
   likelihood ratio of ``LR_MIN``; otherwise the score carries no signal and every relabel
   gets the probes' flat accuracy. Three parameters cannot chase the noise of 100 probes the
   way a step function can (measured: an isotonic fit kept relabels at 0.83 claiming 0.95
   when confidence was pure noise).
2. **Per agreement stratum**: the same fit on the probes whose context and reviewer answers
   agree, and on those where they differ, when the two curves explain the probes
   significantly better than one (likelihood ratio ≥ the 1% χ² bound for the extra
   parameters, ``CHI2_99``); else one curve for all. Two agents that err independently rarely
   agree on the same wrong option, so agreement says much that the reviewer's entropy does
   not (simulated, 70% noise: agreeing relabels 0.990 right, the others 0.443). A reviewer
   that copies the context answer (it sees it) makes agreement say less; the probes measure
   that as they measure everything else — agreement is observed the same way on a probe as
   on a relabel — so the strata's curves are honest about it, and where the probes show no
   difference, there is one curve as before.

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LR_MIN = 9.21  # likelihood ratio the fall with the score needs: χ², 2 degrees, 1%
CHI2_99 = (6.635, 9.210, 11.345, 13.277, 15.086)  # χ² 99% quantiles, 1 to 5 degrees
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
                label_error: np.ndarray | float = 0.0, chance: np.ndarray | float = 0.0,
                start: tuple[float, float, float] | None = None
                ) -> tuple[float, float, float]:
    """(c, a, b) of p(s) = c·σ(a + b·s), the relabel's accuracy, by EM on the probes judged
    ``correct`` against their labels (see :func:`observed`). Latent per probe: whether the
    relabel is right (certain when no label is wrong) and, when wrong, whether it was a slip
    (probability 1 − c) or a miss of the logistic part; the right ones are never slips. The
    logistic part is fitted on each probe's posterior of being right, weighted by its
    posterior of coming from the logistic part. With wrong labels it starts from the plain
    fit: started at c ≈ 1 it explained every confident probe judged wrong as a wrong label
    and stayed there (a likelihood far below the plain fit's). ``start``: (c, a, b) to start
    from instead."""
    if start is not None:
        c, a, b = start
    elif np.any(label_error):
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


def accuracy_at(fit: tuple[float, float, float] | None, flat: float, x: np.ndarray
                ) -> np.ndarray:
    """p at ``x`` from a fit (c, a, b); ``flat`` (the probes' accuracy) where None."""
    return np.full(x.shape, flat) if fit is None else _curve(fit, x)


@dataclass(frozen=True)
class Curve:
    """One accuracy curve fitted on some probes: ``fit`` (c, a, b) where p falls with the
    score significantly, else None and every score gets ``flat``."""

    fit: tuple[float, float, float] | None
    flat: float
    log_lik: float  # of those probes as judged (:func:`observed`)
    params: int  # 3 (c, a, b) or 1 (flat)
    probes: int

    def at(self, x: np.ndarray) -> np.ndarray:
        return accuracy_at(self.fit, self.flat, x)


def curve_fit(scores: np.ndarray, correct: np.ndarray, label_error: np.ndarray | float = 0.0,
              chance: np.ndarray | float = 0.0,
              start: tuple[float, float, float] | None = None) -> Curve:
    """p(s) from the probes: the ceiling fit when it falls (b < 0) with a likelihood ratio
    over the flat accuracy of at least ``LR_MIN`` (1% for χ² with two extra parameters); else
    the flat accuracy. Both likelihoods are of the probes as judged (:func:`observed`). The
    EM can stop at a local maximum; with ``start`` it also starts from there and keeps the
    higher likelihood."""
    flat = flat_accuracy(correct, label_error, chance)
    flat_ll = _log_lik(observed(np.full(scores.shape, flat), label_error, chance), correct)
    fits = [ceiling_fit(scores, correct, label_error=label_error, chance=chance)]
    if start is not None:
        fits.append(ceiling_fit(scores, correct, label_error=label_error, chance=chance,
                                start=start))
    lls = [_log_lik(observed(_curve(f, scores), label_error, chance), correct) for f in fits]
    fit, ll = fits[int(np.argmax(lls))], max(lls)
    if fit[2] < 0:
        if 2 * (ll - flat_ll) >= LR_MIN:
            return Curve(fit, flat, ll, 3, int(scores.size))
    return Curve(None, flat, flat_ll, 1, int(scores.size))


def fitted_accuracy(scores: np.ndarray, correct: np.ndarray, x: np.ndarray,
                    label_error: np.ndarray | float = 0.0, chance: np.ndarray | float = 0.0
                    ) -> np.ndarray:
    """p at ``x`` from the probes' :func:`curve_fit`."""
    return curve_fit(scores, correct, label_error, chance).at(x)


@dataclass(frozen=True)
class AccuracyModel:
    """p(score, agreement): ``strata`` (the curve where the relabel agents differ, the one
    where they agree) when the probes show them to differ, else ``pooled`` for all."""

    pooled: Curve
    strata: tuple[Curve, Curve] | None = None
    lr: float | None = None  # likelihood ratio of the strata over the pooled curve

    def at(self, x: np.ndarray, agree: np.ndarray | None) -> np.ndarray:
        if self.strata is None or agree is None:
            return self.pooled.at(x)
        return np.where(agree, self.strata[1].at(x), self.strata[0].at(x))


def accuracy_model(scores: np.ndarray, correct: np.ndarray, agree: np.ndarray | None = None,
                   label_error: np.ndarray | float = 0.0, chance: np.ndarray | float = 0.0
                   ) -> AccuracyModel:
    """The probes' accuracy model: one :func:`curve_fit` per agreement stratum when their
    likelihood beats the pooled curve's by the 1% χ² bound for the parameters they add
    (``CHI2_99``; strata with no more parameters than the pooled curve need only a higher
    likelihood); else the pooled curve. ``agree`` None, or probes in one stratum only: the
    pooled curve. ``label_error`` and ``chance``: per probe, or one for all."""
    pooled = curve_fit(scores, correct, label_error, chance)
    if agree is None or agree.all() or not agree.any():
        return AccuracyModel(pooled)
    pi = np.broadcast_to(np.asarray(label_error, dtype=float), scores.shape)
    h = np.broadcast_to(np.asarray(chance, dtype=float), scores.shape)
    # each stratum's fit starts from the pooled curve too, so that a local maximum of its EM
    # cannot make the nested comparison come out below the pooled curve (it did: a share of
    # the bootstrap resamples fell back to the pooled curve, and their estimates with it)
    differ, same = (curve_fit(scores[m], correct[m], pi[m], h[m], pooled.fit)
                    for m in (~agree, agree))
    lr = 2 * (differ.log_lik + same.log_lik - pooled.log_lik)
    extra = differ.params + same.params - pooled.params
    if lr >= (CHI2_99[extra - 1] if extra > 0 else 1e-9):
        return AccuracyModel(pooled, (differ, same), lr)
    return AccuracyModel(pooled, None, lr)
