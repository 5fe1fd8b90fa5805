"""Orchestration overhead: the full RobustFT pipeline against a fixed-latency local server.

    python -m eval.bench_overhead [--samples 2000] [--latency 0.2] [--concurrency 64]

Every call takes ``latency`` seconds on a server with unlimited parallelism, so any time above
the ideal is ours. Two ideals are printed:
- calls: total calls × latency ÷ concurrency (as if ``concurrency`` calls were always in flight);
- critical path: per stage, samples × (sequential calls per sample) × latency ÷ concurrency
  (the pipeline bounds *samples* in flight; a detect sample is 2 calls deep: direct ‖
  reasoning → reflection; a relabel sample 2: context → reviewer).
The server runs in its own process (it still shares the machine's cores). Prints a table;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from eval.scripted_server import serve_in_subprocess
from robustft.config import Config
from robustft.graph.runner import curate


class StageClock:
    """A reporter that records when each stage starts (the rest of the time is set-up)."""

    def __init__(self):
        self.starts: dict[str, float] = {}

    def start(self, stage: str, total: int) -> None:
        self.starts[stage] = time.perf_counter()

    def advance(self, stage: str) -> None:
        pass

    def note(self, text: str) -> None:
        self.starts.setdefault(text.split()[0], time.perf_counter())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    rows = [{"id": f"p{i}", "question": f"Is {i} even?", "options": ["yes", "no"],
             "answer": ("A" if i % 2 == 0 else "B") if i % 3 else ("B" if i % 2 == 0 else "A")}
            for i in range(args.samples)]
    server, url = serve_in_subprocess(args.latency)  # its own process: no shared GIL
    try:
        with tempfile.TemporaryDirectory() as d:
            inp = Path(d) / "in.jsonl"
            inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
            cfg = Config(concurrency=args.concurrency)
            cfg.endpoint.base_url, cfg.endpoint.model = url, "m"
            clock = StageClock()
            t0 = time.perf_counter()
            summary = asyncio.run(curate(cfg, inp, Path(d) / "run", clock))
            wall = time.perf_counter() - t0
    finally:
        server.terminate()
    noisy = sum(1 for r in rows if int(r["id"][1:]) % 3 == 0)
    detect = clock.starts["indexing"] - clock.starts["detect"]
    relabel_end = t0 + wall
    relabel = relabel_end - clock.starts["relabel"]
    lat, c = args.latency, args.concurrency
    ideal_calls = summary["calls"] * lat / c
    ideal_path = (args.samples * 2 + noisy * 2) * lat / c
    print(f"{args.samples} samples, {summary['calls']} calls, latency {lat}s, concurrency {c}")
    print(f"{'':<28}{'seconds':>9}")
    print(f"{'wall (whole run)':<28}{wall:>9.1f}")
    print(f"{'  detect stage':<28}{detect:>9.1f}   ideal {args.samples * 2 * lat / c:.1f}")
    index = clock.starts["relabel"] - clock.starts["indexing"]
    print(f"{'  index (embed + LanceDB)':<28}{index:>9.1f}")
    print(f"{'  relabel + select + write':<28}{relabel:>9.1f}   ideal {noisy * 2 * lat / c:.1f}")
    for name, ideal in (("ideal (calls)", ideal_calls), ("ideal (critical path)", ideal_path)):
        print(f"{name:<28}{ideal:>9.1f}   wall / ideal = {wall / ideal:.3f}")


if __name__ == "__main__":
    main()
