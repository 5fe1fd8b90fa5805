"""Noise audit: run curation methods and ablations on noisy data with known true labels.

    python -m eval.audit --clean labeled.csv --noisy noisy30.csv --sim --out runs/audit/arc30
    python -m eval.audit --clean labeled.csv --rate 0.3 --seed 0 --sim --out runs/audit/r30
    python -m eval.audit --clean labeled.csv --noisy noisy30.csv --limit 30 --out runs/audit/emb
    python -m eval.audit ... --base-url http://host:8000/v1 --model my-model

Endpoint: ``--sim`` starts the simulated endpoint (``eval/sim_server.py``, in its own process)
on the true labels; ``--base-url`` uses a real one; neither starts the embedded llama-server
with the base-model prompt set. All methods of one audit share one request cache, so the
ablations re-send only the calls that differ from the full pipeline's ("sent" in the table).

Writes into ``--out``: one run directory per method, report.md (the table), results.json and
PNG plots (see ``eval/report.py``). With ``--train-model`` and ``--test``, each method's
sft.jsonl is also fine-tuned on and evaluated (downstream accuracy).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from robustft.config import Config, RunOptions, load_config
from robustft.data.files import file_format, load_samples, write_rows
from robustft.graph.runner import curate
from robustft.llm.prompt_files import builtin_dir, load_prompts
from robustft.pipeline.outputs import sft_example
from robustft.schemas import InputError, Sample

from .metrics import Outcome, audit
from .noise import flip_choices
from .report import write_report
from .sim_server import SimParams, sim_models

# name -> (method or None for "no curation", config overrides, what it is)
METHODS: dict[str, tuple[str | None, dict[str, Any], str]] = {
    "no-curation": (None, {}, "the noisy labels as given"),
    "robustft": ("robustft", {}, "full pipeline"),
    "wo-checker": ("robustft", {"detect": {"experts": ["direct"]}},
                   "detection by the direct answer alone"),
    "wo-reviewer": ("robustft", {"relabel": {"reviewer": False}},
                    "context answer is final"),
    "wo-context": ("robustft", {"relabel": {"context": False}},
                   "reviewer without retrieved examples"),
    "wo-selection": ("robustft", {"selection": {"beta": 1.0}}, "every relabel kept (β = 1)"),
    "precision-0.95": ("robustft", {"selection": {"target_precision": 0.95}},
                       "relabels kept at estimated precision ≥ 0.95 (probes)"),
    "precision-0.90": ("robustft", {"selection": {"target_precision": 0.90}},
                       "relabels kept at estimated precision ≥ 0.90 (probes)"),
    "precision-0.93": ("robustft", {"selection": {"target_precision": 0.93}},
                       "relabels kept at estimated precision ≥ 0.93 (probes)"),
    "precision-0.97": ("robustft", {"selection": {"target_precision": 0.97}},
                       "relabels kept at estimated precision ≥ 0.97 (probes)"),
    "official": ("robustft", {"selection": {"entropy": "robustft-official"},
                              "detect": {"reflection_rounds": 0}},
                 "reference code: mean-NLL entropy, single-pass reasoning"),
    "clear-filter": ("clear", {"clear": {"correct": False}}, "CLEAR, filter only"),
    "clear-correct": ("clear", {}, "CLEAR, filter + auto-correct"),
    "clear-precision-0.95": ("clear", {"clear": {"correct": False, "target_precision": 0.95}},
                             "CLEAR filter, γ at estimated precision ≥ 0.95 (decoys)"),
    "clear-precision-0.90": ("clear", {"clear": {"correct": False, "target_precision": 0.90}},
                             "CLEAR filter, γ at estimated precision ≥ 0.90 (decoys)"),
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def method_config(base: Config, overrides: dict[str, Any]) -> Config:
    return Config.model_validate(_merge(base.model_dump(), overrides))


def prepare_inputs(args, out: Path, cfg: Config
                   ) -> tuple[Path, dict[str, str], list[Sample], list[InputError]]:
    """(noisy input file, id -> true label, valid noisy samples, invalid noisy rows),
    honouring --limit and --rate."""
    clean, errors, shape = load_samples(args.clean, cfg.data)
    if errors:
        raise SystemExit(f"{errors[0].reason} (the clean file must be valid)")
    if args.limit:
        clean = clean[:args.limit]
    truth = {s.id: s.label for s in clean}
    fmt = file_format(Path(args.clean))
    if args.noisy:  # invalid rows too: the pipeline must account for them as error rows
        valid, invalid, _ = load_samples(args.noisy, cfg.data)
        noisy_rows = [r.raw for r in sorted([*valid, *invalid], key=lambda r: r.row)
                      if r.id in truth]
    else:
        if not shape.is_mc:
            raise SystemExit("--rate injects multiple-choice flips; for free text use "
                             "eval.noise.corrupt_responses and pass --noisy")
        labels = flip_choices([s.label for s in clean], [s.letters for s in clean],
                              args.rate, args.seed)
        noisy_rows = [{**s.raw, cfg.data.answer_column: lab} for s, lab in zip(clean, labels,
                                                                                strict=True)]
    noisy_path = out / f"noisy{Path(args.clean).suffix.lower()}"
    write_rows(noisy_path, noisy_rows, fmt)
    samples, invalid, _ = load_samples(noisy_path, cfg.data)
    if len(samples) + len(invalid) != len(truth):
        raise SystemExit(f"{noisy_path}: {len(samples) + len(invalid)} rows match the clean "
                         f"file's ids, expected {len(truth)}")
    for e in invalid:
        print(f"[audit] invalid input row (the pipeline reports it as an error row): {e.reason}",
              file=sys.stderr)
    return noisy_path, truth, samples, invalid


def outcomes(run_dir: Path, truth: dict[str, str]) -> list[Outcome]:
    def num(v: str) -> float:
        return float(v) if v not in ("", None) else math.nan

    with (run_dir / "decisions.csv").open(newline="") as f:
        return [Outcome(d["id"], d["fate"], d["original_label"] or None,
                        d["final_label"] or None, truth[d["id"]], num(d["entropy"]),
                        num(d["confidence"])) for d in csv.DictReader(f) if d["id"] in truth]


def canary_figures(c: dict[str, Any], outs: list[Outcome]) -> dict[str, Any]:
    """The canaries' recall and share fixed (with their 95% intervals) beside the same
    figures on the truly noisy rows: recall = flagged among them, fixed = the final label
    is the truth among the flagged ones that got one."""
    noisy = [o for o in outs if o.noisy]
    fixed = [o for o in noisy if o.flagged and o.final is not None]
    return {"canaries": c["planted"], "canary_recall": c["recall"]["share"],
            "canary_recall_ci": c["recall"]["ci95"], "canary_fixed": c["fixed"]["share"],
            "canary_fixed_ci": c["fixed"]["ci95"],
            "true_recall": sum(o.flagged for o in noisy) / len(noisy) if noisy else None,
            "true_fixed": sum(o.final == o.truth for o in fixed) / len(fixed) if fixed
            else None}


def _start_sim(args, truth_path: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "eval.sim_server", str(truth_path), "--accuracy",
           str(args.accuracy), "--calibration", str(args.calibration), "--seed", str(args.seed),
           "--hard-share", str(args.hard_share), "--hard-accuracy", str(args.hard_accuracy)]
    for ra in args.role_accuracy:
        cmd += ["--role-accuracy", ra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def _downstream(args, sft: Path, out: Path, cfg: Config) -> float:
    from robustft.training.evaluate import predict_local
    from robustft.training.train import train

    metrics = train(sft, args.train_model, out, cfg.train)
    test, _, _ = load_samples(args.test, cfg.data)
    preds = predict_local(args.train_model, metrics["saved"] if cfg.train.lora else None, test,
                          load_prompts(cfg.prompts_dir)["sft"])
    return sum(p["correct"] for p in preds) / len(preds)


def run_audit(args) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(args.config)
    base.concurrency = args.concurrency
    noisy_path, truth, samples, invalid = prepare_inputs(args, out, base)
    server = sim = None
    if args.sim:
        sim, url = _start_sim(args, Path(args.clean))
        base.endpoint.base_url = url
        for role, model in sim_models().items():
            base.roles[role] = base.role(role).model_copy(update={"model": model})
        roles = {k: float(v) for k, v in (x.split("=", 1) for x in args.role_accuracy)}
        params = SimParams(args.accuracy, roles, args.calibration, seed=args.seed,
                           hard_share=args.hard_share, hard_accuracy=args.hard_accuracy)
        setting = f"**simulation**: simulated endpoint, {params.describe()}"
    elif args.base_url:
        base.endpoint.base_url, base.endpoint.model = args.base_url, args.model
        setting = f"endpoint {args.base_url} (model {args.model or 'as served'})"
    else:
        from robustft.serving.servers import EMBEDDED_NAME, embedded_server

        server = embedded_server(slots=4, log_path=out / "llama-server.log").start()
        base.endpoint.base_url, base.endpoint.model = server.base_url, EMBEDDED_NAME
        base.prompts_dir = base.prompts_dir or str(builtin_dir() / "base")
        setting = "embedded Gemma-3-270M (llama-server, 4 slots, base-model prompts)"
    names = args.methods or list(METHODS)
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in names:
            method, overrides, what = METHODS[name]
            run_dir = out / name
            print(f"[audit] {name}: {what}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            if method is None:
                res = _no_curation(samples, invalid, truth, run_dir, base)
            else:
                summary = asyncio.run(curate(
                    method_config(base, overrides), noisy_path, run_dir,
                    options=RunOptions(cache_path=out / "cache.sqlite", method=method)))
                res = audit(outcomes(run_dir, truth))
                n = max(1, res["rows"])
                res |= {"calls_per_sample": summary["calls"] / n,
                        "tokens_per_sample": (summary["prompt_tokens"]
                                              + summary["completion_tokens"]) / n,
                        "sent": summary["this_invocation"]["endpoint_calls"]}
                if (p := summary.get("precision")) is not None:  # estimated vs achieved
                    res["est_precision"] = p["estimate"]
                if (c := summary.get("canaries")) is not None:  # planted vs real errors
                    res |= canary_figures(c, outcomes(run_dir, truth))
            res |= {"wall_s": time.perf_counter() - t0, "what": what}
            if args.train_model and args.test:
                res["downstream_acc"] = _downstream(args, run_dir / "sft.jsonl",
                                                    run_dir / "train", base)
            results[name] = res
    finally:
        if sim is not None:
            sim.terminate()
        if server is not None:
            server.stop()
    meta = {"setting": setting, "clean": str(args.clean), "noisy": str(args.noisy or
            f"injected: rate {args.rate}, seed {args.seed}"), "rows": len(truth)}
    write_report(out, results, meta, {n: outcomes(out / n, truth) for n in results
                                      if METHODS[n][0] is not None})
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    return results


def _no_curation(samples: list[Sample], invalid: list[InputError], truth: dict[str, str],
                 run_dir: Path, cfg: Config) -> dict[str, Any]:
    """The baseline: every row kept with its given label (sft.jsonl written for training;
    invalid rows cannot become SFT pairs, but count as kept with their given label)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    prompt = load_prompts(cfg.prompts_dir)["sft"]
    write_rows(run_dir / "sft.jsonl", [sft_example(prompt, s, s.label) for s in samples], "jsonl")
    col = cfg.data.answer_column
    res = audit([*(Outcome(s.id, "clean", s.label, s.label, truth[s.id]) for s in samples),
                 *(Outcome(e.id, "clean", str(e.raw.get(col)), str(e.raw.get(col)), truth[e.id])
                   for e in invalid)])
    return res | {"calls_per_sample": 0.0, "tokens_per_sample": 0.0, "sent": 0}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clean", required=True, help="file with the true labels")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--noisy", help="the same rows with noisy labels (matched by id)")
    src.add_argument("--rate", type=float, help="inject flips at this rate instead")
    ap.add_argument("--seed", type=int, default=0, help="noise and simulator seed")
    ap.add_argument("--out", required=True, help="audit directory")
    ap.add_argument("--limit", type=int, help="first N rows only")
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), help="default: all")
    ap.add_argument("--config", help="base YAML config for every method")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--sim", action="store_true", help="use the simulated endpoint")
    ap.add_argument("--accuracy", type=float, default=0.85, help="simulated role accuracy")
    ap.add_argument("--role-accuracy", action="append", default=[], metavar="ROLE=ACC")
    ap.add_argument("--calibration", type=float, default=0.8)
    ap.add_argument("--hard-share", type=float, default=0.0,
                    help="simulated: share of questions every role finds hard")
    ap.add_argument("--hard-accuracy", type=float, default=0.5,
                    help="simulated: role accuracy on the hard questions")
    ap.add_argument("--base-url", help="a real endpoint instead of the embedded model")
    ap.add_argument("--model", help="model name at --base-url")
    ap.add_argument("--train-model", help="fine-tune this model on each method's sft.jsonl")
    ap.add_argument("--test", help="test file for downstream accuracy (with --train-model)")
    args = ap.parse_args(argv)
    results = run_audit(args)
    print((Path(args.out) / "report.md").read_text())
    print(f"[audit] {len(results)} method(s); report, plots and runs in {args.out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
