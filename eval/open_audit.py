"""Open-ended (free-text) audit: what the methods do to valid alternatives and to one-fact
errors, on a simulated world (issue 29's table).

    python -m eval.open_audit --out runs/open                       # 10/30/50%, both shapes
    python -m eval.open_audit --noise 0.3 --rows 400 --shape alpaca --out runs/open30
    python -m eval.open_audit --world my_world.json --out runs/mine   # another world
    python -m eval.open_audit --world my_world.json --data mine.jsonl --out runs/mine-data

Generates the data (``eval/open_world.py``; ``--world`` another world file, ``--data`` a
dataset someone else wrote, judged by that world), starts the simulated endpoint
(``eval/open_sim.py``, its own process) and runs ``curate`` with the default config (only
the endpoint and the per-role simulated models set) for RobustFT and CLEAR, with the
built-in prompts and with ``eval/prompts_sameness/`` (the old "same claims" matcher and
fresh-answer relabelers). Per noise rate it prints, pooled over the shapes:

- *valid rows kept unchanged* / *rewritten*: shares of the valid rows in the curated output
  byte-identical / with a changed response;
- *wrong rows flagged*: share of the wrong rows the checker called noisy (RobustFT) or
  filtered (CLEAR); *kept unchanged*: in the curated output byte-identical; *kept and
  fixed*: kept with a changed response that the world says is right;
- counts and endpoint calls per row. Writes report.md and results.json into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from robustft.config import Config, RunOptions
from robustft.data.files import iter_raw_rows, load_samples, output_name
from robustft.graph.runner import curate

from .open_sim import params_of
from .open_world import World, default_world, write_dataset
from .sim_server import sim_models

SAMENESS = Path(__file__).resolve().parent / "prompts_sameness"
# name -> (label, method, prompt override directory)
VARIANTS: dict[str, tuple[str, str, Path | None]] = {
    "robustft": ("RobustFT (default)", "robustft", None),
    "clear": ("CLEAR", "clear", None),
    "robustft-old": ("RobustFT, old prompts (sameness, fresh answer)", "robustft", SAMENESS),
    "clear-old": ("CLEAR, old prompts (sameness, fresh answer)", "clear", SAMENESS),
}
NOISY_FATES = ("confirmed", "relabeled-kept", "relabeled-dropped")
KEPT_FATES = ("clean", "confirmed", "unsure", "relabeled-kept")
COLUMNS = ("valid rows kept unchanged", "valid rows rewritten", "wrong rows flagged",
           "wrong rows kept unchanged", "wrong rows kept and fixed")


def _response(row: dict[str, Any]) -> str | None:
    """The audited response of an Alpaca or chat row."""
    if "output" in row:
        return row["output"]
    turns = row.get("messages") or []
    return next((m["content"] for m in reversed(turns) if m.get("role") == "assistant"), None)


def truth_of(world: World, data: Path) -> list[dict[str, Any]]:
    """Per row of any dataset robustft reads: id, entity (named in its prompt), response
    and whether the world finds it valid."""
    samples, errors, _ = load_samples(data, Config().data)
    if errors:
        raise SystemExit(errors[0].reason)
    out = []
    for s in samples:
        entity = world.entity_in(s.question)
        if entity is None:
            raise SystemExit(f"{data}: row {s.row} names no entity of the world")
        out.append({"id": s.id, "entity": entity, "response": s.label,
                    "valid": world.is_right(entity, s.label)})
    return out


def row_outcomes(world: World, truth: list[dict], run_dir: Path, data: Path) -> list[dict]:
    """Per truth row: valid?, fate, flagged?, kept?, unchanged?, fixed?"""
    with (run_dir / "decisions.csv").open(newline="") as f:
        decisions = {d["id"]: d for d in csv.DictReader(f)}
    curated_path = run_dir / output_name(data)
    rows = list(iter_raw_rows(curated_path)) if curated_path.exists() else []
    if all("id" in r for r in rows):
        curated = {str(r["id"]): _response(r) for r in rows}
    else:  # rows without an id column: the label each decision exported
        curated = {i: d["exported_label"] for i, d in decisions.items() if d["exported_label"]}
    out = []
    for t in truth:
        d = decisions.get(t["id"], {})
        fate = d.get("fate", "missing")
        verdict = d.get("verdict")
        flagged = verdict == "noisy" if verdict else fate in NOISY_FATES
        kept = t["id"] in curated
        new = curated.get(t["id"])
        unchanged = kept and new == t["response"]
        out.append({"valid": t["valid"], "fate": fate, "flagged": flagged, "kept": kept,
                    "unchanged": unchanged, "rewritten": kept and not unchanged,
                    "fixed": kept and not unchanged and new is not None
                    and world.is_right(t["entity"], new)})
    return out


def table_row(rows: list[dict]) -> dict[str, Any]:
    valid = [r for r in rows if r["valid"]]
    wrong = [r for r in rows if not r["valid"]]

    def share(rs: list[dict], key: str) -> float:
        return sum(r[key] for r in rs) / len(rs) if rs else math.nan

    return {"valid rows kept unchanged": share(valid, "unchanged"),
            "valid rows rewritten": share(valid, "rewritten"),
            "wrong rows flagged": share(wrong, "flagged"),
            "wrong rows kept unchanged": share(wrong, "unchanged"),
            "wrong rows kept and fixed": share(wrong, "fixed"),
            "valid": len(valid), "wrong": len(wrong),
            "fates valid": dict(Counter(r["fate"] for r in valid)),
            "fates wrong": dict(Counter(r["fate"] for r in wrong))}


def start_sim(args, world_path: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "eval.open_sim", str(world_path), "--accuracy",
           str(args.accuracy), "--calibration", str(args.calibration), "--seed", str(args.seed),
           "--unsure", str(args.unsure), "--judge-unsure", str(args.judge_unsure),
           "--miss", str(args.miss), "--hard-share", str(args.hard_share),
           "--hard-accuracy", str(args.hard_accuracy)]
    for ra in args.role_accuracy:
        cmd += ["--role-accuracy", ra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def run_one(url: str, variant: str, data: Path, run_dir: Path, concurrency: int) -> dict:
    """``curate`` as a new user runs it: the default config, only the endpoint set (each
    role's model names the simulated role)."""
    _, method, prompts = VARIANTS[variant]
    cfg = Config(concurrency=concurrency)
    cfg.endpoint.base_url = url
    for role, model in sim_models().items():
        cfg.roles[role] = cfg.role(role).model_copy(update={"model": model})
    if prompts is not None:
        cfg.prompts_dir = str(prompts)
    return asyncio.run(curate(cfg, data, run_dir, options=RunOptions(method=method)))


def datasets(args, world: World, out: Path) -> dict[str, list[tuple[Path, list[dict], Path]]]:
    """Setting label -> [(data file, truth rows, run directory of its variants)] (one per
    shape, or the given files)."""
    if args.data:
        return {Path(d).name: [(Path(d), truth_of(world, Path(d)), out / Path(d).stem)]
                for d in args.data}
    shapes = ["alpaca", "messages"] if args.shape == "both" else [args.shape]
    sets = {}
    for rate in args.noise:
        sets[f"{rate:.0%} noise"] = []
        for i, shape in enumerate(shapes):
            n = args.rows // len(shapes) + (i < args.rows % len(shapes))
            path, _ = write_dataset(world, out / f"n{round(rate * 100)}" / shape, n, rate,
                                    args.seed + i, shape)
            sets[f"{rate:.0%} noise"].append((path, truth_of(world, path), path.parent))
    return sets


def run_audit(args) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = World.load(args.world) if args.world else default_world(args.seed)
    world.save(out / "world.json")
    sets = datasets(args, world, out)
    params = params_of(args)
    proc, url = start_sim(args, out / "world.json")
    results: dict[str, Any] = {}
    try:
        for setting, files in sets.items():
            for variant in args.methods:
                rows, calls, t0 = [], 0, time.perf_counter()
                for data, truth, where in files:
                    run_dir = where / variant
                    shutil.rmtree(run_dir, ignore_errors=True)  # ours: a fresh run each time
                    print(f"[open-audit] {setting}, {variant}: {data}", file=sys.stderr,
                          flush=True)
                    summary = run_one(url, variant, data, run_dir, args.concurrency)
                    calls += summary["calls"]
                    rows += row_outcomes(world, truth, run_dir, data)
                res = table_row(rows) | {"calls_per_row": calls / max(1, len(rows)),
                                         "wall_s": round(time.perf_counter() - t0, 1)}
                results.setdefault(setting, {})[variant] = res
    finally:
        proc.terminate()
    meta = {"setting": f"simulation: open-ended world ({len(world.entities)} {world.kind}s, "
                       f"{len(world.attributes)} attributes), {params.describe()}",
            "rows": args.rows, "shape": args.shape, "world": args.world or "default"}
    report = render(results, meta)
    (out / "report.md").write_text(report)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results},
                                                 indent=1))
    return {"meta": meta, "results": results, "report": report}


def _f(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f}"


def render(results: dict[str, dict[str, dict]], meta: dict) -> str:
    lines = [f"**{meta['setting']}**", ""]
    for setting, variants in results.items():
        lines += [f"### {setting}", "",
                  "| method | " + " | ".join(COLUMNS) + " | rows (valid/wrong) | calls/row |",
                  "|---" * (len(COLUMNS) + 3) + "|"]
        for v, r in variants.items():
            lines.append(f"| {VARIANTS[v][0]} | " + " | ".join(_f(r[c]) for c in COLUMNS)
                         + f" | {r['valid']}/{r['wrong']} | {r['calls_per_row']:.1f} |")
        lines += ["", "Fates (valid rows; wrong rows):", ""]
        for v, r in variants.items():
            fv = ", ".join(f"{k} {n}" for k, n in sorted(r["fates valid"].items()))
            fw = ", ".join(f"{k} {n}" for k, n in sorted(r["fates wrong"].items()))
            lines.append(f"- {VARIANTS[v][0]}: {fv}; {fw}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    ap.add_argument("--rows", type=int, default=400, help="rows per noise rate (all shapes)")
    ap.add_argument("--shape", choices=["alpaca", "messages", "both"], default="both")
    ap.add_argument("--world", help="world JSON (default: the built-in towns)")
    ap.add_argument("--data", nargs="+", help="audit these files (judged by --world) "
                    "instead of generated ones")
    ap.add_argument("--methods", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--accuracy", type=float, default=0.85)
    ap.add_argument("--role-accuracy", action="append", default=[], metavar="ROLE=ACC")
    ap.add_argument("--calibration", type=float, default=0.8)
    ap.add_argument("--unsure", type=float, default=0.1, help="certainty's C share")
    ap.add_argument("--judge-unsure", type=float, default=0.3,
                    help="share of the judge's wrong verdicts that are C")
    ap.add_argument("--miss", type=float, default=0.5,
                    help="share of wrong corrections of a wrong response that miss it")
    ap.add_argument("--hard-share", type=float, default=0.0)
    ap.add_argument("--hard-accuracy", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.data and not args.world:
        ap.error("--data needs --world (the world that judges it)")
    res = run_audit(args)
    print(res["report"])


if __name__ == "__main__":
    main()
