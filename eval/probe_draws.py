"""How far the precision estimate strays with the probe count: probes redrawn many times from a
finished run's own relabels (whose true correctness the clean file gives), each draw's cutoff
applied to all relabels, the estimate compared with the precision achieved.

    python -m eval.probe_draws RUN --clean labeled.csv [--probes 100 200] [--targets 0.9 0.95]
                               [--draws 40] [--label-noise 0.02]

RUN: a run directory of ``eval.audit`` (a ``precision-*`` method). ``--label-noise``: share of
probes judged wrong whatever their answer (a clean row whose label is a repeated flip). Prints,
per probe count and target: share of draws that keep relabels, share whose estimate is within
0.03 of the achieved precision, mean estimate and achieved precision. Asserts nothing.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

from robustft.methods.precision import finite, precision_cutoff
from robustft.store.runstore import RunStore


def relabels(run: str, clean: str) -> tuple[np.ndarray, np.ndarray]:
    """(entropy, right?) of every relabel of ``run`` with a known entropy."""
    with open(clean, newline="") as f:
        truth = {r["id"]: r["answer"] for r in csv.DictReader(f)}
    store = RunStore.open_existing(run)
    rows = [(finite(r.get("entropy")), r["reviewer_answer"] == truth[r["id"]])
            for r in store.records(stage="relabeled") if r.get("reviewer_answer")]
    e = np.array([x for x, _ in rows])
    y = np.array([x for _, x in rows], dtype=float)
    known = ~np.isnan(e)
    return e[known], y[known]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--clean", required=True, help="file with the true labels")
    ap.add_argument("--probes", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--targets", type=float, nargs="+", default=[0.90, 0.95])
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--label-noise", type=float, default=0.0)
    a = ap.parse_args(argv)
    e, y = relabels(a.run, a.clean)
    print(f"{a.run}: {e.size} relabels, {y.mean():.3f} right")
    rng = np.random.default_rng(1)
    for n in a.probes:
        for t in a.targets:
            est, ach = [], []
            for d in range(a.draws):
                i = rng.choice(e.size, min(n, e.size), replace=False)
                py = y[i] * (rng.random(i.size) >= a.label_noise)
                cut = precision_cutoff(e[i], py.astype(bool), e, t, seed=d)
                if cut.cutoff is not None:
                    est.append(cut.estimate)
                    ach.append(float(y[e <= cut.cutoff].mean()))
            est_a, ach_a = np.array(est), np.array(ach)
            close = float(np.mean(np.abs(est_a - ach_a) <= 0.03)) if est else float("nan")
            print(f"probes {n}, target {t:.2f}: kept in {len(est) / a.draws:.2f} of draws; "
                  f"estimate within 0.03 in {close:.2f}; mean estimate "
                  f"{est_a.mean() if est else float('nan'):.3f}, achieved "
                  f"{ach_a.mean() if est else float('nan'):.3f}")


if __name__ == "__main__":
    main()
