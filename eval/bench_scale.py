"""Scale: the full RobustFT pipeline at growing sizes against a zero-latency local server.

    python -m eval.bench_scale [--sizes 1000 10000 100000] [--concurrency 64]

Each size runs in a fresh child process (so its peak RSS is its own) against the parity server
(``eval/scripted_server.py``) in another process. Prints seconds per sample and the child's
peak RSS per size; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(n: int, url: str, concurrency: int, workdir: str) -> None:
    from eval.scripted_server import write_parity_rows
    from robustft.config import Config
    from robustft.graph.runner import curate

    inp = Path(workdir) / "in.jsonl"
    write_parity_rows(inp, n)
    cfg = Config(concurrency=concurrency)
    cfg.endpoint.base_url, cfg.endpoint.model = url, "m"
    t0 = time.perf_counter()
    summary = asyncio.run(curate(cfg, inp, Path(workdir) / "run"))
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    print(json.dumps({"samples": n, "calls": summary["calls"], "wall_s": wall,
                      "peak_rss_mib": rss, "kept": summary["kept"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        n, url, workdir = args.child
        _child(int(n), url, args.concurrency, workdir)
        return
    from eval.fast_server import serve_in_subprocess

    server, url = serve_in_subprocess(0.0)
    rows = []
    try:
        for n in args.sizes:
            with tempfile.TemporaryDirectory() as d:
                out = subprocess.run([sys.executable, "-m", "eval.bench_scale", "--concurrency",
                                      str(args.concurrency), "--child", str(n), url, d],
                                     capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                print(f"{n:>8} samples: {r['wall_s']:8.1f} s, "
                      f"{1000 * r['wall_s'] / n:6.2f} ms/sample, {r['calls']} calls, "
                      f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
