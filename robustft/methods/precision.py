"""Selection at a precision target (pure: arrays in, arrays out).

Probes are clean rows sent through the relabel path with their labels hidden. From them,
:mod:`robustft.methods.relabel_accuracy` fits each relabel's accuracy p from its entropy and
whether the two relabel agents (context and reviewer) agreed — one curve per agreement stratum
where the probes show the strata differ, else one for all — corrected for the share of the
probes' own labels that are wrong. Then:

1. **Order**: the relabels by fitted accuracy, highest first (within a stratum that is by
   entropy, lowest first: its curve falls with entropy or is flat). This one score is what a
   cutoff applies to; with one curve it is the entropy order of before.
2. **The precision of a kept set** (the most accurate relabels down to some fitted
   accuracy): the mean of p over them — the estimate. With ``support`` (a second, probe-free
   estimate of each relabel's accuracy: the agreement of independent sources, see
   :func:`robustft.pipeline.probe_labels.relabel_support`) it is the lower of that mean and
   the mean of the support over the same set: the kept precision must be supported by both
   (the support does not depend on the probes, so the estimate's bootstrap quantile is the
   lower of the fit's quantile and the support).
   The probes are few and judge a plateau of equal fitted accuracy by its mean; the sources'
   agreement sees each relabel but over-claims where the sources share mistakes — each
   catches where the other over-claims.
3. **Its uncertainty**: the same estimate on ``BOOTSTRAP`` resamples of the probes (seeded;
   each refits the model, the choice of strata included); ``lower`` is their 10% quantile.
4. **The cutoff**: the largest such set that the probes support — at least ``MIN_PROBES``
   probes, and the 10% bootstrap quantile of its estimate (not only the estimate) at or
   above the target: the kept relabels fall short of the target in about one probe draw
   in ten, where the estimate alone, sitting just above it, fell short about as often as
   not — and whose least accurate relabel's p is still at least ``FLOOR``: a relabel the fit
   calls more likely wrong than right is never kept, however much the kept set's mean could
   absorb it (where accuracy drops off a cliff, the mean alone kept relabels past it that
   were all wrong). A cut may end inside a run of equal fitted accuracy (a plateau below
   a cliff): the relabels are then taken by entropy; only relabels of the same stratum and
   entropy share their fate. In each stratum the kept relabels are those with entropy up to
   that stratum's cutoff. None qualifies: keep none, and say why.

The empirical curve (isotonic blocks of all probes with one-sided 90% Wilson bounds) is kept
for display beside the fit.

Scores that are NaN (unknown certainty) are never kept at a precision target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from robustft.methods.relabel_accuracy import AccuracyModel, accuracy_model

Z = 1.2816  # one-sided 90% normal quantile for the Wilson lower bound
MIN_PROBES = 20  # probes an estimate must rest on
BOOTSTRAP = 200  # probe resamples for the uncertainty
QUANTILE = 0.10  # the lower bootstrap quantile
FLOOR = 0.5  # the least fitted accuracy a kept relabel may have
STRATA = ("context and reviewer differ", "context and reviewer agree")
Z_SHIFT = 2.326  # one-sided 1% normal quantile: relabels agreeing less often than the probes


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
    cutoff: float | None  # the largest entropy kept (per stratum: ``strata``); None: none kept
    kept: int  # candidates kept
    estimate: float | None  # estimated precision of the kept relabels
    lower: float | None  # its 10% bootstrap quantile
    probes: int  # probes with a known score
    probe_accuracy: float | None  # share of probes the relabel path got right (as judged)
    reason: str
    label_error: float = 0.0  # share of the probes' labels taken to be wrong (corrected for)
    fit: tuple[float, float, float] | None = None  # (c, a, b) of p(s) = c·σ(a + b·s), all probes
    # the empirical curve, for display: (upper score, accuracy, 90% lower bound, probes)
    curve: list[tuple[float, float, float, int]] = field(default_factory=list)
    accuracy: float | None = None  # the least fitted accuracy kept
    # per agreement stratum (differ, agree) when the fit uses them: name, probes,
    # probe_accuracy, fit, flat, cutoff (the largest entropy kept; None: none), kept
    strata: list[dict] | None = None
    # how often the relabel agents agree on the probes and on the relabels, and the z of
    # "less often on the relabels" (a two-proportion test): the relabels are harder
    agreement: dict | None = None
    # the agreement model's estimate of the kept set's precision (``estimate`` is the lower
    # of it and the probes' fit); None: no such model
    support: float | None = None
    fitted: float | None = None  # the probes' fit's estimate of the kept set's precision


def _strata(model: AccuracyModel, agree: np.ndarray | None, correct: np.ndarray
            ) -> list[dict] | None:
    if model.strata is None or agree is None:
        return None
    return [{"name": STRATA[g], "probes": c.probes,
             "probe_accuracy": float(correct[agree == bool(g)].mean()), "fit": c.fit,
             "flat": c.flat, "cutoff": None, "kept": 0} for g, c in enumerate(model.strata)]


def _strata_text(strata: list[dict] | None, kept: bool) -> str:
    """Each stratum's probes and, when ``kept``, its entropy cutoff: agree first."""
    if strata is None:
        return ""
    parts = []
    for s in reversed(strata):
        cut = ("none kept" if s["cutoff"] is None else f"entropy ≤ {s['cutoff']:.4f}")
        parts.append(f"{s['name']}: " + (f"{cut}, " if kept else "")
                     + f"{s['probes']} probes, {s['probe_accuracy']:.0%} judged right")
        if not kept:
            parts[-1] += "" if s["fit"] is not None else " (no entropy signal)"
    return "; ".join(parts)


def agreement_shift(probe_agree: np.ndarray, agree: np.ndarray) -> dict:
    """How often the relabel agents agree on the probes and on the relabels, and z of a
    two-proportion test (pooled variance) that they agree less often on the relabels: then
    the relabels are harder than the probes, which the fit does not see within a stratum."""
    n1, n2 = probe_agree.size, agree.size
    p1, p2 = float(probe_agree.mean()), float(agree.mean())
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return {"probes": p1, "relabels": p2, "z": (p1 - p2) / se if se else 0.0}


def precision_cutoff(probe_scores: Sequence[float], probe_correct: Sequence[bool],
                     scores: Sequence[float], target: float, seed: int = 0,
                     label_error: float = 0.0, chance: Sequence[float] | float = 0.0,
                     probe_agree: Sequence[bool] | None = None,
                     agree: Sequence[bool] | None = None,
                     support: Sequence[float] | None = None) -> PrecisionCut:
    """The largest set of the relabels (``scores``: their entropies) most accurate by the
    probes' fit whose estimated precision is ≥ ``target`` and supported by the probes (score,
    relabel judged right against the probe's label?); see the module. ``label_error``: the
    share of the probes' labels that are wrong (from
    :func:`robustft.methods.label_error.fit_label_model`, or a blind audit's missed-noise
    share); ``chance``: per probe (or one for all), the probability that a wrong relabel lands
    on a wrong label, 1/(k − 1) on k options, 0 for free text. ``probe_agree`` and ``agree``
    (both or neither): whether the context and reviewer answers agreed, per probe and per
    relabel. ``support``: per relabel, a second estimate of its accuracy (NaN: none, its fitted
    accuracy stands in); the kept set's estimate is then the lower of the two means."""
    if (probe_agree is None) != (agree is None):
        raise ValueError("agreement is needed for the probes and the relabels alike")
    ps = np.asarray(probe_scores, dtype=float)
    py = np.asarray(probe_correct, dtype=float)
    ph = np.broadcast_to(np.asarray(chance, dtype=float), ps.shape)
    pa = None if probe_agree is None else np.asarray(probe_agree, dtype=bool)
    known = ~np.isnan(ps)
    ps, py, ph = ps[known], py[known], ph[known]
    pa = None if pa is None else pa[known]
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
    model = accuracy_model(ps, py, pa, pi, ph)
    base["fit"], base["strata"] = model.pooled.fit, _strata(model, pa, py)
    x = np.asarray(scores, dtype=float)
    xa = None if agree is None else np.asarray(agree, dtype=bool)
    has = ~np.isnan(x)
    x, xa = x[has], (None if xa is None else xa[has])
    sup = None if support is None else np.asarray(support, dtype=float)[has]
    if not x.size:
        return PrecisionCut(reason="no relabel with a known entropy", **none, **base)
    shift = ""
    if pa is not None and xa is not None:
        base["agreement"] = a = agreement_shift(pa, xa)
        if a["z"] >= Z_SHIFT:
            shift = (f"; the relabel agents agree on {a['relabels']:.0%} of the relabels "
                     f"against {a['probes']:.0%} of the probes (z = {a['z']:.1f}): the "
                     "relabels are harder than the probes, and the estimate is likely "
                     "optimistic")
    p = model.at(x, xa)
    g = np.zeros(x.size, bool) if xa is None else xa
    order = np.lexsort((g, x, -p))  # most accurate first; equal accuracy: lower entropy first
    acc = p[order]
    count = np.arange(1, x.size + 1)
    fitted = np.cumsum(acc) / count
    est, by_support = fitted, None
    if sup is not None:
        by_support = np.cumsum(np.where(np.isnan(sup), p, sup)[order]) / count
        est = np.minimum(fitted, by_support)
        base["support"] = None
    rng = np.random.default_rng(seed)
    boot = np.empty((BOOTSTRAP, x.size))
    for j in range(BOOTSTRAP):
        i = rng.integers(0, n_probes, n_probes)
        m = accuracy_model(ps[i], py[i], None if pa is None else pa[i], pi, ph[i])
        boot[j] = np.cumsum(m.at(x, xa)[order]) / count
    low = np.quantile(boot, QUANTILE, axis=0)
    if by_support is not None:  # the support does not depend on the probes: the quantile of
        low = np.minimum(low, by_support)  # the lower of the two is the lower of the quantile
    # a cut is an entropy cutoff per stratum: relabels of the same stratum and entropy (hence
    # the same fitted accuracy) share their fate, so only the last of such equals counts
    xs, gs = x[order], g[order]
    ends = np.r_[(acc[1:] != acc[:-1]) | (xs[1:] != xs[:-1]) | (gs[1:] != gs[:-1]), True]
    reach = ends & (est >= target - 1e-12)
    meets = reach & (acc >= FLOOR)
    ok = np.flatnonzero(meets & (low >= target - 1e-12))
    probes_txt = (f"{n_probes} probes, {probe_acc:.0%} judged right"
                  + (f"; {t}" if (t := _strata_text(base["strata"], False)) else ""))
    if not ok.size:
        if meets.any():
            i = int(np.flatnonzero(meets)[-1])
            why = (f"the probes do not support precision {target:.2f}: keeping the "
                   f"{i + 1} relabels of fitted accuracy ≥ {acc[i]:.3f} the estimate is "
                   f"{est[i]:.3f}{_both(fitted, by_support, i)} but its 10% bootstrap "
                   f"quantile {low[i]:.3f} is below the target ({probes_txt}{labels})")
        else:
            signal = (model.pooled.fit is not None if model.strata is None
                      else any(c.fit is not None for c in model.strata))
            why = (f"no cutoff reaches precision {target:.2f}: the best estimate is "
                   f"{est[ends].max():.3f}{_both(fitted, by_support, ends)} ({probes_txt}"
                   + labels + ("; entropy carries no significant signal)" if not signal
                               else ")"))
        return PrecisionCut(reason=why + ": no relabel kept" + shift, **none, **base)
    i = int(ok[-1])
    kept = order[: i + 1]
    if base["strata"] is not None:
        for g, s in enumerate(base["strata"]):
            mine = kept[xa[kept] == bool(g)]
            s["cutoff"] = float(x[mine].max()) if mine.size else None
            s["kept"] = int(mine.size)
        where = _strata_text(base["strata"], True)
    else:
        where = f"entropy ≤ {x[kept].max():.4f}"
    if by_support is not None:
        base["support"], base["fitted"] = float(by_support[i]), float(fitted[i])
    return PrecisionCut(
        cutoff=float(x[kept].max()), kept=i + 1, estimate=float(est[i]), lower=float(low[i]),
        accuracy=float(acc[i]),
        reason=(f"{where}: estimated precision {est[i]:.3f}{_both(fitted, by_support, i)} ≥ "
                f"target {target:.2f} (10% "
                f"bootstrap quantile {low[i]:.3f}; {n_probes} probes{labels})"
                + (f"; past it a relabel's fitted accuracy falls below {FLOOR}"
                   if (reach[i + 1:] & (acc[i + 1:] < FLOOR)).any() else "") + shift),
        **base)


def _both(fitted: np.ndarray, by_support: np.ndarray | None, at: int | np.ndarray) -> str:
    """The two estimates behind the lower one, for a reason (at index ``at``, or the best
    over a mask)."""
    if by_support is None:
        return ""
    if isinstance(at, np.ndarray):
        at = int(np.flatnonzero(at)[np.argmax(np.minimum(fitted, by_support)[at])])
    return f" (probes' fit {fitted[at]:.3f}, agreement model {by_support[at]:.3f})"


def finite(value: float | None) -> float:
    """A score for the arrays above: None becomes NaN."""
    return math.nan if value is None else float(value)
