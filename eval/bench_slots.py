"""Generation throughput of the embedded llama-server at 1 vs N parallel slots, logprobs on.

    python -m eval.bench_slots [--requests 16] [--max-tokens 64] [--slots 1 4]

Starts the embedded server once per slot count, sends the same requests with as many in
flight as there are slots, and prints generated tokens/s (from the server's usage counts).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import openai

from robustft.serving.servers import EMBEDDED_NAME, embedded_server

PROMPT = "Question: Describe the water cycle in a few sentences.\nAnswer:"


async def _load(base_url: str, n_requests: int, concurrency: int, max_tokens: int) -> int:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> int:
        async with sem:
            r = await client.chat.completions.create(
                model=EMBEDDED_NAME, max_tokens=max_tokens, temperature=0.8, seed=i,
                logprobs=True, top_logprobs=5,
                messages=[{"role": "user", "content": PROMPT}])
            return r.usage.completion_tokens

    try:
        return sum(await asyncio.gather(*(one(i) for i in range(n_requests))))
    finally:
        await client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--slots", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    rows = []
    for slots in args.slots:
        with embedded_server(slots=slots) as server:
            asyncio.run(_load(server.base_url, slots, slots, 8))  # warm-up
            t0 = time.perf_counter()
            tokens = asyncio.run(_load(server.base_url, args.requests, slots, args.max_tokens))
            wall = time.perf_counter() - t0
        rows.append((slots, tokens, wall, tokens / wall))
    base = rows[0][3]
    print(f"{'slots':>5} {'tokens':>7} {'wall s':>7} {'tokens/s':>9} {'vs first':>9}")
    for slots, tokens, wall, rate in rows:
        print(f"{slots:>5} {tokens:>7} {wall:>7.1f} {rate:>9.1f} {rate / base:>8.2f}x")


if __name__ == "__main__":
    main()
