"""The audit report: report.md (one table, all methods) and PNG plots in the audit directory.

Plots (each written when its runs exist):
- ``entropy.png``: entropy of flagged samples, truly noisy vs truly clean, and of correct vs
  wrong relabels (``robustft`` and ``official`` runs);
- ``pr_vs_beta.png``: precision and recall of entropy selection as β varies (see
  ``eval.metrics.pr_vs_beta``), per RobustFT run with entropies;
- ``confidence.png``: CLEAR confidence of truly clean vs truly noisy samples;
- ``confusion_<method>.png``: original vs final label counts (last column: no final label).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import Outcome, confusion, pr_vs_beta

COLUMNS = [  # (key, header, format)
    ("flagged", "flagged", "{:.0f}"), ("precision", "det. P", "{:.3f}"),
    ("recall", "det. R", "{:.3f}"), ("f1", "det. F1", "{:.3f}"),
    ("relabel_acc", "relabel acc", "{:.3f}"), ("relabel_acc_kept", "kept relabel acc", "{:.3f}"),
    ("curated_acc", "curated acc", "{:.3f}"), ("retention", "retention", "{:.3f}"),
    ("correct_kept", "correct kept ÷ rows", "{:.3f}"),
    ("est_precision", "est. kept relabel P", "{:.3f}"),
    ("calls_per_sample", "calls/sample", "{:.2f}"),
    ("tokens_per_sample", "tokens/sample", "{:.0f}"), ("sent", "sent", "{:.0f}"),
    ("errors", "error rows", "{:.0f}"), ("wall_s", "wall s", "{:.1f}"),
    ("downstream_acc", "downstream acc", "{:.3f}"),
]


def _cell(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return fmt.format(v)


def table(results: dict[str, dict[str, Any]]) -> str:
    cols = [c for c in COLUMNS if any(c[0] in r for r in results.values())]
    lines = ["| method | " + " | ".join(h for _, h, _ in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(_cell(r.get(k), f) for k, _, f in cols) + " |")
    return "\n".join(lines)


def canary_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """The canaries' figures next to the same figures on the truly noisy rows."""
    rows = {n: r for n, r in results.items() if r.get("canaries")}
    if not rows:
        return []

    def fig(x: float | None, ci: list[float] | None = None) -> str:
        return "–" if x is None else f"{x:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    lines = ["", "Planted errors (canaries; an upper bound: planted errors are easier than "
             "real ones):", "", "| method | canaries | canary recall [95% CI] | recall on "
             "noisy rows | difference | canary fixed [95% CI] | fixed on noisy rows |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for n, r in rows.items():
        diff = (r["canary_recall"] - r["true_recall"]
                if None not in (r["canary_recall"], r["true_recall"]) else None)
        lines.append(f"| {n} | {r['canaries']} | {fig(r['canary_recall'], r['canary_recall_ci'])}"
                     f" | {fig(r['true_recall'])} | {'–' if diff is None else f'{diff:+.3f}'} | "
                     f"{fig(r['canary_fixed'], r['canary_fixed_ci'])} | {fig(r['true_fixed'])} |")
    return lines


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _hist(ax, groups: dict[str, list[float]], title: str, xlabel: str) -> None:
    vals = [v for g in groups.values() for v in g]
    bins = np.linspace(min(vals), max(vals) + 1e-9, 21) if vals else 10
    for label, g in groups.items():
        ax.hist(g, bins=bins, alpha=0.55, label=f"{label} (n={len(g)})")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8)


def plot_entropy(runs: dict[str, list[Outcome]], path: Path) -> bool:
    runs = {n: o for n, o in runs.items() if any(not math.isnan(x.entropy) for x in o)}
    if not runs:
        return False
    plt = _plt()
    fig, axes = plt.subplots(len(runs), 2, figsize=(10, 3.4 * len(runs)), squeeze=False)
    for (name, o), (a1, a2) in zip(runs.items(), axes, strict=True):
        rel = [x for x in o if x.flagged and not math.isnan(x.entropy)]
        _hist(a1, {"truly noisy": [x.entropy for x in rel if x.noisy],
                   "truly clean": [x.entropy for x in rel if not x.noisy]},
              f"{name}: entropy of flagged samples", "entropy")
        _hist(a2, {"relabel correct": [x.entropy for x in rel if x.final == x.truth],
                   "relabel wrong": [x.entropy for x in rel if x.final != x.truth]},
              f"{name}: entropy by relabel outcome", "entropy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_pr_beta(runs: dict[str, list[Outcome]], path: Path) -> bool:
    betas = np.linspace(0.05, 1.0, 20)
    curves = {}
    for name, o in runs.items():
        rel = [x for x in o if x.flagged and x.final is not None]
        if rel and any(not math.isnan(x.entropy) for x in rel):
            curves[name] = pr_vs_beta([x.entropy for x in rel],
                                      [x.final == x.truth for x in rel], betas)
    if not curves:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, (p, r) in curves.items():
        line, = ax.plot(betas, p, marker="o", ms=3, label=f"{name} precision")
        ax.plot(betas, r, ls="--", color=line.get_color(), label=f"{name} recall")
    ax.set_xlabel("β (share of relabeled samples kept, lowest entropy first)")
    ax.set_ylabel("share")
    ax.set_title("Selection: correct relabels among kept (precision) / kept (recall)",
                 fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_confidence(runs: dict[str, list[Outcome]], path: Path) -> bool:
    runs = {n: o for n, o in runs.items() if any(not math.isnan(x.confidence) for x in o)}
    if not runs:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 3.6), squeeze=False)
    for (name, o), ax in zip(runs.items(), axes[0], strict=True):
        c = [x for x in o if not math.isnan(x.confidence)]
        _hist(ax, {"truly clean": [x.confidence for x in c if not x.noisy],
                   "truly noisy": [x.confidence for x in c if x.noisy]},
              f"{name}: CLEAR confidence C", "C")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_confusion(name: str, o: list[Outcome], path: Path) -> bool:
    labels = sorted({x.original for x in o if x.original and len(x.original) == 1})
    if not labels:
        return False
    m = confusion([x.original for x in o], [x.final for x in o], labels)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2.5, 0.9 * len(labels) + 1.8))
    ax.imshow(m, cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(len(labels) + 1), [*labels, "none"])
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("final label")
    ax.set_ylabel("original (given) label")
    ax.set_title(f"{name}: original vs final", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(out: Path, results: dict[str, dict[str, Any]], meta: dict[str, Any],
                 runs: dict[str, list[Outcome]]) -> list[Path]:
    """report.md plus the plots; returns the plot paths written."""
    plots = []
    ent_runs = {n: runs[n] for n in ("robustft", "official") if n in runs}
    for fname, ok in (("entropy.png", lambda p: plot_entropy(ent_runs, p)),
                      ("pr_vs_beta.png", lambda p: plot_pr_beta(
                          {n: o for n, o in runs.items() if n != "wo-selection"}, p)),
                      ("confidence.png", lambda p: plot_confidence(
                          {n: o for n, o in runs.items() if n.startswith("clear")}, p))):
        if ok(out / fname):
            plots.append(out / fname)
    for name in ("robustft", "clear-correct"):
        if name in runs and plot_confusion(name, runs[name], out / f"confusion_{name}.png"):
            plots.append(out / f"confusion_{name}.png")
    text = [f"# Noise audit: {meta['noisy']}", "", f"- Setting: {meta['setting']}",
            f"- Clean labels: {meta['clean']} ({meta['rows']} rows)",
            f"- Noise rate in the input: {next(iter(results.values()))['noise_rate']:.3f}"
            if results else "", "", table(results), "",
            "det. P/R/F1: detection of truly noisy rows among flagged ones; relabel acc: "
            "flagged rows with a new label; curated acc: label accuracy of the kept rows; "
            "sent: calls actually sent to the endpoint (the rest came from the audit's "
            "shared request cache).", "", "Methods:", ""]
    text += [f"- `{n}`: {r['what']}" for n, r in results.items()]
    text += canary_lines(results)
    text += ["", "Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in plots), ""]
    (out / "report.md").write_text("\n".join(text))
    return plots
