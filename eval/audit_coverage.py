"""Coverage of the blind audit's 95% intervals: how often each contains the true value.

    python -m eval.audit_coverage --clean ../shared/data/robustft-arc/labeled.csv \\
        --noisy ../shared/data/robustft-arc/noisy30.csv ../shared/data/robustft-arc/noisy70.csv \\
        --sim --seeds 40 --out runs/coverage

Each noisy file is curated once (``eval.audit``, method robustft; ``--sim``: the simulated
endpoint, its options as there), reused when ``OUT/<name>/robustft`` is finished. Then, for
every seed, the audit sample is drawn afresh (``audit.seed`` = seed; 50 flagged + 50
unflagged rows by default) into a scratch people's file, a scripted reviewer answers from the
truth through the viewer's own save path (the original response, then, for a kept row the
agents changed, the final one), and the estimates are computed as ``robustft summary`` does.
Printed per file: each estimate's true value (the whole run, against the clean labels), the
mean estimate, the mean width of its interval and how many draws' intervals cover the truth.
Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from robustft.config import AuditConfig
from robustft.pipeline.audit import audit_summary, ensure_sample, part, stratum
from robustft.store.audit import AuditStore
from robustft.store.runstore import RunStore
from robustft.viewer import audit as viewaudit

FIGURES = ("precision", "recall", "curated_accuracy", "noise_rate", "missed_noise")


def true_values(store: RunStore, truth: dict[str, str]) -> dict[str, float | None]:
    """The figures the audit estimates, over the whole run, against the true labels."""
    n: dict[str, int] = defaultdict(int)
    for sid, fate, original, final in store.db.execute(
            "SELECT id, fate, original, final FROM samples"):
        s = stratum(fate)
        if s is None:
            continue
        n[s] += 1
        n[s + "_wrong"] += original != truth[sid]
        if part(fate, final is not None, final != original) is not None:
            n["kept"] += 1
            n["kept_right"] += final == truth[sid]
    wrong = n["flagged_wrong"] + n["unflagged_wrong"]

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    return {"precision": ratio(n["flagged_wrong"], n["flagged"]),
            "recall": ratio(n["flagged_wrong"], wrong),
            "curated_accuracy": ratio(n["kept_right"], n["kept"]),
            "noise_rate": ratio(wrong, n["flagged"] + n["unflagged"]),
            "missed_noise": ratio(n["unflagged_wrong"], n["unflagged"])}


def scripted_review(store: RunStore, audit: AuditStore, truth: dict[str, str]) -> None:
    """Judge every drawn row from the truth, seeing what the audit page shows: the original
    response first (blind), then the final one where the page asks about it."""
    for i, e in enumerate(audit.entries()):
        item = viewaudit.blind(store, e)
        right = item["response"] == truth[e.sample_id]
        viewaudit.save_verdict(store, audit, {"index": i, "verdict": "right" if right else
                                              "wrong"}, "scripted")
        st = viewaudit.story(store, audit.get(e.sample_id))
        if st["ask_final"]:
            viewaudit.save_verdict(store, audit, {
                "index": i, "question": "final",
                "verdict": "right" if st["final"] == truth[e.sample_id] else "wrong"},
                "scripted")


def coverage(run_dir: Path, truth: dict[str, str], seeds: list[int], flagged: int = 50,
             unflagged: int = 50) -> dict[str, Any]:
    """True values, and per figure over the seeded draws: how many intervals cover the true
    value (of how many gave one), the mean estimate and the mean interval width."""
    store = RunStore.reader(run_dir)
    true = true_values(store, truth)
    got: dict[str, list[tuple[float, float, float]]] = {f: [] for f in FIGURES}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for seed in seeds:
                people = Path(scratch) / f"seed{seed}"
                people.mkdir()
                audit = AuditStore(people)
                try:
                    ensure_sample(store, audit, AuditConfig(
                        sample_flagged=flagged, sample_unflagged=unflagged, seed=seed))
                    scripted_review(store, audit, truth)
                    est = audit_summary(store, audit, seed)["estimates"]  # type: ignore[index]
                finally:
                    audit.close()
                for f in FIGURES:
                    if est[f]["value"] is not None:
                        got[f].append((est[f]["value"], est[f]["low"], est[f]["high"]))
    finally:
        store.close()
    out: dict[str, Any] = {"draws": len(seeds), "true": true, "figures": {}}
    for f, rows in got.items():
        t = true[f]
        out["figures"][f] = {
            "true": t, "given": len(rows),
            "covered": sum(t is not None and lo - 1e-12 <= t <= hi + 1e-12
                           for _, lo, hi in rows),
            "mean": sum(v for v, _, _ in rows) / len(rows) if rows else None,
            "width": sum(hi - lo for _, lo, hi in rows) / len(rows) if rows else None}
    return out


def table(name: str, result: dict[str, Any]) -> str:
    """A markdown table of one file's coverage."""
    def fmt(x: float | None) -> str:
        return "–" if x is None else f"{x:.3f}"

    lines = [f"### {name}: {result['draws']} seeded draws", "",
             "| estimate | true | mean estimate | mean 95% width | covered |",
             "|---|---|---|---|---|"]
    for f, r in result["figures"].items():
        share = f"{r['covered'] / r['given']:.0%}" if r["given"] else "–"
        lines.append(f"| {f.replace('_', ' ')} | {fmt(r['true'])} | {fmt(r['mean'])} | "
                     f"{fmt(r['width'])} | {r['covered']}/{r['given']} ({share}) |")
    return "\n".join(lines)


def read_truth(path: Path, id_column: str = "id", answer_column: str = "answer"
               ) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as f:
        return {r[id_column]: r[answer_column] for r in csv.DictReader(f)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clean", required=True, help="file with the true labels (csv)")
    ap.add_argument("--noisy", nargs="+", required=True, help="noisy files (matched by id)")
    ap.add_argument("--out", required=True, help="directory of the curate runs")
    ap.add_argument("--seeds", type=int, default=40, help="audit draws per file")
    ap.add_argument("--flagged", type=int, default=50, help="flagged rows per draw")
    ap.add_argument("--unflagged", type=int, default=50, help="unflagged rows per draw")
    args, audit_args = ap.parse_known_args(argv)  # the rest goes to eval.audit (--sim, …)
    from eval.audit import main as audit_main

    truth = read_truth(Path(args.clean))
    for noisy in map(Path, args.noisy):
        out = Path(args.out) / noisy.stem
        run = out / "robustft"
        if not (run / "summary.json").is_file():
            with contextlib.redirect_stdout(io.StringIO()):  # its report: in out/report.md
                audit_main(["--clean", args.clean, "--noisy", str(noisy), "--out", str(out),
                            "--methods", "robustft", *audit_args])
        result = coverage(run, truth, list(range(args.seeds)), args.flagged, args.unflagged)
        print(table(f"{noisy.name} ({run})", result) + "\n", flush=True)


if __name__ == "__main__":
    main()
