"""Estimates from a blind human audit sample, each with a 95% interval (DESIGN §2c).

The rows the checker flagged (``n_flagged``) and those it did not (``n_unflagged``) are two
strata; a person judged the *original* response of a random sample of each: ``wrong`` of
``judged`` (an "unsure" verdict is counted apart: in neither). Then

- detection precision P = w_F / m_F, missed noise q = w_U / m_U (Wilson intervals, modified
  at 1–3 events: :func:`wilson`);
- noisy rows ≈ n_F·P + n_U·q, noise rate = noisy / n, recall R = n_F·P / noisy;
- curated accuracy = Σ kept_d · a_d / Σ kept_d over the parts ``d`` of the curated set, each
  with its own accuracy ``a_d`` = right / judged among its audited rows (rows kept as they
  were: judged on the original response; rows the agents changed: on the final one).

The derived figures' intervals come from a seeded parametric bootstrap over the strata: each
binomial share is drawn from its Jeffreys Beta(k + ½, n − k + ½) distribution, so that a
stratum where nobody found an error (0 of 50) still varies, and the 2.5% and 97.5% quantiles
of the figure are taken (widened to hold the point estimate). No normal approximation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
DRAWS = 4000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% interval (all None: nothing to estimate from yet)."""

    value: float | None
    low: float | None = None
    high: float | None = None

    def as_dict(self, digits: int = 4) -> dict[str, float | None]:
        return {k: None if v is None else round(float(v), digits)
                for k, v in (("value", self.value), ("low", self.low), ("high", self.high))}


NONE = Estimate(None)


def poisson_low(k: int, tail: float = 0.025) -> float:
    """Exact lower confidence bound of a Poisson mean after ``k`` events: the λ with
    P(Poisson(λ) ≥ k) = ``tail`` (½·χ²₂ₖ quantile), by bisection."""
    def at_least_k(lam: float) -> float:
        return 1 - math.exp(-lam) * sum(lam ** j / math.factorial(j) for j in range(k))

    lo, hi = 0.0, k + 10 * math.sqrt(k) + 10
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if at_least_k(mid) < tail else (lo, mid)
    return lo


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the binomial share k/n (n > 0). With 1 to 3 events (2 when
    n ≤ 50) at either end, that end is the exact Poisson bound where it is wider: Wilson's
    lower bound is too high there (Brown, Cai & DasGupta 2001, the modified Wilson)."""
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    few = 2 if n <= 50 else 3
    if 1 <= k <= few:
        lo = min(lo, poisson_low(k) / n)
    if 1 <= n - k <= few:
        hi = max(hi, 1 - poisson_low(n - k) / n)
    return lo, hi


def share(k: int, n: int) -> Estimate:
    """k of n with its Wilson interval; nothing when n is 0."""
    return Estimate(k / n, *wilson(k, n)) if n > 0 else NONE


@dataclass(frozen=True)
class Part:
    """A part of the curated set: ``kept`` rows, of which ``judged`` audited rows were
    judged right (``right``) or wrong."""

    kept: int
    right: int
    judged: int


def _draw(rng: np.random.Generator, k: int, n: int, size: int) -> np.ndarray:
    return rng.beta(k + 0.5, n - k + 0.5, size)


def _interval(value: float, draws: np.ndarray) -> Estimate:
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return Estimate(value)
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return Estimate(value, min(float(lo), value), max(float(hi), value))


def detection_estimates(n_flagged: int, n_unflagged: int, wrong_flagged: int,
                        judged_flagged: int, wrong_unflagged: int, judged_unflagged: int,
                        draws: int = DRAWS, seed: int = 0) -> dict[str, Estimate]:
    """precision, missed_noise, noisy (rows), noise_rate and recall of the checker (see the
    module); a figure needs a judged row in every stratum with rows (else it is None)."""
    out = {"precision": share(wrong_flagged, judged_flagged),
           "missed_noise": share(wrong_unflagged, judged_unflagged)}
    n = n_flagged + n_unflagged
    if n == 0 or (n_flagged and not judged_flagged) or (n_unflagged and not judged_unflagged):
        return out | {"noisy": NONE, "noise_rate": NONE, "recall": NONE}
    rng = np.random.default_rng(seed)
    p = wrong_flagged / judged_flagged if n_flagged else 0.0
    q = wrong_unflagged / judged_unflagged if n_unflagged else 0.0
    ps = _draw(rng, wrong_flagged, judged_flagged, draws) if n_flagged else np.zeros(draws)
    qs = _draw(rng, wrong_unflagged, judged_unflagged, draws) if n_unflagged else np.zeros(draws)
    noisy, noisy_s = n_flagged * p + n_unflagged * q, n_flagged * ps + n_unflagged * qs
    with np.errstate(invalid="ignore", divide="ignore"):
        recall_s = n_flagged * ps / noisy_s
    return out | {"noisy": _interval(noisy, noisy_s),
                  "noise_rate": _interval(noisy / n, noisy_s / n),
                  "recall": _interval(n_flagged * p / noisy, recall_s) if noisy else NONE}


def curated_accuracy(parts: Sequence[Part], draws: int = DRAWS, seed: int = 0) -> Estimate:
    """Share of right responses in the curated set: Σ kept·(right/judged) / Σ kept over its
    ``parts``; None when it is empty or a part with kept rows has no judged row."""
    parts = [p for p in parts if p.kept]
    kept = sum(p.kept for p in parts)
    if not kept or any(not p.judged for p in parts):
        return NONE
    rng = np.random.default_rng(seed)
    value = sum(p.kept * p.right / p.judged for p in parts) / kept
    boot = sum(p.kept * _draw(rng, p.right, p.judged, draws) for p in parts) / kept
    return _interval(value, boot)
