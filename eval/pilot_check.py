"""A pilot against the whole run: ``curate --pilot N`` then the full ``curate`` on the same run
directory, both through the command line against the simulated endpoint (in this process, so
every request it answers is recorded).

    python -m eval.pilot_check --clean ../shared/data/robustft-arc/labeled.csv \\
        --noisy ../shared/data/robustft-arc/noisy30.csv --pilot 200 --out /tmp/pilot

Prints the pilot's projection next to the full run's figures, and the request bodies sent
more than once: by the full run after the pilot (the cache should answer those), and at all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from .sim_server import SimParams, SimServer, Simulator, sim_models


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "ROBUSTFT_MODEL")}
    return subprocess.run([sys.executable, "-m", "robustft.cli.main", *args], text=True,
                          capture_output=True, env={**env, "HF_HUB_OFFLINE": "1"})


def check(clean: Path, noisy: Path, pilot: int, out: Path, concurrency: int,
          params: SimParams) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    run = out / "run"
    with SimServer(Simulator.from_file(clean, params)) as srv:
        cfg = out / "config.yaml"
        cfg.write_text(yaml.safe_dump({"endpoint": {"base_url": srv.base_url},
                                       "roles": {r: {"model": m}
                                                 for r, m in sim_models().items()}}))
        common = ("curate", "-i", str(noisy), "-o", str(run), "-c", str(cfg),
                  "--concurrency", str(concurrency))
        t0 = time.perf_counter()
        p = cli(*common, "--pilot", str(pilot))
        t_pilot = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"pilot failed ({p.returncode}): {p.stderr[-2000:]}")
        print(p.stdout, flush=True)
        sent_pilot = list(srv.delivered)
        t0 = time.perf_counter()
        f = cli(*common)
        t_full = time.perf_counter() - t0
        if f.returncode not in (0, 3):
            raise SystemExit(f"full run failed ({f.returncode}): {f.stderr[-2000:]}")
        sent_full = srv.delivered[len(sent_pilot):]
    report = json.loads((run / "pilot" / "pilot.json").read_text())
    full = json.loads((run / "summary.json").read_text())
    again = set(sent_pilot) & set(sent_full)
    twice = sum(n - 1 for n in Counter(srv.delivered).values() if n > 1)
    proj = report["projected"]
    kept = sum(full["fates"].get(f, 0) for f in ("clean", "confirmed", "unsure",
                                                  "relabeled-kept"))
    return {
        "pilot_rows": report["rows"], "rows": report["of"],
        "projected_calls": proj["calls"], "full_calls": full["calls"],
        "calls_error": proj["calls"] / full["calls"] - 1,
        "projected_tokens": proj["prompt_tokens"] + proj["completion_tokens"],
        "full_tokens": full["prompt_tokens"] + full["completion_tokens"],
        "projected_s": report["projected_s"], "pilot_wall_s": t_pilot, "full_wall_s": t_full,
        "pilot_kept": report["kept"]["share"], "full_kept": kept / full["samples"],
        "pilot_noise": report["noise"]["share"],
        "pilot_canary_recall": (report["canary_recall"] or {}).get("share"),
        "full_canary_recall": (full.get("canaries") or {}).get("recall", {}).get("share"),
        "requests_pilot": len(sent_pilot), "requests_full": len(sent_full),
        "full_resent_pilot_bodies": len(again), "bodies_sent_twice_overall": twice,
        "full_cache_hits": full["this_invocation"]["cache_hits"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clean", required=True, help="file with the true labels (the simulator's)")
    ap.add_argument("--noisy", required=True, help="the file to curate")
    ap.add_argument("--pilot", type=int, default=200)
    ap.add_argument("--out", required=True)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--accuracy", type=float, default=0.85)
    ap.add_argument("--calibration", type=float, default=0.8)
    a = ap.parse_args(argv)
    res = check(Path(a.clean), Path(a.noisy), a.pilot, Path(a.out), a.concurrency,
                SimParams(accuracy=a.accuracy, calibration=a.calibration))
    (Path(a.out) / "pilot_check.json").write_text(json.dumps(res, indent=1))
    for k, v in res.items():
        print(f"{k:28} {v:.4f}" if isinstance(v, float) else f"{k:28} {v}")


if __name__ == "__main__":
    main()
