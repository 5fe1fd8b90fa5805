"""How far a precision-target run's outcome is luck of its probe draw: probes redrawn many times
from a finished run's own relabels (whose true correctness the clean file gives), each draw's
cutoff applied to the relabels not drawn (as in a run, where probes are other rows than the
relabels they judge), the estimate compared with the precision achieved on them.

    python -m eval.probe_draws RUN --clean labeled.csv [--probes 200 400] [--targets 0.9 0.95]
                               [--draws 40] [--label-noise 0.02 [--options 3] [--assume 0.02]]
                               [--gap 0.03] [--min-correct 0.75] [--min-curated 0.955]
                               [--entropy-only]

Each draw is fitted as a run fits its probes: on entropy and on whether the context and
reviewer answers agreed (read from decisions.csv), or with ``--entropy-only`` on entropy
alone (the fit of before agreement strata).

RUN: a run directory of ``eval.audit`` (a ``precision-*`` method). ``--label-noise``: share of
probes whose label is wrong (a clean row whose label is a repeated flip): such a probe is
judged right only when its relabel is wrong and lands on that wrong label (1 in ``--options``
− 1); ``--assume``: the label-error share the estimator is told and corrects for (default:
the true ``--label-noise``; 0: uncorrected). Prints, per probe count and target: share of
draws that keep relabels; share of those whose estimate is within ``--gap`` of the achieved
precision, and share of all draws whose estimate misses by more; mean estimate and achieved
precision; mean curated accuracy and correct rows kept ÷ input rows (the run's clean rows
plus the kept relabels), with the share of draws whose curated set is within 0.01 of β =
0.5's (the lowest-entropy half of the same relabels) and whose correct rows kept reach
``--min-correct`` (and, with ``--min-curated``, whose curated accuracy reaches it too).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from robustft.methods.precision import PrecisionCut, precision_cutoff


def outcome(run: str, clean: str
            ) -> tuple[int, int, int, np.ndarray, np.ndarray, np.ndarray]:
    """(input rows, clean rows, right clean rows, entropy, right?, context and reviewer
    agree?) of every relabel of ``run`` with a known entropy, from its decisions.csv."""
    with open(clean, newline="") as f:
        truth = {r["id"]: r["answer"] for r in csv.DictReader(f)}
    with (Path(run) / "decisions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    kept_clean = [truth[r["id"]] == r["original_label"] for r in rows if r["fate"] == "clean"]
    rel = [(float(r["entropy"]), truth[r["id"]] == r["final_label"],
            r["context_answer"] != "" and r["context_answer"] == r["reviewer_answer"])
           for r in rows if r["fate"].startswith("relabeled") and r["entropy"]]
    e = np.array([x for x, _, _ in rel])
    y = np.array([x for _, x, _ in rel], dtype=float)
    g = np.array([x for _, _, x in rel], dtype=bool)
    known = ~np.isnan(e)
    return len(rows), len(kept_clean), sum(kept_clean), e[known], y[known], g[known]


def kept_by(cut: PrecisionCut, e: np.ndarray, agree: np.ndarray) -> np.ndarray:
    """Which relabels ``cut`` keeps: entropy up to its cutoff, per agreement stratum when it
    has them (as :func:`robustft.pipeline.fates.precision_fates`)."""
    if cut.cutoff is None:
        return np.zeros(e.size, bool)
    if cut.strata is None:
        return e <= cut.cutoff
    out = np.zeros(e.size, bool)
    for g, s in enumerate(cut.strata):
        if s["cutoff"] is not None:
            out |= (agree == bool(g)) & (e <= s["cutoff"])
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--clean", required=True, help="file with the true labels")
    ap.add_argument("--probes", type=int, nargs="+", default=[200, 400])
    ap.add_argument("--targets", type=float, nargs="+", default=[0.90, 0.95])
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--label-noise", type=float, default=0.0)
    ap.add_argument("--options", type=int, default=4)
    ap.add_argument("--assume", type=float, default=None)
    ap.add_argument("--gap", type=float, default=0.03)
    ap.add_argument("--min-correct", type=float, default=0.75)
    ap.add_argument("--min-curated", type=float, default=None)
    ap.add_argument("--entropy-only", action="store_true",
                    help="fit on entropy alone (ignore the relabel agents' agreement)")
    a = ap.parse_args(argv)
    assume = a.label_noise if a.assume is None else a.assume
    chance = 1 / (a.options - 1)
    rows, n_clean, right_clean, e, y, g = outcome(a.run, a.clean)
    half = y[np.argsort(e, kind="stable")[: round(e.size / 2)]]
    beta_right = right_clean + half.sum()
    beta = beta_right / (n_clean + half.size)
    print(f"{a.run}: {e.size} relabels, {y.mean():.3f} right; β = 0.5: curated {beta:.3f}, "
          f"correct kept {beta_right / rows:.3f}")
    rng = np.random.default_rng(1)
    for n in a.probes:
        n = min(n, e.size // 2)
        for t in a.targets:
            est, ach, curated, correct = [], [], [], []
            for d in range(a.draws):
                i = rng.choice(e.size, n, replace=False)
                wrong = rng.random(i.size) < a.label_noise
                lands = (rng.random(i.size) < chance if a.label_noise
                         else np.zeros(i.size, bool))  # the draws of before when 0
                py = np.where(wrong, (1 - y[i]) * lands, y[i])
                cut = precision_cutoff(e[i], py.astype(bool), e, t, seed=d,
                                       label_error=assume, chance=chance,
                                       **({} if a.entropy_only else
                                          {"probe_agree": g[i], "agree": g}))
                kept = kept_by(cut, e, g)
                right = right_clean + y[kept].sum()
                curated.append(right / (n_clean + kept.sum()))
                correct.append(right / rows)
                if cut.cutoff is not None:
                    rest = np.ones(e.size, dtype=bool)
                    rest[i] = False
                    est.append(cut.estimate)
                    ach.append(float(y[rest & kept].mean()))
            est_a, ach_a, cur_a, cor_a = map(np.array, (est, ach, curated, correct))
            off = np.abs(est_a - ach_a) > a.gap
            close = float(np.mean(~off)) if est else float("nan")
            print(f"probes {n}, target {t:.2f}: kept in {len(est) / a.draws:.2f} of draws; "
                  f"estimate within {a.gap} in {close:.2f} of those, more than {a.gap} off in "
                  f"{off.sum() / a.draws:.2f} of all draws; mean estimate "
                  f"{est_a.mean() if est else float('nan'):.3f}, achieved "
                  f"{ach_a.mean() if est else float('nan'):.3f}; curated {cur_a.mean():.3f} "
                  f"(within 0.01 of β's in {np.mean(cur_a >= beta - 0.01):.2f}), correct kept "
                  f"{cor_a.mean():.3f} (≥ {a.min_correct} in "
                  f"{np.mean(cor_a >= a.min_correct):.2f})"
                  + ("" if a.min_curated is None else
                     f"; both that and curated ≥ {a.min_curated} in "
                     f"{np.mean((cor_a >= a.min_correct) & (cur_a >= a.min_curated)):.2f}"))


if __name__ == "__main__":
    main()
