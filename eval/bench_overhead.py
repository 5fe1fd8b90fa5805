"""The client's own cost, measured as a user runs it: ``robustft curate`` through the CLI against a
local server that answers every call after a fixed latency with unlimited parallelism.

    python -m eval.bench_overhead [--input FILE] [--latency 0.2] [--concurrency 64]
                                  [--config YAML ...]

Default input: all rows of ``../shared/data/robustft-arc/noisy30.csv`` (1,778 ARC rows; 2,000
synthetic parity rows when the shared data is absent). The server (``eval.fast_server``,
script ``any_choice`` on its asyncio server with memoised replies, also serving
``/v1/embeddings``) runs in its own process. For each run
it prints the client process's CPU from ``wait4`` rusage (user + system, per endpoint call),
wall ÷ ideal (ideal = calls × latency ÷ concurrency) and peak RSS; then the same for the
floor: a bare asyncio loop (``aiohttp``, ``concurrency`` requests in flight, no pipeline) sending
as many chat requests to the same server; and LangGraph alone (a graph shaped like detection,
invoked once per row with nodes doing nothing, interpreter start-up subtracted; also with
the garbage collector as a run sets it). Each
``--config`` adds a run with that YAML config
(e.g. ``relabel: {context: false}`` or ``retrieval: {embedder: endpoint}``). Prints; asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, TypedDict

from eval.fast_server import serve_in_subprocess
from eval.scripted_server import write_parity_rows

ARC = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "robustft-arc"


def run_measured(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd`` to its end; its wall seconds, CPU seconds (user + system, from ``wait4``,
    children included) and peak RSS (MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.decode(errors='replace')[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mib": usage.ru_maxrss / 1024}


async def _floor(url: str, n: int, concurrency: int) -> None:
    """``n`` chat requests, ``concurrency`` in flight, replies read as JSON: the least any
    client must do."""
    import aiohttp

    body = {"model": "m", "temperature": 0.0, "max_tokens": 64, "logprobs": True,
            "top_logprobs": 5,
            "messages": [{"role": "user", "content": "Question: floor\nAnswer with a letter."}]}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
        todo = iter(range(n))

        async def worker() -> None:
            for _ in todo:
                async with client.post(url + "/chat/completions", json=body) as r:
                    r.raise_for_status()
                    await r.json()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def _langgraph_alone(n: int, concurrency: int, collector: str = "default") -> None:
    """``n`` invocations of a graph shaped like detection (fan-out to two async nodes, join,
    one more node), ``concurrency`` at a time, nodes doing no work: LangGraph's own cost;
    ``collector`` "run": with the garbage collector as a run sets it."""
    from langgraph.graph import END, START, StateGraph

    from robustft.pipeline.setup import collect_less

    class State(TypedDict, total=False):
        i: int
        calls: Annotated[list, operator.add]
        verdict: str

    async def expert(state: State) -> State:
        await asyncio.sleep(0)
        return {"calls": [state["i"]]}

    async def checker(state: State) -> State:
        return {"verdict": "clean"}

    g = StateGraph(State)
    g.add_node("direct", expert)
    g.add_node("reasoning", expert)
    g.add_node("checker", checker)
    g.add_conditional_edges(START, lambda s: ["direct", "reasoning"], ["direct", "reasoning"])
    g.add_edge(["direct", "reasoning"], "checker")
    g.add_edge("checker", END)
    graph = g.compile()
    if collector == "run":
        collect_less()

    async def go() -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await graph.ainvoke({"i": i})
        await asyncio.gather(*(one(i) for i in range(n)))

    asyncio.run(go())


def row(name: str, m: dict, calls: int, latency: float, concurrency: int) -> str:
    ideal = calls * latency / concurrency
    return (f"{name:<34}{calls:>7}{m['wall']:>8.1f}{m['wall'] / ideal:>8.2f}"
            f"{m['cpu']:>8.1f}{m['cpu'] * 1000 / calls:>10.2f}{m['rss_mib']:>9.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path, default=ARC / "noisy30.csv")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--config", type=Path, action="append", default=[])
    ap.add_argument("--floor", nargs=3, metavar=("URL", "N", "C"), help=argparse.SUPPRESS)
    ap.add_argument("--langgraph", nargs=3, metavar=("N", "C", "GC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.langgraph:
        n, c, collector = args.langgraph
        _langgraph_alone(int(n), int(c), collector)
        return
    if args.floor:  # the floor's own process
        url, n, c = args.floor
        asyncio.run(_floor(url, int(n), int(c)))
        return
    server, url = serve_in_subprocess(args.latency, "any_choice", fast=True)
    lat, c = args.latency, args.concurrency
    header = (f"{'run':<34}{'calls':>7}{'wall s':>8}{'÷ideal':>8}{'CPU s':>8}"
              f"{'CPU ms/call':>10}{'RSS MiB':>9}")
    lines = []
    try:
        with tempfile.TemporaryDirectory() as d:
            inp = args.input
            if not inp.is_file():
                inp = Path(d) / "parity.jsonl"
                write_parity_rows(inp, 2000)
            env = {**os.environ, "OPENAI_API_KEY": "none"}
            calls = 0
            for i, cfg in enumerate([None, *args.config]):
                out = Path(d) / f"run{i}"
                cmd = [sys.executable, "-m", "robustft.cli.main", "curate", "-i", str(inp),
                       "-o", str(out), "--concurrency", str(c), "--base-url", url,
                       "--model", "m"] + (["-c", str(cfg)] if cfg else [])
                m = run_measured(cmd, env)
                summary = json.loads((out / "summary.json").read_text())
                calls = calls or summary["calls"]
                lines.append(row(f"robustft curate {cfg.name if cfg else '(defaults)'}", m,
                                 summary["calls"], lat, c))
            floor = run_measured([sys.executable, "-m", "eval.bench_overhead", "--floor", url,
                                  str(calls), str(c)], env)
            lines.append(row("floor: bare asyncio HTTP loop", floor, calls, lat, c))
            rows = sum(1 for _ in inp.open()) - (inp.suffix == ".csv")
            startup = run_measured([sys.executable, "-c", "import langgraph.graph"], env)
            per = [(run_measured([sys.executable, "-m", "eval.bench_overhead", "--langgraph",
                                  str(rows), str(c), gc], env)["cpu"] - startup["cpu"])
                   * 1000 / rows for gc in ("default", "run")]
            lines.append(f"LangGraph alone, {rows} invocations of a detect-shaped graph "
                         f"(no I/O): {per[0]:.2f} ms CPU per invocation ({per[1]:.2f} with the "
                         "garbage collector as a run sets it)")
    finally:
        server.terminate()
    print(f"input {args.input}, server latency {lat}s, concurrency {c}, {os.cpu_count()} cores")
    print(header)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
