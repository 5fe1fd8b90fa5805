"""Our pipeline against the reference implementation's behaviour (one request at a time), on
the embedded llama-server with 4 slots.

    python -m eval.bench_reference [--input FILE] [--limit 100] [--slots 4]

1. ``curate`` runs on the input (fresh run directory and cache, base-model prompts, concurrency
   16) and records every request it made.
2. The same requests (same messages, temperature, max_tokens, logprobs and stop sequences) are
   sent again one at a time in input order, as the official RobustFT code does.
Prints samples/s of both and the ratio; asserts nothing. The default input is the shipped demo
(65 rows; ``--input`` takes any file, e.g. ARC's noisy30.csv with ``--limit 100``).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import openai

from robustft.config import Config
from robustft.data.files import file_format, load_samples, write_rows
from robustft.demo import DEMO_INPUT
from robustft.graph.runner import curate
from robustft.llm.prompt_files import builtin_dir, load_prompts
from robustft.serving.servers import EMBEDDED_NAME, embedded_server
from robustft.store.runstore import RunStore


def sequential(url: str, cfg: Config, run: Path) -> tuple[float, int]:
    """Re-send every call of ``run`` one at a time; returns (seconds, calls)."""
    prompts = load_prompts(cfg.prompts_dir)
    store = RunStore.reader(run)
    calls = [c.model_dump() for c in store.all_calls()]
    store.close()
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
    t0 = time.perf_counter()
    for c in calls:
        rc = cfg.role(c["role"])
        extra = {"logprobs": True, "top_logprobs": rc.top_logprobs} if rc.top_logprobs else {}
        stop = prompts[c["prompt"]].stop
        client.chat.completions.create(model=EMBEDDED_NAME, messages=c["messages"],
                                       temperature=rc.temperature, max_tokens=rc.max_tokens,
                                       **({"stop": list(stop)} if stop else {}), **extra)
    return time.perf_counter() - t0, len(calls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=str(DEMO_INPUT))
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    cfg = Config(concurrency=args.concurrency, prompts_dir=str(builtin_dir() / "base"))
    with tempfile.TemporaryDirectory() as d:
        samples, _, _ = load_samples(args.input, cfg.data)
        samples = samples[:args.limit]
        inp = Path(d) / f"in{Path(args.input).suffix}"
        write_rows(inp, [s.raw for s in samples], file_format(Path(args.input)))
        with embedded_server(slots=args.slots, log_path=Path(d) / "server.log") as server:
            cfg.endpoint.base_url, cfg.endpoint.model = server.base_url, EMBEDDED_NAME
            t0 = time.perf_counter()
            summary = asyncio.run(curate(cfg, inp, Path(d) / "run"))
            ours = time.perf_counter() - t0
            ref, n_calls = sequential(server.base_url, cfg, Path(d) / "run")
    n = len(samples)
    print(f"{n} samples, {n_calls} calls ({summary['calls']} in the run), embedded "
          f"Gemma-3-270M, {args.slots} slots, concurrency {args.concurrency}")
    print(f"{'':<34}{'seconds':>9}{'samples/s':>11}")
    print(f"{'robustft curate (whole run)':<34}{ours:>9.1f}{n / ours:>11.3f}")
    print(f"{'one request at a time (calls only)':<34}{ref:>9.1f}{n / ref:>11.3f}")
    print(f"speed-up: {ref / ours:.2f}x (target >= 1.9x); the reference time excludes its "
          "embedding and selection, ours includes everything")


if __name__ == "__main__":
    main()
