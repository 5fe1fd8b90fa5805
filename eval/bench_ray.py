"""Ray's overhead: the same RobustFT run single-process and with ``curate --ray`` on a local
Ray cluster, against a fixed-latency server on 127.0.0.1.

    python -m eval.bench_ray [--samples 1000] [--latency 0.2] [--workers 2] [--concurrency 16]
                             [--modes single ray]

The single-process run gets ``workers × concurrency`` samples in flight, the Ray run
``concurrency`` per worker, so both keep the same number of requests open. Each run is a fresh
child process; printed per run: wall time, samples/s, the driver's peak RSS, the largest Ray
worker's peak RSS (sampled each second) and the files and bytes written to the run directory.
Prints the ratio of samples/s (Ray ÷ single); asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _worker_peak_rss(stop: threading.Event, peak: dict[int, float]) -> None:
    """Every second, the RSS (MiB) of each Ray worker process of this machine; keeps the peak."""
    import psutil

    while not stop.wait(1.0):
        for p in psutil.process_iter(["cmdline", "memory_info"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if p.info["memory_info"] and "ray::" in cmd and "IDLE" not in cmd:
                rss = p.info["memory_info"].rss / 2**20
                peak[p.pid] = max(peak.get(p.pid, 0.0), rss)


def _child(mode: str, n: int, url: str, workers: int, concurrency: int, block_rows: int,
           workdir: str) -> None:
    from eval.scripted_server import write_parity_rows
    from robustft.config import Config

    inp, run = Path(workdir) / "in.jsonl", Path(workdir) / "run"
    write_parity_rows(inp, n)
    cfg = Config()
    cfg.endpoint.base_url, cfg.endpoint.model = url, "m"
    t0 = time.perf_counter()
    stop, peak = threading.Event(), {}
    if mode == "ray":
        from robustft.graph.ray_run import curate_ray

        threading.Thread(target=_worker_peak_rss, args=(stop, peak), daemon=True).start()
        cfg.concurrency = concurrency
        summary = curate_ray(cfg, inp, run, "local", workers=workers, block_rows=block_rows)
        stop.set()
    else:
        from robustft.graph.runner import curate

        cfg.concurrency = concurrency * workers
        summary = asyncio.run(curate(cfg, inp, run))
    wall = time.perf_counter() - t0
    files = [p for p in run.rglob("*") if p.is_file()]
    print(json.dumps({"mode": mode, "samples": n, "calls": summary["calls"], "wall_s": wall,
                      "driver_peak_rss_mib": resource.getrusage(
                          resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "files": len(files), "bytes": sum(p.stat().st_size for p in files),
                      "stage_seconds": summary.get("ray", {}).get("stage_seconds"),
                      "worker_peak_rss_mib": max(peak.values(), default=None)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.2, help="Seconds per call.")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=16, help="Per Ray worker.")
    ap.add_argument("--block-rows", type=int, default=250)
    ap.add_argument("--modes", nargs="+", choices=("single", "ray"), default=["single", "ray"],
                    help="Which runs (the ratio needs both).")
    ap.add_argument("--keep", type=Path, help="Keep the run directories under this directory.")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, url, workdir = args.child
        _child(mode, args.samples, url, args.workers, args.concurrency, args.block_rows,
               workdir)
        return
    from eval.fast_server import serve_in_subprocess

    server, url = serve_in_subprocess(args.latency)
    results = {}
    try:
        for mode in args.modes:
            with tempfile.TemporaryDirectory() as tmp:
                d = tmp
                if args.keep:
                    d = str(args.keep / mode)
                    Path(d).mkdir(parents=True)
                out = subprocess.run(
                    [sys.executable, "-m", "eval.bench_ray", "--samples", str(args.samples),
                     "--workers", str(args.workers), "--concurrency", str(args.concurrency),
                     "--block-rows", str(args.block_rows), "--child", mode, url, d],
                    capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"{mode} run failed:\n{out.stderr[-4000:]}")
                r = results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{mode:>6}: {r['wall_s']:7.1f} s, {r['samples'] / r['wall_s']:6.1f} "
                      f"samples/s, {r['calls']} calls, driver peak RSS "
                      f"{r['driver_peak_rss_mib']:.0f} MiB, {r['files']} files, "
                      f"{r['bytes'] / 2**20:.1f} MiB written"
                      + (f"; stages {r['stage_seconds']}; largest Ray worker peak RSS "
                         f"{r['worker_peak_rss_mib']:.0f} MiB" if r["stage_seconds"] else ""),
                      flush=True)
    finally:
        server.terminate()
    if len(results) < 2:
        return
    ratio = results["single"]["wall_s"] / results["ray"]["wall_s"]
    print(f"Ray samples/s ÷ single-process samples/s: {ratio:.2f} "
          f"({args.samples} samples, {args.latency}s latency, {args.workers} workers × "
          f"{args.concurrency} in flight)")


if __name__ == "__main__":
    main()
